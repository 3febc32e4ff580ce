# The SQS backend under faults: the endpoint goes down for ~30 s in the
# middle of a drain and comes back; a worker is killed (kill -9) while its
# batch is in flight in SQS, and while its stored batch awaits deletion.
# Each time every payment must end up stored exactly once and the queue
# empty: nothing lost, nothing doubled.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use SqsPeers;

my $key = SqsPeers::new_key_id();
my $secret = 'sqs-secret-' . SqsPeers::random_word(32);
my $peers = SqsPeers->new(keys => SqsPeers::producer_and($key, secret => $secret));
my $queue_url = $peers->create_queue('payments', 30);

my $node = $peers->start_node('sqs_faults', $key,
	'payment.workers' => 2,
	'payment.wait_time' => 1,
	'payment.visibility_timeout' => 5,
	'payment.max_receive_count' => 20,
	'payment.http_timeout' => "'2s'",
	'restart_after_crash' => 'on');

sub sql { return $node->safe_psql('postgres', shift); }

sub in_list { return join(',', map { "'$_'" } @{ shift() }); }

sub stored_count { my $ids = shift; return sql("SELECT count(*) FROM payment.payments WHERE payment_id IN ($ids)"); }

# every payment of the list stored exactly once, nothing dead-lettered, queue empty
sub check_all_stored_once
{
	my ($what, $pids, $timeout) = @_;
	my $ids = in_list($pids);
	my $n = scalar @$pids;
	ok(SqsPeers::wait_until(sub { stored_count($ids) eq $n }, $timeout), "$what: all $n payments stored")
	  or diag('stored: ' . stored_count($ids));
	is(sql("SELECT count(*) FROM (SELECT payment_id FROM payment.payments WHERE payment_id IN ($ids)"
			  . ' GROUP BY payment_id HAVING count(*) > 1) d'), '0', "$what: none stored twice");
	is(sql("SELECT count(*) FROM payment.dead_letters WHERE payment_id IN ($ids)"), '0',
		"$what: none dead-lettered");
	ok($peers->wait_queue_empty(30),
		"$what: queue empty afterwards");
}

sub kill_a_worker
{
	my $pid = sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'payment worker' LIMIT 1");
	ok($pid =~ /^\d+$/, 'found a payment worker to kill');
	kill 'KILL', $pid;
	# the postmaster restarts every process after a crash; wait for it
	$node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'payment worker'")
	  or die 'workers did not come back';
}

### 1. the endpoint goes down for ~30 s mid-drain, then comes back
$peers->control('/__slow?ms=50&op=ReceiveMessage');
# paused while the backlog is sent: on a loaded machine the producer can be
# slower than the drain, and the whole backlog stored before the outage
sql('ALTER SYSTEM SET payment.paused = on');
sql('SELECT pg_reload_conf()');
my $backlog = $peers->producer('send', 'queue-url' => $queue_url, valid => 2000);
my $ids = in_list($backlog->{valid});
sql('ALTER SYSTEM SET payment.paused = off');
sql('SELECT pg_reload_conf()');
ok(SqsPeers::wait_until(sub { stored_count($ids) >= 200 }, 60), 'draining has started');
$peers->control('/__down');
my $down_at = time();
my $at_down = stored_count($ids);
cmp_ok($at_down, '<', 2000, "endpoint down with $at_down of 2000 stored");
# deliberate: a 30 s outage; the batches received before it settle in the
# first 5 s, then 20 s in which nothing may be stored
sleep(5);
my $settled = stored_count($ids);
sleep(20);
is(stored_count($ids), $settled, 'nothing is stored while the endpoint is down');
sleep(1) while time() - $down_at < 30;
$peers->control('/__up');
$peers->control('/__slow?ms=0');
my $up_at = time();
check_all_stored_once('after the outage', $backlog->{valid}, 90);
note(sprintf('recovered and drained in %.1f s after the endpoint came back', time() - $up_at));
my $log = slurp_file($node->logfile);
like($log, qr/could not connect to SQS endpoint/, 'the workers reported the outage');
like($log, qr/recovered after \d+ failed attempts/, 'and their recovery');

### 2. a worker is killed while its batch is in flight in SQS (received, not stored)
$peers->control('/__slow?ms=3000&op=ReceiveMessage');
my $b2 = $peers->producer('send', 'queue-url' => $queue_url, valid => 20);
ok(SqsPeers::wait_until(sub { $peers->stats->{held}{messages} > 0 }, 30),
	'a worker has received a batch (held on its way back by the proxy)');
my $in_flight = $peers->queue_counts->{in_flight};
cmp_ok($in_flight, '>', 0, "$in_flight messages in flight in SQS");
kill_a_worker();
$peers->control('/__slow?ms=0');
check_all_stored_once('kill -9 before the store', $b2->{valid}, 60);

### 3. a worker is killed after storing its batch, before SQS deleted it
$peers->control('/__slow?ms=4000&op=DeleteMessageBatch&before=1');
my $b3 = $peers->producer('send', 'queue-url' => $queue_url, valid => 20);
my $ids3 = in_list($b3->{valid});
ok(SqsPeers::wait_until(sub { $peers->stats->{held}{requests} > 0 }, 30),
	'a worker stored a batch and waits on DeleteMessageBatch');
my $stored_before = stored_count($ids3);
cmp_ok($stored_before, '>', 0, "$stored_before stored, not yet deleted from SQS");
my $dropped_before = $peers->stats->{dropped};
kill_a_worker();
ok(SqsPeers::wait_until(sub { $peers->stats->{dropped} > $dropped_before }, 10),
	"the killed worker's DeleteMessageBatch never reached SQS");
$peers->control('/__slow?ms=0');
check_all_stored_once('kill -9 before the delete', $b3->{valid}, 60);
cmp_ok(sql('SELECT duplicates FROM payment.stats'), '>=', $stored_before,
	'the redelivered messages were recognised as duplicates');

is($peers->stats->{rejected}, 0, 'no request was rejected by the SigV4 verifier');
$node->stop;
unlike(slurp_file($node->logfile), qr/\Q$secret\E/, 'the secret is not in the server log');

done_testing();
