# Degraded database (issue 9): faults injected while the workers drain a
# backlog of the embedded queue.  For each: the workers log the error at
# most once each (not once per retry), retry, recover by themselves when the
# fault is removed, and lose nothing: every payment stored exactly once, no
# dead letters, the queue empty.
#
# (a) read-only: ALTER SYSTEM SET default_transaction_read_only + reload.
#     ALTER DATABASE ... SET would reach only new sessions: the workers'
#     connections are made once, at start, so they would not notice; the
#     reload does reach them (SIGHUP), and their claim then fails (25006).
# (b) statement timeout: statement_timeout is armed only for client
#     statements (postgres.c), never in a background worker, so a system-wide
#     statement_timeout with a held lock leaves the workers waiting, not
#     failing; this is asserted.  What does make the store fail on a timeout
#     in a worker is lock_timeout (armed on every lock wait): see (c').
# (c) a lock held on payment.payments (ACCESS EXCLUSIVE) for
#     PAYMENT_DEGRADED_LOCK_S seconds (default 10; long form 30), longer than
#     the visibility timeout: the workers block on the INSERT, batches
#     reappear and are claimed again, nothing is stored twice.
# (c') the same lock with lock_timeout = 100ms: every store fails at once
#     with 55P03.  Regression test: each message used to be retried and
#     logged on its own and dead-lettered as max_receives after three
#     receives (40 of 1,500 in 10 s); a batch failing on an error of the
#     database is now given back uncounted and the worker logs it once.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use PaymentNode;

my $lock_s = $ENV{PAYMENT_DEGRADED_LOCK_S} // 10;
# the test's own sessions are exempt from the system-wide statement_timeout of (b)
$ENV{PGOPTIONS} = '-c statement_timeout=0';

my $node = new_payment_node('degraded', settings => {
	'payment.visibility_timeout' => "'5s'",
	# backlogs of 30,000 go in one submit_payments call
	'payment.max_batch_payments' => 30000,
	log_line_prefix => "'%m [%p] %e '",
	log_statement => 'none' });
my $born = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
my $total = 0;

sub submit
{
	my ($label, $k) = @_;
	$node->safe_psql('postgres', qq{
SELECT submit_payments(jsonb_agg(jsonb_build_object(
  'paymentId', gen_random_uuid(), 'userId', gen_random_uuid(), 'dateTimestamp', '1709553600',
  'description', '$label', 'currency', 'GBP', 'amount', i)))
FROM generate_series(1, $k) i});
	$total += $k;
}

sub set_system
{
	my ($sql) = @_;
	$node->safe_psql('postgres', "$sql; SELECT pg_reload_conf()");
}

# a backlog, queued while the workers are paused, then released
sub backlog
{
	my ($label, $k) = @_;
	set_system(q{ALTER SYSTEM SET payment.paused = on});
	# once a new session sees it, the postmaster has signalled the workers,
	# which take it at once: each phase starts with the queue drained
	$node->poll_query_until('postgres', 'SHOW payment.paused', 'on')
	  or die 'payment.paused not reloaded';
	submit($label, $k);
	set_system(q{ALTER SYSTEM RESET payment.paused});
	# deliberate: a tenth of a second for the workers to start on the
	# backlog, so that the fault that follows comes while it drains (they
	# store tens of thousands a second: waiting for the reload to be seen
	# can leave nothing to drain)
	usleep(100_000);
}

# the log lines written since $offset matching $re, counted by pid
sub log_lines
{
	my ($offset, $re) = @_;
	my $log = substr(slurp_file($node->logfile), $offset);
	my %by_pid;
	$by_pid{$1}++ while $log =~ /^\S+ \S+ \S+ \[(\d+)\] \S+ .*$re/mg;
	return \%by_pid;
}

sub recovered
{
	my ($label) = @_;
	ok($node->poll_query_until('postgres',
			q{SELECT queue_depth = 0 AND in_flight = 0 FROM payment.stats}),
		"$label: the queue drains after the fault is removed");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM payment.payments}), $total,
		"$label: all $total payments so far stored");
	is($node->safe_psql('postgres',
			q{SELECT count(*) FROM (SELECT FROM payment.payments GROUP BY payment_id, user_id HAVING count(*) > 1) x}),
		'0', "$label: none stored twice");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM payment.dead_letters}), '0',
		"$label: no dead letters");
}

