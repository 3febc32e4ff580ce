# API-key front door: keys created and revoked with SQL, stored only as
# hashes; wrong, unknown and revoked keys refused (28P01/28000); per-key
# token buckets and quotas shared by all backends (53400 with a retry hint);
# the server-wide limit, charged only after authentication; the limit of
# failed authentications; fail closed without shared_preload_libraries.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use AuthHelper;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = new_auth_node('auth_apikey', "payment.auth = 'api_key'\n");
my $user = '0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4';

sub submit
{
	my ($cred) = @_;
	my $c = defined $cred ? "'$cred'" : 'NULL';
	return "SELECT submit_payment('" . payload($user) . "', $c)";
}

# a session that calls submit_payment once per credential and reports
# 'ok' or the SQLSTATE of each call
my $try_fn = try_function($user);

# creation
my $key = $node->safe_psql('postgres', "SELECT create_api_key('partner')");
like($key, qr/^pay_[0-9a-f]{16}\.[A-Za-z0-9_-]{43}$/, 'create_api_key returns a key');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM payment.api_keys WHERE name = 'partner' AND key_hash = sha256('$key')"),
	'1', 'only the SHA-256 of the key is stored');
my $secret = (split /\./, $key)[1];
is($node->safe_psql('postgres', "SELECT count(*) FROM payment.api_keys a WHERE a::text LIKE '%$secret%'"),
	'0', 'the secret appears nowhere in the table');
is(sqlstate($node, "SELECT create_api_key('partner')"), '42710', 'duplicate name: 42710');
is(sqlstate($node, "SELECT create_api_key(NULL)"), '22004', 'null name: 22004');
is(sqlstate($node, "SELECT create_api_key('x', rate_limit => -1)"), '22023', 'negative rate: 22023');
is(sqlstate($node, "SELECT create_api_key('x', burst_limit => 5)"), '22023', 'burst without rate: 22023');
is(sqlstate($node, "SELECT create_api_key('x', quota_limit => 5, quota_period => '1 mon')"), '22023',
	'quota period in months: 22023');
is(sqlstate($node, "SELECT revoke_api_key('nobody')"), '42704', 'revoking an unknown key: 42704');

# checking a presented key
is(sqlstate($node, submit($key)), 'ok', 'valid key accepted');
my $wrong = substr($key, 0, -4) . (substr($key, -4) eq 'AAAA' ? 'BBBB' : 'AAAA');
is(sqlstate($node, submit($wrong)), '28P01', 'right id, wrong secret: 28P01');
is(sqlstate($node, submit('pay_0123456789abcdef.' . ('A' x 43))), '28P01', 'unknown key: 28P01');
is(sqlstate($node, submit('hunter2')), '28P01', 'malformed key: 28P01');
is(sqlstate($node, submit(undef)), '28000', 'no key: 28000');
is(sqlstate($node, qq{SET request.headers = '{"x-api-key": "$key"}'; } . submit(undef)),
	'ok', 'key read from request.headers (x-api-key)');
is(sqlstate($node, qq{SET request.headers = '{"x-api-key": "$wrong"}'; } . submit(undef)),
	'28P01', 'wrong key in request.headers refused');
is(sqlstate($node, "SELECT payment_status(gen_random_uuid(), '$wrong')"), '28P01',
	'payment_status checks the key too');

# revocation takes effect at once, also in a running session
my $revoked = $node->safe_psql('postgres', "SELECT create_api_key('leaver')");
is($node->safe_psql('postgres', qq{$try_fn
SELECT pg_temp.try('$revoked');
SELECT revoke_api_key('leaver');
SELECT pg_temp.try('$revoked');}), "ok\n\n28P01", 'revoked key refused right away');

