# payment.database = '*': every database that has the extension is served.
# Two databases with the extension get a pool each and store their own
# payments; CREATE EXTENSION raises no 55000 warning there; a database
# without the extension is looked at once and keeps no worker; DROP
# DATABASE of a database whose pool is growing succeeds within seconds;
# a database made at run time (CREATE DATABASE + CREATE EXTENSION) is
# served without a restart, and when the pool is full a worker above its
# database's share retires for it; the workers of all databases never exceed
# payment.max_workers.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use PaymentNode qw(new_payment_node enqueue_directly payment_sql reload_with);

my $max_workers = 5;
my $node = new_payment_node('everydb', extension => undef, settings => {
	'payment.database' => "'*'",
	'payment.workers' => 1,
	'payment.max_workers' => $max_workers,
	max_worker_processes => 16,
	'payment.scale_up_after' => '200ms',
	'payment.scale_down_after' => '30s' });

my $workers_in = q{SELECT count(*) FROM pg_stat_activity
  WHERE backend_type = 'payment worker' AND datname = '%s'};
sub workers_in { return $node->safe_psql('postgres', sprintf($workers_in, $_[0])); }
sub all_workers
{
	return $node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'payment worker'});
}

$node->safe_psql('postgres', "CREATE DATABASE $_") for qw(alpha beta plain);
for my $db (qw(alpha beta))
{
	my ($ret, $out, $err) = $node->psql($db, 'CREATE EXTENSION payment');
	is($ret, 0, "CREATE EXTENSION payment in $db");
	unlike($err, qr/no payment worker serves/, "no 55000 warning in $db: a pool serves it");
}

for my $db (qw(alpha beta))
{
	ok($node->poll_query_until('postgres', 'SELECT (' . sprintf($workers_in, $db) . ') >= 1'),
		"database $db has a pool");
	$node->safe_psql($db, qq{SELECT submit_payment(@{[ payment_sql($db, 'every') =~ s/\bi\b/1/gr ]})});
	ok($node->poll_query_until($db, 'SELECT count(*) = 1 FROM payment.payments'),
		"a payment submitted in $db is stored in $db");
}
is($node->safe_psql('alpha', 'SELECT workers FROM payment.stats'), workers_in('alpha'),
	'payment.stats counts the workers of its database');
# a second payment in alpha only: each database counts its own
$node->safe_psql('alpha', qq{SELECT submit_payment(@{[ payment_sql('alpha', 'every') =~ s/\bi\b/2/gr ]})});
ok($node->poll_query_until('alpha', 'SELECT count(*) = 2 FROM payment.payments'),
	'a second payment stored in alpha');
ok($node->poll_query_until('alpha', 'SELECT submitted = 2 AND stored = 2 FROM payment.stats'),
	'payment.stats in alpha counts alpha\'s two payments');
is($node->safe_psql('beta', 'SELECT submitted || \' \' || stored FROM payment.stats'), '1 1',
	'payment.stats in beta counts beta\'s one payment');

# the database without the extension: looked at, then left alone
ok(wait_for_log(qr/payment worker \d+ started for database "plain"/),
	'a worker looked at the database without the extension');
ok($node->poll_query_until('postgres', 'SELECT (' . sprintf($workers_in, 'plain') . ') = 0'),
	'no worker stays connected to the database without the extension');
my $looks = () = slurp_file($node->logfile) =~ /started for database "plain"/g;
sleep 3;
my $looks_after = () = slurp_file($node->logfile) =~ /started for database "plain"/g;
is($looks_after, $looks, 'it is not looked at again until an extension is created');

# beta's pool grows under a slow backlog; then beta is dropped
$node->safe_psql('beta', q{
CREATE FUNCTION public.slow_store() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN PERFORM pg_sleep(0.005); RETURN NEW; END$$;
CREATE TRIGGER slow_store BEFORE INSERT ON payment.payments
  FOR EACH ROW EXECUTE FUNCTION public.slow_store();
});
enqueue_directly($node, 20_000, 'bk', 'backlog', 'beta');
my ($most, $start) = (0, time());
while (time() - $start < 20)
{
	my $n = all_workers();
	$most = $n if $n > $most;
	last if workers_in('beta') >= 2;
	usleep(50_000);
}
# two databases served: each has a share of int(5 / 2) = 2 workers
cmp_ok(workers_in('beta'), '>=', 2, "beta's pool grows to its share under its backlog");
cmp_ok($node->safe_psql('beta', 'SELECT count(*) FROM payment.queue'), '>', 0,
	'the backlog is still being worked when beta is dropped');
