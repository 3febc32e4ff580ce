# Chaos run on the SQS backend: PAYMENT_CHAOS_N payments (default 10,000)
# submitted by 4 concurrent clients through the SigV4 proxy and the fault
# proxy (test/sqs/fault-proxy.mjs) into fauxqs, while the fault proxy
# injects faults into 10% of the extension's requests (500, 503, throttling,
# resets mid-answer, answers delayed past payment.http_timeout, truncated
# JSON, DeleteMessageBatch entries failed, ReceiveMessage answers replayed),
# a payment worker is killed with kill -9 every 1-3 s and the postmaster
# twice.  The AWS SDK producer adds poison messages (not JSON,
# schema-invalid) along the way; it is not faulted.  Checked from outside:
# every payment whose submit answered OK is stored exactly once, the dead
# letters are exactly the poison messages (by SQS MessageId), the queue ends
# empty, every fault kind was injected.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use Chaos;
use SqsPeers;

my $n = $ENV{PAYMENT_CHAOS_N} // 10_000;
my $seed = $ENV{PAYMENT_CHAOS_SEED} // 510;
my $rate = $ENV{PAYMENT_CHAOS_RATE} // 0.1;

my $key = SqsPeers::new_key_id();
my $peers = SqsPeers->new(
	keys => SqsPeers::producer_and($key),
	# delay: beyond the 0.5 s timeout of a send and the 1 + 0.5 s of a receive
	faults => { rate => 0, seed => $seed, delay_ms => 1700, keys => [$key] });
my $queue_url = $peers->create_queue('payments', 30);

# max_receive_count 10: a fault or a crash costs a message one receive;
# the run checks that they never exhaust it
my $node = $peers->start_node('chaos_sqs', $key,
	'restart_after_crash' => 'on',
	'payment.workers' => 2,
	'payment.wait_time' => 1,
	'payment.visibility_timeout' => 3,
	'payment.max_receive_count' => 10,
	'payment.http_timeout' => "'500ms'",
	'log_line_prefix' => "'%m [%p] %e '",
	'log_statement' => 'none');

my $chaos = Chaos->new(node => $node, n => $n, clients => 4, seed => $seed);
$peers->faults_config(rate => $rate);

# poison from the outside producer, in three batches along the run
my @poison_ids;
my @poison_at = map { int($n * $_) } 0.1, 0.5, 0.9;
sub send_poison
{
	my $sent = $peers->producer('send', 'queue-url' => $queue_url, 'not-json' => 5, invalid => 5);
	push @poison_ids, @{ $sent->{message_ids}{not_json} }, @{ $sent->{message_ids}{invalid} };
}

my $submit_seconds = $chaos->run(
	timeout => 900 + $n / 50,
	tick => sub {
		my ($c) = @_;
		return unless @poison_at && $c->progress >= $poison_at[0];
		shift @poison_at;
		send_poison();
	});
send_poison() while shift @poison_at;
is(scalar @poison_ids, 30, 'the producer sent 30 poison messages');

my $accepted = $chaos->accepted_count;
ok($accepted >= $n * 0.9, "most submits answered OK ($accepted of $n)");

$chaos->record_ids;
my $poison_list = join(',', map { "'$_'" } @poison_ids);
sub queue_empty { return $peers->queue_empty; }
my $done = sub {
	$node->safe_psql('postgres', qq{
SELECT NOT EXISTS (SELECT 1 FROM chaos_ids c WHERE accepted AND NOT EXISTS
                    (SELECT 1 FROM payment.payments p WHERE p.payment_id = c.payment_id))
   AND (SELECT count(DISTINCT message_id) FROM payment.dead_letters
         WHERE message_id IN ($poison_list)) = 30}) eq 't'
	  && queue_empty();
};

# Keep killing workers while they drain (faults still on), then let them end.
$chaos->kill_while($done, 30);
ok(Chaos::retry($done, 180), 'everything stored or dead-lettered, and the queue ends empty');
my $seconds = time() - $^T;
my $faults = $peers->fault_stats;
$peers->faults_config(rate => 0);

my $r = $chaos->check_payments('SQS chaos');

my $dl = $node->safe_psql('postgres',
	q{SELECT reason, message_id FROM payment.dead_letters ORDER BY message_id COLLATE "C"});
is($dl, join("\n", map { "invalid|$_" } sort @poison_ids),
	'dead letters are exactly the poison messages, each once, as invalid');

is($chaos->{postmaster_kills}, 2, 'the postmaster was killed twice');
ok($chaos->{worker_kills} >= 3, "workers were killed ($chaos->{worker_kills} times)");
for my $kind (sort keys %{ $faults->{injected} })
{
	ok($faults->{injected}{$kind} > 0, "fault $kind injected ($faults->{injected}{$kind} times)");
}
my $share = $faults->{faulted_requests} / ($faults->{requests} || 1);
ok($share > $rate / 2 && $share < $rate * 2,
	sprintf('faults in %.1f%% of %d requests', 100 * $share, $faults->{requests}));
is($peers->stats->{rejected}, 0, 'every request the extension sent was signed correctly');
$chaos->check_log('SQS chaos');

# A redelivery storm: no kills, but a third of the requests either fail
# some delete entries or replay an earlier receive, while the outside
# producer sends valid payments and poison.  Every message is then
# delivered several times: still each payment stored once and each poison
# message dead-lettered once.
$node->safe_psql('postgres', 'TRUNCATE payment.dead_letters');
$peers->faults_config(rate => 0.3, kinds => 'delete_failed,replay');
my $storm = $peers->producer('send', 'queue-url' => $queue_url, valid => 300,
	'not-json' => 10, invalid => 10);
my @storm_poison = (@{ $storm->{message_ids}{not_json} }, @{ $storm->{message_ids}{invalid} });
my $storm_ids = join(',', map { "'$_'" } @{ $storm->{valid} });
ok(Chaos::retry(sub {
			$node->safe_psql('postgres', qq{
SELECT (SELECT count(*) FROM payment.payments WHERE payment_id IN ($storm_ids)) = 300
   AND (SELECT count(DISTINCT message_id) FROM payment.dead_letters) = 20}) eq 't'
			  && queue_empty();
		}, 120),
	'redelivery storm: all stored or dead-lettered, queue empty');
my $storm_faults = $peers->fault_stats;
$peers->faults_config(rate => 0);
is($node->safe_psql('postgres',
		q{SELECT reason, message_id FROM payment.dead_letters ORDER BY message_id COLLATE "C"}),
	join("\n", map { "invalid|$_" } sort @storm_poison),
	'redelivery storm: each poison message dead-lettered once');
ok($storm_faults->{injected}{replay} - $faults->{injected}{replay} > 0
	  && $storm_faults->{injected}{delete_failed} - $faults->{injected}{delete_failed} > 0,
	sprintf('redelivery storm: %d receives replayed, %d deletes partly failed',
		$storm_faults->{injected}{replay} - $faults->{injected}{replay},
		$storm_faults->{injected}{delete_failed} - $faults->{injected}{delete_failed}));

diag($chaos->summary('SQS chaos', $r, $seconds,
		sprintf('; %d poison; %d of %d SQS requests faulted (%s)', scalar @poison_ids,
			$faults->{faulted_requests}, $faults->{requests},
			join(', ', map { "$_ $faults->{injected}{$_}" } sort keys %{ $faults->{injected} }))));

$node->stop;
done_testing();