# token bucket: rate 2/s, burst 3; refused calls use no tokens; refills
my $tight = $node->safe_psql('postgres', "SELECT create_api_key('tight', 2, 3)");
is($node->safe_psql('postgres', qq{$try_fn
SELECT string_agg(pg_temp.try('$tight'), ' ' ORDER BY i) FROM generate_series(1, 5) i;
SELECT pg_sleep(0.6);
SELECT pg_temp.try('$tight');
SELECT pg_temp.try('$tight');}), "ok ok ok 53400 53400\n\nok\n53400",
	'burst of 3 passes, then 53400; one token back after 0.5 s');
my ($state, $out, $err) = sqlstate($node, submit($tight) . '; ' . submit($tight) . '; ' . submit($tight) . '; ' . submit($tight));
is($state, '53400', 'throttled call: 53400');
like($err, qr/rate limit exceeded.*DETAIL:  The API key rate limit allows no more calls now\..*HINT:  Retry after 0\.\d+ seconds\./s,
	'throttling says when to retry');

# the buckets are shared by all backends
my $shared = $node->safe_psql('postgres', "SELECT create_api_key('shared', 0.01, 2)");
is(sqlstate($node, submit($shared) . '; ' . submit($shared)), 'ok', 'first session uses the burst');
is(sqlstate($node, submit($shared)), '53400', 'a second session finds the bucket empty');

# quota: 3 calls per hour, then 53400 until the period ends
my $quota = $node->safe_psql('postgres', "SELECT create_api_key('quota3', quota_limit => 3, quota_period => '1 hour')");
is($node->safe_psql('postgres', qq{$try_fn
SELECT string_agg(pg_temp.try('$quota'), ' ' ORDER BY i) FROM generate_series(1, 5) i;}),
	'ok ok ok 53400 53400', 'quota of 3 used up');
($state, $out, $err) = sqlstate($node, submit($quota));
is($state, '53400', 'quota exhausted: 53400');
like($err, qr/quota exceeded.*HINT:  Retry after (\d+)\.\d+ seconds\./s, 'quota says when to retry');
$err =~ /Retry after (\d+)/;
ok($1 > 0 && $1 <= 3600, "retry within the hour ($1 s)");
is(sqlstate($node, submit($key)), 'ok', 'other keys are not affected');

# the server-wide limit (stage throttling), off by default
$node->append_conf('postgresql.conf', "payment.rate_limit = 0.01\npayment.burst_limit = 2\n");
$node->reload;
is($node->safe_psql('postgres', qq{$try_fn
SELECT string_agg(pg_temp.try('$key'), ' ' ORDER BY i) FROM generate_series(1, 3) i;}),
	'ok ok 53400', 'server-wide burst of 2, then 53400');
($state, $out, $err) = sqlstate($node, submit($key));
like($err, qr/DETAIL:  The server-wide rate limit allows no more calls now/, 'server-wide limit named');
is(sqlstate($node, "SET payment.rate_limit = 0"), '55P02', 'the server-wide limit is not a session setting');
$node->append_conf('postgresql.conf', "payment.rate_limit = 0\n");
$node->reload;
is(sqlstate($node, submit($key)), 'ok', 'limit off again after reload');

# failed authentications do not take the server-wide calls (issue 18): 30
# made-up keys, then the full burst of valid calls still passes
my $garbage = 'pay_0123456789abcdef.' . ('G' x 43);
$node->append_conf('postgresql.conf', "payment.rate_limit = 5\npayment.burst_limit = 0\n");
$node->reload;
$node->poll_query_until('postgres', 'SHOW payment.rate_limit', '5') or die 'rate_limit not reloaded';
is($node->safe_psql('postgres', qq{$try_fn
SELECT pg_sleep(1.1);  -- the bucket, emptied above, fills at 5/s
SELECT string_agg(pg_temp.try('$garbage'), ' ' ORDER BY i) FROM generate_series(1, 30) i;
SELECT string_agg(pg_temp.try('$key'), ' ' ORDER BY i) FROM generate_series(1, 5) i;}),
	"\n" . join(' ', ('28P01') x 30) . "\nok ok ok ok ok",
	'30 made-up keys, then 5 valid calls under rate_limit = 5: all 5 pass');

