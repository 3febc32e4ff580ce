# Least privilege in the workers (issue 18), tried as an attacker would.
#
# (1) The owner of the served database, not a superuser, shadows what the
#     workers' statements call: evil.clock_timestamp(), evil.now(),
#     evil.hashtext() and an operator evil.= (jsonb, jsonb) on the database's
#     search_path (ALTER DATABASE ... SET search_path = evil, pg_catalog,
#     public), and public.make_interval(secs int), an exact int4 match that
#     beats pg_catalog's float8.  Each, if run, records itself and makes its
#     owner a superuser.  After a restart the workers (bootstrap superuser)
#     store, dead-letter, retry, rotate the event tables, grow the pool and
#     store a redriven message: none of those functions ran, the owner is
#     still not a superuser.
# (2) payment.worker_role: a LOGIN role with nothing granted makes each
#     worker log one clear 42501 with the call that fixes it, however long it
#     waits; after payment.grant_worker_privileges(role) the same paths work
#     with the workers connected as that role, under the same attack.
# (3) grant_worker_privileges: superuser only, LOGIN required, idempotent,
#     and the role gets exactly the listed privileges (no API keys).
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use ReleaseHelper;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

# the test's own sessions must not run the attacker's functions either
$ENV{PGOPTIONS} = '-c search_path=pg_catalog,public';

my $node = new_release_node('least_privilege',
	'payment.workers' => 1,
	'payment.max_workers' => 3,
	'payment.scale_up_after' => "'100ms'",
	'payment.queue_rotate_after' => "'1s'",
	'payment.visibility_timeout' => 1,
	'log_line_prefix' => "'%m [%p] %b '");

$node->safe_psql('postgres', q{
CREATE ROLE app LOGIN;
CREATE ROLE payment_worker LOGIN;
CREATE ROLE nologin_worker;
CREATE DATABASE pay OWNER app;});
$node->safe_psql('pay', q{
CREATE EXTENSION payment;
CREATE SCHEMA test;
-- fails the store of one payment while test.flaky_on exists: a transient fault
CREATE FUNCTION test.flaky() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN
  IF NEW.description = 'flaky' AND to_regclass('test.flaky_on') IS NOT NULL THEN
    RAISE EXCEPTION 'simulated serialization failure' USING ERRCODE = 'serialization_failure';
  END IF;
  RETURN NEW;
END $$;
GRANT USAGE ON SCHEMA test TO PUBLIC;
CREATE TRIGGER flaky BEFORE INSERT ON payment.payments
  FOR EACH ROW EXECUTE FUNCTION test.flaky();});

