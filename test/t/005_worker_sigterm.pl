# SIGTERM stops a payment worker at once, whatever it waits for: an idle
# worker (asleep on its latch until a commit wakes it) and a worker in its
# batching window (payment.batch_window = 1000 while commits keep
# arriving) are gone within 100 ms of the kill, and the payments submitted
# meanwhile are all stored by the worker the postmaster starts again.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use ReleaseHelper;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = new_release_node('sigterm',
	'payment.workers' => 1,
	'payment.max_workers' => 1,
	'payment.batch_window' => 1000);
$node->safe_psql('postgres', 'CREATE EXTENSION payment');

sub worker_pid
{
	return $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'payment worker'});
}

# waiting on its latch: idle between claims, or in its batching window
sub waiting
{
	my ($pid) = @_;
	return $node->safe_psql('postgres', qq{
SELECT wait_event_type = 'Extension' AND state = 'idle' FROM pg_stat_activity WHERE pid = $pid}) eq 't';
}

# a pid that exited (its zombie awaiting the postmaster counts as gone)
sub alive
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/stat") or return 0;
	my $stat = <$fh>;
	close $fh;
	return defined $stat && $stat !~ /^\d+ \(.*\) Z /;
}

# milliseconds from SIGTERM to the process being gone
sub ms_to_exit
{
	my ($pid) = @_;
	my $start = time();
	kill 'TERM', $pid;
	usleep(200) while alive($pid) && time() - $start < 10;
	return (time() - $start) * 1000;
}

# the worker the postmaster starts again (payment's restart time is 5 s)
sub restarted_worker
{
	my ($old) = @_;
	ok($node->poll_query_until('postgres', qq{
SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'payment worker' AND pid <> $old}),
		'the postmaster starts the worker again');
	return worker_pid();
}

# 1. idle: no message since the start, the worker sleeps on its latch
my $pid = worker_pid();
ok($node->poll_query_until('postgres', qq{
SELECT wait_event_type = 'Extension' FROM pg_stat_activity WHERE pid = $pid}),
	'the idle worker waits on its latch');
my $idle_ms = ms_to_exit($pid);
cmp_ok($idle_ms, '<', 100, sprintf('an idle worker exits %.1f ms after SIGTERM', $idle_ms));
$pid = restarted_worker($pid);

# 2. batching: a commit every 20 ms, so the worker wakes, gathers for 1 s,
# claims, stores, and gathers again for 1 s: it spends nearly all its time
# in the batching window, where a commit's wake is absorbed.
my $payments = 1000;
my $traffic = $node->background_psql('postgres');
$traffic->query_until(qr/traffic/, qq{
\\echo traffic
DO \$\$
BEGIN
  FOR i IN 1..$payments LOOP
    PERFORM submit_payment(jsonb_build_object('paymentId', md5('p' || i)::uuid,
      'userId', md5('u' || i)::uuid, 'dateTimestamp', '1709553600',
      'description', 'sigterm ' || i, 'currency', 'GBP', 'amount', i));
    COMMIT;
    PERFORM pg_sleep(0.02);
  END LOOP;
END \$\$;
});

my @batching_ms;
for my $round (1 .. 2)
{
	my $stored = $node->safe_psql('postgres', 'SELECT count(*) FROM payment.payments');
	ok($node->poll_query_until('postgres',
			"SELECT count(*) >= $stored + 20 FROM payment.payments"),
		"round $round: the worker stores the arriving payments in batches");
	# the window lasts 1 s, a store some ms: wait for a moment in the window
	my $deadline = time() + 10;
	usleep(20_000) until waiting($pid) || time() > $deadline;
	ok(waiting($pid), "round $round: the worker waits in its batching window");
	push @batching_ms, ms_to_exit($pid);
	cmp_ok($batching_ms[-1], '<', 100,
		sprintf('round %d: a worker in its batching window exits %.1f ms after SIGTERM',
			$round, $batching_ms[-1]));
	$pid = restarted_worker($pid);
}
note sprintf('SIGTERM to exit: idle %.1f ms; batching window %s ms',
	$idle_ms, join(', ', map { sprintf('%.1f', $_) } @batching_ms));

# every payment of the traffic is stored once, across the stops
$traffic->quit;
ok($node->poll_query_until('postgres', "SELECT count(*) = $payments FROM payment.payments"),
	"all $payments payments submitted across the stops are stored");
is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.queue'), '0', 'the queue is empty');

my $log = slurp_file($node->logfile);
is(scalar(() = $log =~ /terminating background worker "payment worker" due to administrator command/g),
	3, 'each SIGTERM logged as a clean termination');
unlike($log, qr/terminated by signal|server process .* was terminated/, 'no crash');

$node->stop;
done_testing();
