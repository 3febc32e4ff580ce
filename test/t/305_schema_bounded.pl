# Issue 18: no input pins a backend.  A schema of thirty definitions, each an
# allOf of two $refs to the previous one, applies 2^31 nodes to any value:
# validate_json('{}', it) used to run for ever, deaf to statement_timeout,
# pg_cancel_backend and pg_terminate_backend.  Now validation checks for
# interrupts at every step, payment.max_validation_steps ends it with 54001
# in well under 200 ms, and set_payment_schema refuses such a schema.  The
# drain workers dead-letter a message whose validation runs out of budget.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use IPC::Run;
use ReleaseHelper;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = new_release_node('bounded');
$node->safe_psql('postgres', q{
CREATE EXTENSION payment;
-- the exponential schema; it requires the keys, so only its cost refuses it
CREATE FUNCTION bomb(leaf jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object('type', 'object', 'required', jsonb_build_array('paymentId', 'userId'),
    'allOf', jsonb_build_array(jsonb_build_object('$ref', '#/definitions/d30')),
    'definitions', jsonb_object_agg('d' || i, CASE WHEN i = 0 THEN leaf
      ELSE jsonb_build_object('allOf', jsonb_build_array(
        jsonb_build_object('$ref', '#/definitions/d' || (i - 1)),
        jsonb_build_object('$ref', '#/definitions/d' || (i - 1)))) END))
  FROM generate_series(0, 30) i $$;
-- "<SQLSTATE or ok> <milliseconds> <server clock at the end, epoch>"
CREATE FUNCTION timed(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); state text := 'ok';
BEGIN
  BEGIN
    EXECUTE q;
  EXCEPTION WHEN query_canceled OR others THEN
    state := SQLSTATE;
  END;
  RETURN state || ' ' || round(1000 * extract(epoch FROM clock_timestamp() - t0))
         || ' ' || extract(epoch FROM clock_timestamp());
END $$;
-- milliseconds until backend p is gone, polled every 5 ms; -1 after 5 s
CREATE FUNCTION gone_after(p int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
  WHILE clock_timestamp() - t0 < '5s' LOOP
    PERFORM pg_stat_clear_snapshot();
    IF NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = p) THEN
      RETURN round(1000 * extract(epoch FROM clock_timestamp() - t0));
    END IF;
    PERFORM pg_sleep(0.005);
  END LOOP;
  RETURN -1;
END $$;
CREATE TABLE big AS SELECT jsonb_agg(i) AS doc FROM generate_series(1, 50000) i;
});

# A query that may never end (the code this test guards against): killed by
# the harness after 20 s, so that the test fails instead of hanging.
sub timed_query
{
	my ($setup, $query) = @_;
	my ($out, $err, $timed_out) = ('', '', 0);
	$node->psql('postgres', "$setup SELECT timed(\$q\$$query\$q\$)",
		stdout => \$out, stderr => \$err, timeout => 20, timed_out => \$timed_out);
	return $timed_out ? 'timed-out 20000 0' : ($out ne '' ? $out : "error: $err");
}

my $off = 'SET payment.max_validation_steps = 0;';

# 1. the budget off (a superuser may): statement_timeout ends it
my ($state, $ms) = split / /, timed_query("$off SET statement_timeout = '2s';",
	q{SELECT validate_json('{}', bomb())});
is($state, '57014', 'budget off: statement_timeout cancels the exponential schema');
cmp_ok($ms, '<', 3000, "... within 3 s ($ms ms for a 2 s timeout)");
BAIL_OUT('validation cannot be interrupted: the other checks would hang too')
  if $state ne '57014';

# 2. the default budget: 54001, fast
($state, $ms) = split / /, timed_query('', q{SELECT validate_json('{}', bomb())});
is($state, '54001', 'default budget: the exponential schema runs out of budget (54001)');
cmp_ok($ms, '<', 1000, "... in well under a second ($ms ms)");
diag("exhausting the default budget on the exponential schema took $ms ms");
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT validate_json('{}', bomb())});
like($err, qr/JSON Schema validation exceeded its work budget.*DETAIL:  Validating the document took more than 5000000 steps.*HINT:  The budget is payment.max_validation_steps/s,
	'... with the budget in the detail and the setting in the hint');

# 3. pg_terminate_backend ends a call with the budget off
sub start_call
{
	my ($sql, $out) = @_;
	my $h = IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c', $sql ],
		'>', $out, '2>', \my $err);
	$node->poll_query_until('postgres', q{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE state = 'active' AND query LIKE '%validate_json%' AND pid <> pg_backend_pid()})
	  or die 'the call did not start';
	return ($h, $node->safe_psql('postgres', q{
SELECT pid FROM pg_stat_activity
 WHERE state = 'active' AND query LIKE '%validate_json%' AND pid <> pg_backend_pid()}));
}

my $call_out = '';
my ($h, $pid) = start_call("$off SELECT validate_json('{}', bomb())", \$call_out);
my $gone = $node->safe_psql('postgres', "SELECT pg_terminate_backend($pid), gone_after($pid)");
$h->finish;
like($gone, qr/^t\|\d+$/, 'pg_terminate_backend ends a running validation');
my ($gone_ms) = $gone =~ /\|(-?\d+)$/;
ok($gone_ms >= 0 && $gone_ms < 1000, "... the backend is gone within a second ($gone_ms ms)");