$start = time();
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE beta');
my $took = time() - $start;
is($ret, 0, 'DROP DATABASE of a database with a growing pool succeeds') or diag $err;
cmp_ok($took, '<', 4, sprintf('and takes %.2f s (< 4 s)', $took));
is(workers_in('beta'), '0', 'no worker is left in the dropped database');

# a database made at run time is served without a restart
$node->safe_psql('postgres', 'CREATE DATABASE gamma');
$node->safe_psql('gamma', 'CREATE EXTENSION payment');
ok($node->poll_query_until('postgres', 'SELECT (' . sprintf($workers_in, 'gamma') . ') >= 1'),
	'a database created at run time gets a pool');
$node->safe_psql('gamma', qq{SELECT submit_payment(@{[ payment_sql('g', 'every') =~ s/\bi\b/1/gr ]})});
ok($node->poll_query_until('gamma', 'SELECT count(*) = 1 FROM payment.payments'),
	'and its payments are stored there');

# the plain database gets the extension: served now too
$node->safe_psql('plain', 'CREATE EXTENSION payment');
ok($node->poll_query_until('postgres', 'SELECT (' . sprintf($workers_in, 'plain') . ') >= 1'),
	'CREATE EXTENSION in a database looked at before: served');

# DROP EXTENSION: its workers leave
$node->safe_psql('plain', 'DROP EXTENSION payment');
ok($node->poll_query_until('postgres', 'SELECT (' . sprintf($workers_in, 'plain') . ') = 0'),
	'after DROP EXTENSION no worker stays in the database');

is($node->safe_psql('alpha', 'SELECT count(*) FROM payment.payments'), '2',
	'alpha kept its payments');

# the whole pool in use (alpha and gamma at their share of 2, with backlogs):
# a database given the extension then waits for a slot, and pools above the
# new share retire a worker for it
for my $db (qw(alpha gamma))
{
	$node->safe_psql($db, q{
CREATE FUNCTION public.slow_store() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN PERFORM pg_sleep(0.005); RETURN NEW; END$$;
CREATE TRIGGER slow_store BEFORE INSERT ON payment.payments
  FOR EACH ROW EXECUTE FUNCTION public.slow_store();
});
	enqueue_directly($node, 20_000, "bk$db", 'backlog', $db);
}
$start = time();
while (time() - $start < 20)
{
	my $n = all_workers();
	$most = $n if $n > $most;
	last if workers_in('alpha') >= 2 && workers_in('gamma') >= 2;
	usleep(50_000);
}
ok(workers_in('alpha') >= 2 && workers_in('gamma') >= 2, 'alpha and gamma grow to their share');
$node->safe_psql('postgres', 'CREATE DATABASE delta');
$node->safe_psql('delta', 'CREATE EXTENSION payment');
$start = time();
while (time() - $start < 20)
{
	my $n = all_workers();
	$most = $n if $n > $most;
	last if workers_in('delta') >= 1;
	usleep(50_000);
}
cmp_ok(workers_in('delta'), '>=', 1, 'a database waiting for a slot gets a worker');
ok(wait_for_log(qr/payment worker \d+ exits: its slot goes to another database/),
	'a worker above its share retires for it, and says why');
ok(!$node->log_contains(qr/exits: no backlog for/),
	'no worker retired as idle: every backlog still lasts');

for (1 .. 10)
{
	my $n = all_workers();
	$most = $n if $n > $most;
	usleep(100_000);
}
cmp_ok($most, '<=', $max_workers, "at most payment.max_workers workers in all ($most seen)");
ok(!$node->log_contains(qr/terminated by signal|restart loop|server process .* exited with exit code [^0]/),
	'no process crashed');

# One SQS queue for every database would store one database's payments in
# another: refused at the front door (55000), nothing sent.
reload_with($node, 'payment.queue_url' => "'https://sqs.us-east-1.amazonaws.com/000000000000/every'");
($ret, $out, $err) = $node->psql('alpha',
	q{\set VERBOSITY verbose
SELECT submit_payment(jsonb_build_object('paymentId', gen_random_uuid()::text,
  'userId', '0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4', 'dateTimestamp', '1709553600',
  'description', 'sqs with every database', 'currency', 'GBP', 'amount', 1))});
like($err, qr/ERROR:  55000: payment.queue_url cannot be used with payment.database = '\*'/,
	"SQS with payment.database = '*': the front door refuses with 55000");
reload_with($node, 'payment.queue_url' => "''");
ok(!$node->log_contains(qr/terminated by signal|server process .* exited with exit code [^0]/),
	'and nothing crashed meanwhile');

sub wait_for_log
{
	my ($re) = @_;
	for (1 .. 100)
	{
		return 1 if slurp_file($node->logfile) =~ $re;
		usleep(100_000);
	}
	return 0;
}

done_testing();