# failed authentications are limited on their own
$node->append_conf('postgresql.conf',
	"payment.rate_limit = 0\npayment.auth_failure_rate_limit = 0.01\npayment.auth_failure_burst_limit = 3\n");
$node->reload;
$node->poll_query_until('postgres', 'SHOW payment.auth_failure_burst_limit', '3') or die 'not reloaded';
is($node->safe_psql('postgres', qq{$try_fn
SELECT string_agg(pg_temp.try('$garbage'), ' ' ORDER BY i) FROM generate_series(1, 5) i;
SELECT pg_temp.try('$key');
SELECT pg_temp.try(NULL);
SELECT pg_temp.try('$wrong');}),
	"28P01 28P01 28P01 53400 53400\nok\n53400\n53400",
	'failure burst of 3, then failures refused with 53400; the valid key passes');
($state, $out, $err) = sqlstate($node, submit('hunter2'));
like($err, qr/ERROR:  53400: too many failed authentications\nDETAIL:  The server-wide limit of failed authentications allows no more now\.\nHINT:  Retry after \d+\.\d+ seconds\./,
	'the refusal says why and when to retry');
is(sqlstate($node, submit($key)), 'ok', 'valid callers are not affected');
is(sqlstate($node, "SET payment.auth_failure_rate_limit = 0"), '55P02',
	'the failure limit is not a session setting');
$node->append_conf('postgresql.conf', "payment.auth_failure_rate_limit = 0\n");
$node->reload;
$node->poll_query_until('postgres', 'SHOW payment.auth_failure_rate_limit', '0') or die 'not reloaded';
is(sqlstate($node, submit($garbage)), '28P01', 'failure limit off: 28P01 again');

# audit lines, and no key material in the log
my $log = slurp_file($node->logfile);
like($log, qr/refused submit_payment by role "postgres", API key "partner"(, payment "[^"]*")?: wrong API key secret/, 'wrong secret audited');
like($log, qr/refused submit_payment by role "postgres", API key "leaver"(, payment "[^"]*")?: revoked API key/, 'revoked key audited');
like($log, qr/refused submit_payment by role "postgres", API key "tight"(, payment "[^"]*")?: API key rate limit exceeded/, 'throttling audited');
like($log, qr/refused submit_payment by role "postgres", API key "quota3"(, payment "[^"]*")?: API key quota exceeded/, 'quota audited');
like($log, qr/refused submit_payment by role "postgres"(, payment "[^"]*")?: no API key presented/, 'missing key audited');
like($log, qr/refused submit_payment by role "postgres"(, payment "[^"]*")?: unknown API key; server-wide failed-authentication rate limit exceeded/,
	'a failure refused by the failure limit audited');
like($log, qr/refused submit_payment by role "postgres"(, payment "[^"]*")?: no API key presented; server-wide failed-authentication rate limit exceeded/,
	'a missing key counts as a failure');
for my $k ($key, $wrong, $revoked, $tight, $shared, $quota)
{
	my $s = (split /\./, $k)[1];
	unlike($log, qr/\Q$s\E/, 'no key secret in the log');
}

# without shared memory there is no shared throttling: fail closed
$node->append_conf('postgresql.conf', "shared_preload_libraries = ''\n");
$node->restart;
($state, $out, $err) = sqlstate($node, submit($key));
is($state, '55000', 'api_key mode without shared_preload_libraries: 55000');
like($err, qr/HINT:  Add payment to shared_preload_libraries/, 'with a hint');
$node->append_conf('postgresql.conf', "payment.auth = 'role'\npayment.rate_limit = 1\n");
$node->reload;
is(sqlstate($node, submit(undef)), '55000', 'server-wide limit without shared_preload_libraries: 55000');

$node->stop;
done_testing();