# 4. pg_cancel_backend: 57014, measured from the cancel to the call's end
($h, $pid) = start_call("$off SELECT timed(\$q\$SELECT validate_json('{}', bomb())\$q\$)",
	\$call_out);
my $cancelled_at = $node->safe_psql('postgres',
	"SELECT extract(epoch FROM clock_timestamp()) FROM pg_cancel_backend($pid)");
$h->finish;
my ($cstate, undef, $ended_at) = split / /, $call_out;
is($cstate, '57014', 'pg_cancel_backend cancels a running validation');
my $cancel_ms = sprintf('%.1f', 1000 * ($ended_at - $cancelled_at));
cmp_ok($cancel_ms, '<', 1000, "... at once ($cancel_ms ms after the cancel)");

# 5. set_payment_schema refuses the exponential schema by its static cost
($ret, $out, $err) = $node->psql('postgres', q{
\set VERBOSITY verbose
SELECT set_payment_schema(bomb(), 'exponential')});
like($err, qr/54001: JSON schema is too expensive to validate with.*2147483648 applications.*limit is 100000/s,
	'set_payment_schema refuses the exponential schema (54001), naming its static cost');
is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.schemas'), '0', '... and stores nothing');

# 6. uniqueItems on 50,000 items: linear, done in milliseconds, and found
($state, $ms) = split / /, timed_query('', q{
DO $$ BEGIN
  IF NOT (SELECT (validate_json(doc, '{"uniqueItems": true}') ->> 'valid')::bool FROM big) THEN
    RAISE 'distinct items refused';
  END IF;
  IF (SELECT validate_json(doc || '[49999]', '{"uniqueItems": true}') -> 'errors' ->> 0 FROM big)
     <> '{"path": "$", "keyword": "uniqueItems", "message": "items 49998 and 50000 are equal"}' THEN
    RAISE 'the duplicate is not reported';
  END IF;
END $$});
is($state, 'ok', 'uniqueItems on 50,000 items: distinct accepted, a duplicate found');
cmp_ok($ms, '<', 1000, "... quickly (both in $ms ms)");
diag("uniqueItems on 50,000 items (twice) took $ms ms");
# ... and uniqueItems work is cancellable and budgeted: 2^31 times over
($state, $ms) = split / /, timed_query("$off SET statement_timeout = '300ms';",
	q{SELECT validate_json(doc, bomb('{"uniqueItems": true}') - 'type' - 'required') FROM big});
is($state, '57014', 'repeated uniqueItems on 50,000 items is cancelled by statement_timeout');
cmp_ok($ms, '<', 1300, "... promptly ($ms ms for a 300 ms timeout)");
($state, $ms) = split / /, timed_query('',
	q{SELECT validate_json(doc, bomb('{"uniqueItems": true}') - 'type' - 'required') FROM big});
is($state, '54001', '... and runs out of the default budget');
cmp_ok($ms, '<', 1000, "... quickly ($ms ms)");

# 7. payments still submit and store normally under the reference schema
$node->safe_psql('postgres', "SELECT submit_payment('" . payment_doc(1) . "')");
ok($node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM payment.payments'),
	'a payment submitted under the reference schema is stored');

# 8. the workers: a message whose validation runs out of budget is
# dead-lettered as invalid, with the reason; its neighbours are stored.  A
# budget of 60 steps: the reference payment takes about 33, one with 60 more
# properties about 95.
$node->append_conf('postgresql.conf', 'payment.max_validation_steps = 60');
$node->reload;
$node->poll_query_until('postgres', 'SHOW payment.max_validation_steps', '60')
  or die 'payment.max_validation_steps not reloaded';
sleep 1;    # every worker takes the SIGHUP
my $wide = payment_doc(3);
$wide =~ s/^\{/'{' . join('', map { "\"extra$_\": $_, " } 1 .. 60)/e;
($ret, $out, $err) = $node->psql('postgres', "SELECT submit_payment('$wide')");
like($err, qr/JSON Schema validation exceeded its work budget/,
	'submit_payment refuses a payment that exceeds the budget');
$node->safe_psql('postgres', "
INSERT INTO payment.queue (body) VALUES ('${\ payment_doc(2)}');
INSERT INTO payment.queue (body) VALUES ('$wide');
INSERT INTO payment.queue (body) VALUES ('${\ payment_doc(4)}');
SELECT pg_notify('x', 'y');");
ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM payment.queue'),
	'the queue drains');
is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.payments'), '3',
	'the neighbours of the over-budget message are stored');
is($node->safe_psql('postgres', q{
SELECT reason || ' ' || receive_count || ': ' || error FROM payment.dead_letters
 WHERE payment_id = 'aaaaaaaa-0000-4000-8000-000000000003'}),
	'invalid 1: JSON Schema validation exceeded its work budget',
	'the over-budget message is dead-lettered once, as invalid, with the reason');

my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal/, 'no crash');
$node->stop;
done_testing();
