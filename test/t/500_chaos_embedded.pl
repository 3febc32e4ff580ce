# Chaos run on the embedded queue: PAYMENT_CHAOS_N payments (default
# 10,000) submitted by 4 concurrent clients while a payment worker is killed
# with kill -9 every 1-3 s and the postmaster twice (restart_after_crash =
# on), with poison rows (not JSON, schema-invalid) inserted into
# payment.queue by hand along the way.  Checked from outside: every payment
# whose submit answered OK is stored exactly once, the dead letters are
# exactly the poison rows, the queue ends empty, and no process died of
# anything but our kill -9.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use Chaos;
use PaymentNode;

my $n = $ENV{PAYMENT_CHAOS_N} // 10_000;
my $seed = $ENV{PAYMENT_CHAOS_SEED} // 500;

# max_receive_count 10: every crash also kills the other worker's batch,
# which is received again; the run checks that crashes never exhaust it
my $node = new_payment_node('chaos_embedded', settings => {
	restart_after_crash => 'on',
	'payment.batch_size' => 10,
	'payment.visibility_timeout' => 2,
	'payment.max_receive_count' => 10,
	log_line_prefix => "'%m [%p] %e '",
	log_statement => 'none' });

my $chaos = Chaos->new(node => $node, n => $n, clients => 4, seed => $seed);

# Poison from an outside producer, in three batches along the run: each
# batch is retried until one insert is known to have committed; the NOT
# EXISTS guards make a retry after an ambiguous failure a no-op.
my @poison;
my @poison_batches;
for my $b (0 .. 2)
{
	my @bodies = (
		(map { "not json chaos-$b-$_ {" } 1 .. 5),
		(map {
				'{"paymentId": "' . Chaos::uuid() . qq(", "userId": "$Chaos::USER_ID", )
				  . qq("dateTimestamp": "1", "description": "poison $b-$_", "currency": "GBP", "amount": "twelve"})
			} 1 .. 5));
	push @poison, @bodies;
	push @poison_batches, { at => int($n * (0.1 + 0.4 * $b)), bodies => \@bodies };
}

sub insert_poison
{
	my ($bodies) = @_;
	my $array = join(',', map { (my $q = $_) =~ s/'/''/g; "'$q'" } @$bodies);
	my ($out, $err);
	return IPC::Run::run(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', qq{
INSERT INTO payment.queue (body)
SELECT b FROM unnest(ARRAY[$array]) b
 WHERE NOT EXISTS (SELECT 1 FROM payment.queue q WHERE q.body = b)
   AND NOT EXISTS (SELECT 1 FROM payment.dead_letters d WHERE d.body = b)} ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(10));
}

my $submit_seconds = $chaos->run(
	timeout => 900 + $n / 50,
	tick => sub {
		my ($c) = @_;
		return unless @poison_batches && $c->progress >= $poison_batches[0]{at};
		shift @poison_batches if eval { insert_poison($poison_batches[0]{bodies}) };
	});
# the last batches, if the run ended before their turn
while (my $batch = shift @poison_batches)
{
	Chaos::retry(sub { insert_poison($batch->{bodies}) }, 30) or die 'poison insert failed';
}

my $accepted = $chaos->accepted_count;
ok($accepted >= $n * 0.9, "most submits answered OK ($accepted of $n)");

# Keep killing workers while they drain, then let them finish.
my $drained = sub {
	$node->safe_psql('postgres', 'SELECT count(*) = 0 FROM payment.queue') eq 't';
};
$chaos->kill_while($drained, 20);
ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM payment.queue'),
	'the queue ends empty');
my $seconds = time() - $^T;

my $r = $chaos->check_payments('embedded chaos');

# the dead letters are exactly the poison rows, each once, as invalid
my $dl = $node->safe_psql('postgres',
	q{SELECT reason, body FROM payment.dead_letters ORDER BY body COLLATE "C"});
my $expected_dl = join("\n", map { "invalid|$_" } sort @poison);
is($dl, $expected_dl, 'dead letters are exactly the poison messages, each once, as invalid');
is($node->safe_psql('postgres', "SELECT count(*) FROM payment.dead_letters WHERE reason = 'max_receives'"),
	'0', 'no message dead-lettered for its receives');

is($chaos->{postmaster_kills}, 2, 'the postmaster was killed twice');
ok($chaos->{worker_kills} >= 3, "workers were killed ($chaos->{worker_kills} times)");
$chaos->check_log('embedded chaos');

diag($chaos->summary('embedded chaos', $r, $seconds, sprintf('; %d poison', scalar @poison)));

$node->stop;
done_testing();
