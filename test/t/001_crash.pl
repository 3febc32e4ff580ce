# A kill -9 of a worker, then of the postmaster, during the drain of 10,000
# payments: every payment is stored exactly once, nothing is dead-lettered,
# and the queue ends empty.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use PaymentNode;

my $node = new_payment_node('crash', settings => {
	restart_after_crash => 'on',
	'payment.batch_size' => 10,
	'payment.visibility_timeout' => 2 });

# Slow each insert down a little so that the kills land mid-batch.
$node->safe_psql('postgres', q{
CREATE TABLE expected (payment_id uuid PRIMARY KEY, run int);
CREATE FUNCTION slow_store() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN PERFORM pg_sleep(0.0005); RETURN NEW; END $$;
CREATE TRIGGER slow_store BEFORE INSERT ON payment.payments
  FOR EACH ROW EXECUTE FUNCTION slow_store();
});

sub submit_backlog
{
	my ($run) = @_;
	# one transaction: the whole backlog becomes visible at once
	$node->safe_psql('postgres', qq{
BEGIN;
INSERT INTO expected SELECT gen_random_uuid(), $run FROM generate_series(1, 10000);
SELECT count(submit_payment(jsonb_build_object(
         'paymentId', payment_id::text,
         'userId', '0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4',
         'dateTimestamp', '1709553600',
         'description', 'crash test run $run',
         'currency', 'GBP',
         'amount', 7.99)))
  FROM expected WHERE run = $run;
COMMIT;
});
}

sub stored_of_run
{
	my ($run) = @_;
	return $node->safe_psql('postgres', qq{
SELECT count(*) FROM payment.payments p JOIN expected e USING (payment_id) WHERE e.run = $run});
}

sub wait_for_stored
{
	my ($run, $at_least) = @_;
	for (1 .. 6000)
	{
		my $n = eval { stored_of_run($run) } // 0;
		return $n if $n >= $at_least;
		usleep(10_000);
	}
	return -1;
}

sub check_run
{
	my ($run, $what) = @_;
	ok($node->poll_query_until('postgres', qq{
SELECT count(*) = 10000 FROM payment.payments p JOIN expected e USING (payment_id) WHERE e.run = $run}),
		"$what: all 10,000 payments stored");
	is($node->safe_psql('postgres', qq{
SELECT count(*) FROM expected e LEFT JOIN payment.payments p USING (payment_id)
 WHERE e.run = $run AND p.payment_id IS NULL}), '0', "$what: no payment missing");
	is($node->safe_psql('postgres', qq{
SELECT count(*) FROM payment.payments p JOIN expected e USING (payment_id) WHERE e.run = $run}),
		'10000', "$what: no payment stored twice");
	ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM payment.queue'),
		"$what: queue drained");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.dead_letters'), '0',
		"$what: nothing dead-lettered");
}

# --- kill -9 of a worker
submit_backlog(1);
my $seen = wait_for_stored(1, 1000);
ok($seen >= 1000 && $seen < 10000, "worker killed mid-drain ($seen of 10000 stored)");
my $worker_pid = $node->safe_psql('postgres', q{
SELECT pid FROM pg_stat_activity WHERE backend_type = 'payment worker' ORDER BY pid LIMIT 1});
ok($worker_pid =~ /^\d+$/, 'found a payment worker');
kill 'KILL', $worker_pid;
# the postmaster reinitializes after a crashed child; wait until it serves again
ok($node->poll_query_until('postgres', q{
SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'payment worker'}),
	'workers back after the crash');
isnt($node->safe_psql('postgres', q{
SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE backend_type = 'payment worker'}),
	$worker_pid, 'the killed worker was replaced');
check_run(1, 'worker kill -9');

# --- kill -9 of the postmaster
submit_backlog(2);
$seen = wait_for_stored(2, 1000);
ok($seen >= 1000 && $seen < 10000, "postmaster killed mid-drain ($seen of 10000 stored)");
my @children = split /\n/, $node->safe_psql('postgres', 'SELECT pid FROM pg_stat_activity');
$node->kill9;
# children notice the postmaster's death and exit; start again once they did
for (1 .. 600)
{
	last unless grep { kill 0, $_ } @children;
	usleep(100_000);
}
ok(!(grep { kill 0, $_ } @children), 'old server processes exited');
$node->start;
check_run(2, 'postmaster kill -9');

$node->stop;
done_testing();
