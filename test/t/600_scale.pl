# The elastic pool: under a 20,000-message backlog in the embedded queue the
# pool grows from payment.workers to payment.max_workers, recovers its size
# after a kill -9 of a dynamic worker (which loses nothing and stores nothing
# twice), and shrinks back to payment.workers once idle.  Also: a database
# the workers do not serve warns at CREATE EXTENSION and at every submit, and
# counts none of the workers in payment.stats.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use PaymentNode qw(new_payment_node enqueue_directly);

my $backlog = 20_000;

my $node = new_payment_node('scale', settings => {
	'payment.max_workers' => 8,
	max_worker_processes => 16,
	'payment.scale_up_after' => '500ms',
	'payment.scale_down_after' => '3s',
	'payment.visibility_timeout' => '5s',
	'payment.paused' => 'on',
	restart_after_crash => 'on' });

is($node->safe_psql('postgres', q{
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'payment launcher'}),
	'1', 'the pool launcher runs');

# A slow store (2 ms a payment, as a store across a network would be): two
# workers cannot keep up, so the backlog lasts long enough to grow the pool.
$node->safe_psql('postgres', q{
CREATE FUNCTION public.slow_store() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN PERFORM pg_sleep(0.002); RETURN NEW; END$$;
CREATE TRIGGER slow_store BEFORE INSERT ON payment.payments
  FOR EACH ROW EXECUTE FUNCTION public.slow_store();
});

# the backlog, queued while the workers are paused
enqueue_directly($node, $backlog, '', 'scale');
is($node->safe_psql('postgres', 'SELECT workers FROM payment.stats'), '2',
	'payment.workers static workers before the backlog');

my $workers_sql = q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'payment worker'};
my $start = time();
$node->append_conf('postgresql.conf', 'payment.paused = off');
$node->reload;

# sample the pool while it grows
my ($max_seen, $busy_seen, $full_after) = (0, 0, undef);
while (time() - $start < 60)
{
	my ($n, $busy) = split /\|/, $node->safe_psql('postgres',
		"SELECT ($workers_sql), workers_busy FROM payment.stats");
	$max_seen = $n if $n > $max_seen;
	$busy_seen = $busy if $busy > $busy_seen;
	if ($n == 8) { $full_after = time() - $start; last; }
	usleep(100_000);
}
is($max_seen, 8, 'the pool grows to payment.max_workers under the backlog');
ok(defined $full_after && $full_after < 10,
	sprintf('full size %.1f s after the backlog appeared (< 10 s)', $full_after // -1));
ok($busy_seen >= 1, "workers_busy counts workers storing a batch ($busy_seen seen)");
my $queued_at_full = $node->safe_psql('postgres', 'SELECT count(*) FROM payment.queue');
cmp_ok($queued_at_full, '>', 2000, "the backlog was still there at full size ($queued_at_full left)");

# kill -9 a dynamic worker: the postmaster restarts every process, the
# claimed batches come back after the visibility timeout
my $victim = $node->safe_psql('postgres', q{
SELECT pid FROM pg_stat_activity WHERE backend_type = 'payment worker'
   AND application_name = 'payment worker 8'});
ok($victim =~ /^\d+$/, 'dynamic worker 8 is in pg_stat_activity by name');
kill 'KILL', $victim;
ok($node->poll_query_until('postgres', "SELECT ($workers_sql) = 8"),
	'after the crash the pool grows back to payment.max_workers');
ok($node->log_contains(qr/server process .*PID $victim.* was terminated by signal 9|background worker "payment worker" \(PID $victim\) was terminated by signal 9/),
	'the kill -9 was a crash');

ok($node->poll_query_until('postgres', 'SELECT NOT EXISTS (SELECT FROM payment.queue)', 't'),
	'the backlog is drained');
is($node->safe_psql('postgres', q{
SELECT count(*) || ' ' || count(DISTINCT payment_id) FROM payment.payments}),
	"$backlog $backlog", 'every payment stored exactly once');
is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.dead_letters'), '0',
	'nothing dead-lettered')
  or diag($node->safe_psql('postgres',
	'SELECT reason, left(error, 200), count(*) FROM payment.dead_letters GROUP BY 1, 2 LIMIT 5'));

# idle: back to payment.workers after scale_down_after
ok($node->poll_query_until('postgres', "SELECT ($workers_sql) = 2"),
	'the pool shrinks back to payment.workers when idle');
my ($events, $busy_idle) = split /\|/, $node->safe_psql('postgres',
	'SELECT scale_events, workers_busy FROM payment.stats');
cmp_ok($events, '>=', 6, "scale events counted ($events)");
is($busy_idle, '0', 'no worker busy when idle');
ok($node->log_contains(qr/payment worker \d+ exits: no backlog for 3 s/),
	'dynamic workers log why they exit');
ok(!$node->log_contains(qr/could not start another payment worker/),
	'never short of worker slots');

# a database the workers do not serve
$node->safe_psql('postgres', 'CREATE DATABASE other');
my ($ret, $out, $err) = $node->psql('other', 'CREATE EXTENSION payment');
is($ret, 0, 'CREATE EXTENSION in another database succeeds');
like($err, qr/WARNING:  no payment worker serves database "other"/,
	'and warns that no worker serves it');
like($err, qr/HINT:  .*payment\.database/, 'with a hint naming payment.database');
($ret, $out, $err) = $node->psql('other', q{
SELECT submit_payment('{"paymentId": "bbbbbbbb-0000-4000-8000-000000000001",
  "userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4", "dateTimestamp": "1709553600",
  "description": "elsewhere", "currency": "GBP", "amount": 1}') ->> 'message'},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
is($out, 'OK', 'a submit there still queues');
like($err, qr/WARNING:  55000: no payment worker serves database "other"/,
	'and warns with SQLSTATE 55000');
is($node->safe_psql('other', 'SELECT workers || \' \' || workers_busy FROM payment.stats'),
	'0 0', 'payment.stats there counts no worker');
($ret, $out, $err) = $node->psql('postgres', 'SELECT payment.check_database()');
is($out, 't', 'payment.check_database() is true where the workers serve');
is($err, '', 'and warns nothing there');

$node->stop;
done_testing();
