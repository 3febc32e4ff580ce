# Least privilege: nothing in schema payment reachable by PUBLIC; a client
# role granted only EXECUTE on submit_payment and payment_status can use them
# but cannot touch the tables or the security settings; row-level security
# for reader roles; the depth limit and the JSON parser as a WAF; the audit
# line names the calling role.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use AuthHelper;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = new_auth_node('auth_priv');
my $alice = '0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4';
my $bob = '7c1e2a10-93b4-4d6e-9f0a-1b2c3d4e5f60';

$node->safe_psql('postgres', q{
CREATE ROLE client LOGIN;
GRANT EXECUTE ON FUNCTION submit_payment(jsonb, text), payment_status(uuid, text) TO client;
CREATE ROLE nobody LOGIN;
CREATE ROLE reader LOGIN;
GRANT USAGE ON SCHEMA payment TO reader;
GRANT SELECT ON payment.payments, payment.reader_users TO reader;
});

# nothing granted to PUBLIC
is($node->safe_psql('postgres', q{
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
       aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
 WHERE n.nspname = 'payment' AND a.grantee = 0}), '0', 'no table, view or sequence in payment granted to PUBLIC');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
 WHERE n.nspname = 'payment' AND a.grantee = 0}), '0', 'schema payment not usable by PUBLIC');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM pg_depend d JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid,
       aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'payment')
   AND a.grantee = 0}), '0', 'no function of the extension executable by PUBLIC');
is(sqlstate($node, "SELECT submit_payment('" . payload($alice) . "')", role => 'nobody'),
	'42501', 'a role without grants cannot submit');

# the client role: the two entry points and nothing else
my $payment = 'a1b2c3d4-0000-4000-8000-00000000000a';
is(sqlstate($node, "SELECT submit_payment('" . payload($alice, $payment) . "')", role => 'client'),
	'ok', 'client submits');
my ($state, $out) = sqlstate($node, "SELECT payment_status('$payment')->>'status'", role => 'client');
is($out, 'queued', 'client asks the status');
for my $sql ("SELECT * FROM payment.payments", "SELECT * FROM payment.queue",
	"SELECT * FROM payment.api_keys", "SELECT * FROM payment.dead_letters",
	"SELECT * FROM payment.stats",
	"INSERT INTO payment.queue (body) VALUES ('{}')",
	"UPDATE payment.api_keys SET revoked_at = NULL",
	"DELETE FROM payment.payments",
	"SELECT submit_payments('[]')",
	"SELECT create_api_key('mine')",
	"SELECT revoke_api_key('partner')",
	"SELECT redrive_dead_letters()")
{
	is(sqlstate($node, $sql, role => 'client'), '42501', "client refused: $sql");
}
for my $setting (qw(payment.auth payment.jwt_issuer payment.jwt_audience payment.jwks_url
	payment.jwt_user_claim payment.jwt_leeway payment.jwks_refetch_interval payment.max_json_depth
	payment.jwt_cache_size))
{
	my $value = $setting eq 'payment.auth' ? 'role' : $setting =~ /leeway|interval|depth|cache/ ? '100' : 'x';
	is(sqlstate($node, "SET $setting = '$value'", role => 'client'), '42501', "client cannot SET $setting");
}
is(sqlstate($node, "SELECT set_config('payment.auth', 'role', false)", role => 'client'), '42501',
	'nor with set_config');
is(sqlstate($node, "SET payment.rate_limit = 0", role => 'client'), '55P02',
	'payment.rate_limit is a server setting (reload only)');
is(sqlstate($node, "ALTER SYSTEM SET payment.auth = 'role'", role => 'client'), '42501',
	'nor ALTER SYSTEM');

# the audit line names the caller: outer role and session role
$node->append_conf('postgresql.conf', "payment.auth = 'api_key'\n");
$node->reload;
is(sqlstate($node, "SELECT submit_payment('" . payload($alice) . "', 'wrong')", role => 'client'),
	'28P01', 'client with a wrong key refused');
is(sqlstate($node, "SET ROLE client; SELECT submit_payment('" . payload($alice) . "', 'wrong')"),
	'28P01', 'also after SET ROLE');
my $log = slurp_file($node->logfile);
like($log, qr/refused submit_payment by role "client"(, payment "[^"]*")?: malformed API key/, 'audit names the client role');
like($log, qr/refused submit_payment by role "client" \(session role "postgres"\)(, payment "[^"]*")?: malformed API key/,
	'audit names the session role after SET ROLE');
unlike($log, qr/'wrong'/, 'the statement with the credential is not logged');
$node->append_conf('postgresql.conf', "payment.auth = 'role'\n");
$node->reload;

# defence in depth in place of a WAF
my $deep = payload($alice);
$deep =~ s/\}$/, "extra": [[[[[[[[["deep"]]]]]]]]]}/;
($state, $out, my $err) = sqlstate($node, "SELECT submit_payment('$deep')", role => 'client');
is($state, '54000', 'payload nested deeper than payment.max_json_depth: 54000');
like(slurp_file($node->logfile), qr/refused submit_payment by role "client", payment "[0-9a-f-]{36}": payload nested too deeply/,
	'deep payload audited with its payment id');
my $ok = payload($alice);
$ok =~ s/\}$/, "extra": [[["fine"]]]}/;
is(sqlstate($node, "SELECT submit_payment('$ok')", role => 'client'), 'ok', 'modest nesting accepted');
is(sqlstate($node, "SELECT submit_payment(E'{\"paymentId\": \\x01 1}')", role => 'client'), '22P02',
	'control character outside strings rejected by the JSON parser');
is(sqlstate($node, "SELECT submit_payment('{\"description\": \"a\\u0000b\"}')", role => 'client'), '22P05',
	'NUL rejected by the JSON parser');
my $inject = payload($alice);
$inject =~ s/Regular payment/x''); DROP TABLE payment.payments; --/;
is(sqlstate($node, "SELECT submit_payment('$inject')", role => 'client'), 'ok', 'SQL in a value is just data');
is($node->safe_psql('postgres', "SELECT count(*) FROM payment.queue WHERE body::jsonb->>'description' LIKE '%DROP TABLE%'"),
	'1', 'stored verbatim, table intact');

# row-level security: a reader sees only the users mapped to it
$node->safe_psql('postgres', qq{
INSERT INTO payment.payments (payment_id, user_id, amount, currency, description, date_timestamp, body, message_id)
VALUES (gen_random_uuid(), '$alice', 1, 'GBP', 'a', '1', '{}', 'm1'),
       (gen_random_uuid(), '$alice', 2, 'GBP', 'a', '1', '{}', 'm2'),
       (gen_random_uuid(), '$bob', 3, 'GBP', 'b', '1', '{}', 'm3');
INSERT INTO payment.reader_users VALUES ('reader', '$alice'), ('someone_else', '$bob');
});
($state, $out) = sqlstate($node, "SELECT count(*), min(user_id::text) FROM payment.payments", role => 'reader');
is($out, "2|$alice", "reader sees only alice's payments");
($state, $out) = sqlstate($node, "SELECT count(*) FROM payment.reader_users", role => 'reader');
is($out, '1', 'reader sees only its own mapping');
is(sqlstate($node, "INSERT INTO payment.reader_users VALUES ('reader', '$bob')", role => 'reader'), '42501',
	'reader cannot map itself to more users');
is(sqlstate($node, "DELETE FROM payment.payments", role => 'reader'), '42501', 'reader cannot delete');
is($node->safe_psql('postgres', "SELECT count(*) FROM payment.payments"), '3', 'the superuser sees all');

$node->stop;
done_testing();