# -- (a) read-only
my $offset = -s $node->logfile;
backlog('read-only', 30000);
set_system(q{ALTER SYSTEM SET default_transaction_read_only = on});
my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM payment.payments');
note "read-only from $before stored of $total";
# deliberate: eight seconds in which the workers must store nothing
sleep 8;
my $during = $node->safe_psql('postgres', 'SELECT count(*) FROM payment.payments');
cmp_ok($during - $before, '<=', 40, 'read-only: the workers stopped storing (at most the batches in flight)');
cmp_ok($during, '<', $total, 'read-only: payments wait in the queue');
# ALTER SYSTEM is allowed in a read-only transaction
set_system(q{ALTER SYSTEM RESET default_transaction_read_only});
recovered('read-only');
my $lines = log_lines($offset, qr/WARNING:  cannot execute \w+ in a read-only transaction/);
note 'read-only warnings by worker: ' . join(', ', map { "$_: $lines->{$_}" } sort keys %$lines);
cmp_ok(scalar(keys %$lines), '>=', 1, 'read-only: the error is logged');
is(scalar(grep { $_ > 1 } values %$lines), 0, 'read-only: at most once per worker, not once per retry');
cmp_ok(scalar(keys %{ log_lines($offset, qr/payment worker \d+ recovered after \d+ failed attempts/) }),
	'>=', 1, 'read-only: the recovery is logged');

# a lock on payment.payments held by another session for $s seconds
sub hold_lock
{
	my ($s) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
			'-c', "BEGIN; LOCK TABLE payment.payments IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep($s); COMMIT;" ],
		'<', \undef, '>', \$out, '2>', \$err);
	$node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_locks
 WHERE relation = 'payment.payments'::regclass AND mode = 'AccessExclusiveLock' AND granted})
	  or die 'lock not taken';
	return $h;
}

# -- (b) statement_timeout does not reach the workers
$offset = -s $node->logfile;
set_system(q{ALTER SYSTEM SET statement_timeout = '100ms'});
backlog('statement-timeout', 2000);
my $h = hold_lock(3);
submit('statement-timeout during', 500);
$h->finish;
recovered('statement_timeout');
is(scalar(keys %{ log_lines($offset, qr/canceling statement due to statement timeout/) }), 0,
	'statement_timeout: no worker was canceled (it applies to client statements only)');
set_system(q{ALTER SYSTEM RESET statement_timeout});

# -- (c) a lock held longer than the visibility timeout
$offset = -s $node->logfile;
backlog('lock', 3000);
my $t0 = time();
$h = hold_lock($lock_s);
submit('lock during', 1000);
$before = $node->safe_psql('postgres', 'SELECT count(*) FROM payment.payments');
$h->finish;
note sprintf('lock held %.1f s', time() - $t0);
recovered('lock');
my $warnings = log_lines($offset, qr/WARNING:/);
is(scalar(grep { $_ > 1 } values %$warnings), 0, 'lock: no warning repeated by a worker');

# -- (c') the same lock with lock_timeout: every store fails until the lock goes
$offset = -s $node->logfile;
set_system(q{ALTER SYSTEM SET lock_timeout = '100ms'});
backlog('lock-timeout', 1000);
$h = hold_lock($lock_s);
submit('lock-timeout during', 500);
$h->finish;
set_system(q{ALTER SYSTEM RESET lock_timeout});
recovered('lock_timeout');
my $timeouts = log_lines($offset, qr/WARNING:  canceling statement due to lock timeout/);
note 'lock_timeout warnings by worker: ' . join(', ', map { "$_: $timeouts->{$_}" } sort keys %$timeouts);
cmp_ok(scalar(keys %$timeouts), '>=', 1, 'lock_timeout: the error is logged');
is(scalar(grep { $_ > 1 } values %$timeouts), 0, 'lock_timeout: at most once per worker, not once per retry');
is(scalar(keys %{ log_lines($offset, qr/will retry message/) }), 0,
	'lock_timeout: no message-by-message retry lines (the fault is the database\'s, not the messages\')');

is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $born, 'the postmaster never restarted');
unlike(slurp_file($node->logfile), qr/terminated by signal|PANIC/, 'no crash');
$node->stop;
done_testing();