# The owner's attack, with the owner's own rights only.
$node->safe_psql('pay', q{
CREATE SCHEMA evil;
CREATE TABLE evil.calls (fn text);
GRANT USAGE ON SCHEMA evil TO PUBLIC;
GRANT INSERT ON evil.calls TO PUBLIC;
CREATE FUNCTION evil.pwn(what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO evil.calls (fn) VALUES (what);
  EXECUTE 'ALTER ROLE app SUPERUSER';
EXCEPTION WHEN insufficient_privilege THEN NULL;
END $$;
CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.pwn('clock_timestamp'); RETURN pg_catalog.clock_timestamp(); END $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.pwn('now'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION evil.hashtext(text) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.pwn('hashtext'); RETURN pg_catalog.hashtext($1); END $$;
CREATE FUNCTION evil.jsonb_eq(jsonb, jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.pwn('jsonb ='); RETURN pg_catalog.jsonb_eq($1, $2); END $$;
CREATE OPERATOR evil.= (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = evil.jsonb_eq);
CREATE FUNCTION public.make_interval(secs integer) RETURNS interval LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.pwn('make_interval'); RETURN pg_catalog.make_interval(secs => secs::float8); END $$;
ALTER DATABASE pay SET search_path = evil, pg_catalog, public;},
	extra_params => [ '-U', 'app' ]);

# the attack is live: a session that takes the database's settings runs it
{
	local $ENV{PGOPTIONS};
	is($node->safe_psql('pay', 'SHOW search_path'), 'evil, pg_catalog, public',
		'the owner set the database search_path: a session taking it would run the attack');
}

$node->append_conf('postgresql.conf', "payment.database = 'pay'\n");
$node->restart;

sub sql { return $node->safe_psql('pay', shift); }

my $next_id = 0;

# $n reference payments (description $what) as one SQL expression list
sub docs
{
	my ($n, $what) = @_;
	return join(', ', map { "('" . payment_doc(++$next_id) =~ s/release test \d+/$what/r . "')" } 1 .. $n);
}

sub submit
{
	my ($n, $what) = @_;
	sql('SELECT count(submit_payment(d::jsonb)) FROM (VALUES ' . docs($n, $what) . ') v(d)');
}

sub stored { return sql(qq{SELECT count(*) FROM payment.payments WHERE description = '$_[0]'}); }

# Every path the workers take, under the attack.
sub exercise
{
	my ($label) = @_;

	submit(50, "$label plain");
	ok($node->poll_query_until('pay', "SELECT count(*) = 50 FROM payment.payments WHERE description = '$label plain'"),
		"$label: 50 payments stored");

	# dead letters: a conflicting body for a stored key (written to the queue
	# as another producer would: from 1.2 submit_payment refuses it), and a
	# non-JSON message
	my $first = sql("SELECT body FROM payment.payments WHERE description = '$label plain' LIMIT 1");
	my $conflict = $first =~ s/"amount": [0-9.]+/"amount": 1234.5/r;
	sql("INSERT INTO payment.queue (body) VALUES ('$conflict')");
	sql(q{INSERT INTO payment.queue (body) VALUES ('not JSON at all')});
	ok($node->poll_query_until('pay', q{
SELECT count(*) FILTER (WHERE reason = 'conflict') = 1 AND count(*) FILTER (WHERE reason = 'invalid') = 1
  FROM payment.dead_letters}), "$label: a conflict and an invalid message dead-lettered");

	# redrive: the stored payment removed, its conflicting dead letter stores
	my ($pid) = $first =~ /"paymentId": "([^"]+)"/;
	sql("DELETE FROM payment.payments WHERE payment_id = '$pid'");
	is(sql(q{SELECT redrive_dead_letters(reason => 'conflict')}), '1', "$label: one dead letter redriven");
	ok($node->poll_query_until('pay', "SELECT amount = 1234.5 FROM payment.payments WHERE payment_id = '$pid'"),
		"$label: the redriven payment is stored");

	# a transient fault: retried (a row of payment.queue_retry) until it clears
	sql('CREATE TABLE test.flaky_on ()');
	submit(1, 'flaky');
	ok($node->poll_query_until('pay', q{
SELECT count(*) = 1 FROM payment.queue WHERE receive_count >= 2 AND body LIKE '%flaky%'}),
		"$label: a failing store is retried");
	sql('DROP TABLE test.flaky_on');
	ok($node->poll_query_until('pay', q{SELECT count(*) = 1 FROM payment.payments WHERE description = 'flaky'}),
		"$label: and stored once the fault is gone");
	sql(q{DELETE FROM payment.payments WHERE description = 'flaky'});

	# a backlog grows the pool; the settled generations are emptied
	set_paused($node, 1);
	sql(q{SELECT count(submit_payment(jsonb_build_object('paymentId', gen_random_uuid(),
	  'userId', gen_random_uuid(), 'dateTimestamp', '1709553600', 'description', 'backlog',
	  'currency', 'GBP', 'amount', i))) FROM generate_series(1, 20000) i});
	my $events = sql(q{SELECT (SELECT count(*) FROM payment.queue_events_0) + (SELECT count(*) FROM payment.queue_events_1)
	  + (SELECT count(*) FROM payment.queue_events_2)});
	my $scaled = sql('SELECT scale_events FROM payment.stats');
	set_paused($node, 0);
	ok($node->poll_query_until('pay', q{SELECT count(*) = 20000 FROM payment.payments WHERE description = 'backlog'}),
		"$label: a backlog of 20,000 stored");
	cmp_ok(sql('SELECT scale_events FROM payment.stats'), '>', $scaled, "$label: the pool grew for it");
	ok($node->poll_query_until('pay', qq{
SELECT (SELECT count(*) FROM payment.queue_events_0) + (SELECT count(*) FROM payment.queue_events_1)
     + (SELECT count(*) FROM payment.queue_events_2) < $events}),
		"$label: settled event tables emptied by the workers");
	sql(q{DELETE FROM payment.payments WHERE description = 'backlog'});
	sql('TRUNCATE payment.dead_letters');

	is(sql(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'app'}), 'f', "$label: the owner is not a superuser");
	is(sql(q{SELECT coalesce(string_agg(DISTINCT fn, ', '), 'none') FROM evil.calls}), 'none',
		"$label: none of the owner's functions ran");
}

is(sql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'payment worker' AND usename = 'postgres'}) >= 1
	  ? 'superuser' : 'other', 'superuser', 'the workers run as the bootstrap superuser by default');
exercise('superuser workers');

# -- (3) the grant function
my ($ret, $out, $err) = $node->psql('pay', q{SELECT payment.grant_worker_privileges('payment_worker')},
	extra_params => [ '-U', 'app' ]);
like($err, qr/permission denied for (schema payment|function grant_worker_privileges)/,
	'not executable by the database owner');
sql(q{GRANT EXECUTE ON FUNCTION payment.grant_worker_privileges(name) TO app; GRANT USAGE ON SCHEMA payment TO app});
($ret, $out, $err) = $node->psql('pay', q{SELECT payment.grant_worker_privileges('payment_worker')},
	extra_params => [ '-U', 'app', '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  42501: permission denied to grant the payment workers' privileges/,
	'refused to a non-superuser even with EXECUTE');
sql(q{REVOKE EXECUTE ON FUNCTION payment.grant_worker_privileges(name) FROM app; REVOKE USAGE ON SCHEMA payment FROM app});
($ret, $out, $err) = $node->psql('pay', q{SELECT payment.grant_worker_privileges('nologin_worker')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  55000: role "nologin_worker" cannot log in/, 'a role without LOGIN is refused, 55000');
($ret, $out, $err) = $node->psql('pay', q{SELECT payment.grant_worker_privileges('nobody')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  42704: role "nobody" does not exist/, 'an unknown role is refused, 42704');

# -- (2) a worker role without its privileges: one clear error per worker
$node->append_conf('postgresql.conf', "payment.worker_role = 'payment_worker'\n");
$node->restart;
ok($node->poll_query_until('pay', q{
SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'payment worker' AND usename = 'payment_worker'}),
	'the worker connects as payment.worker_role');
submit(1, 'waits for grants');
# deliberate: four seconds of retries, which must log once and store nothing
sleep 4;
my $log = slurp_file($node->logfile);
my @lacks = $log =~ /WARNING:  payment worker role "payment_worker" lacks privileges the workers need/g;
is(scalar @lacks, 1, 'a worker without its privileges says so once, however often it retries');
like($log, qr/DETAIL:  Missing: USAGE on schema payment; SELECT, INSERT on payment\.payments;.*row-level security policy of payment\.payments\./,
	'naming what is missing');
like($log, qr/HINT:  As a superuser, run SELECT payment\.grant_worker_privileges\('payment_worker'\);/,
	'and the call that grants it');
is(stored('waits for grants'), '0', 'nothing is stored meanwhile');

sql(q{SELECT payment.grant_worker_privileges('payment_worker')});
my $grants_sql = q{
SELECT string_agg(table_name || ':' || privilege_type, ',' ORDER BY table_name, privilege_type)
  FROM information_schema.role_table_grants WHERE grantee = 'payment_worker'};
my $grants = sql($grants_sql);
my $policies = sql(q{SELECT count(*) FROM pg_policies WHERE 'payment_worker' = ANY (roles)});
sql(q{SELECT payment.grant_worker_privileges('payment_worker')});
is(sql($grants_sql), $grants, 'a second grant changes no privilege');
is(sql(q{SELECT count(*) FROM pg_policies WHERE 'payment_worker' = ANY (roles)}), $policies,
	'nor the policies') ;
is($policies, '1', 'one row-level security policy for the worker role');
is($grants, join(',',
		'dead_letters:INSERT', 'dead_letters:SELECT',
		'idempotency_keys:DELETE', 'idempotency_keys:SELECT',
		'payments:INSERT', 'payments:SELECT',
		(map { ("queue_batches_$_:INSERT", "queue_batches_$_:SELECT", "queue_batches_$_:TRUNCATE") } 0 .. 2),
		(map { ("queue_events_$_:SELECT", "queue_events_$_:TRUNCATE") } 0 .. 2),
		'queue_retry:DELETE', 'queue_retry:INSERT', 'queue_retry:SELECT', 'queue_retry:UPDATE',
		'retired_queues:DELETE', 'retired_queues:INSERT', 'retired_queues:SELECT', 'retired_queues:UPDATE',
		'schemas:SELECT'),
	'exactly the privileges the workers need');
($ret, $out, $err) = $node->psql('pay', q{SET ROLE payment_worker; SELECT count(*) FROM payment.api_keys});
like($err, qr/permission denied for table api_keys/, 'the worker role cannot read API keys');
($ret, $out, $err) = $node->psql('pay', q{SET ROLE payment_worker; SELECT submit_payment('{}')});
like($err, qr/permission denied for function submit_payment/, 'nor call the front door');

ok($node->poll_query_until('pay', q{SELECT count(*) = 1 FROM payment.payments WHERE description = 'waits for grants'}),
	'once granted, the waiting payment is stored');
sql(q{DELETE FROM payment.payments WHERE description = 'waits for grants'});
exercise('worker role');
is(sql(q{SELECT count(*) FILTER (WHERE usename <> 'payment_worker') FROM pg_stat_activity WHERE backend_type = 'payment worker'}),
	'0', 'every worker, static and dynamic, ran as the worker role');
is(sql(q{SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = 'payment_worker'}), 'f',
	'the worker role is neither superuser nor BYPASSRLS');
my @faults = grep { /payment (worker|launcher).*(ERROR|FATAL)|PANIC|terminated by signal/ && !/due to administrator command/ }
  split /\n/, slurp_file($node->logfile);
is(scalar @faults, 0, 'no worker error and no crash in the server log') or diag(join "\n", @faults);

$node->stop;
done_testing();
