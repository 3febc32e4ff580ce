# JWT front door: Cognito access and ID tokens verified against a real JWKS
# served over loopback HTTP; every forged or invalid token refused with a
# class 28 SQLSTATE; users bound to their own payments (42501); key rotation
# without a restart; reasons in the server log, never tokens.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use AuthHelper;
use PostgreSQL::Test::Utils;
use HTTP::Tiny;
use JSON::PP ();
use Test::More;

my $jwks = start_jwks();
my $node = new_auth_node('auth_jwt', qq{
payment.auth = 'jwt'
payment.jwt_issuer = '$jwks->{issuer}'
payment.jwt_audience = '$jwks->{audience}'
payment.jwks_url = '$jwks->{jwks_url}'
payment.jwks_refetch_interval = '3s'
});

my $alice = '0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4';
my $bob = '7c1e2a10-93b4-4d6e-9f0a-1b2c3d4e5f60';
my %tok;
$tok{$_} = mint($jwks, $_, $alice) for qw(access id id_aud_array second_key
  expired expired_within_leeway not_yet_valid issued_in_future wrong_issuer
  wrong_audience id_wrong_audience access_with_aud_only bad_token_use no_exp
  no_sub unknown_kid kid_of_other_key alg_none hs256_public_key tampered rotated);
my $bob_token = mint($jwks, 'access', $bob);

sub submit
{
	my ($cred, $user, $payment) = @_;
	my $c = defined $cred ? "'$cred'" : 'NULL';
	return "SELECT submit_payment('" . payload($user // $alice, $payment) . "', $c)";
}

# valid tokens
is(sqlstate($node, submit($tok{access})), 'ok', 'valid access token accepted');
is(sqlstate($node, submit($tok{id})), 'ok', 'valid ID token accepted');
is(sqlstate($node, submit($tok{id_aud_array})), 'ok', 'ID token with aud as an array accepted');
is(sqlstate($node, submit($tok{second_key})), 'ok', 'token signed by the second published key accepted');
is(sqlstate($node, submit("Bearer $tok{access}")), 'ok', '"Bearer " prefix accepted');
is(sqlstate($node, submit("bearer $tok{access}")), 'ok', 'scheme name is case-insensitive');
is(sqlstate($node, submit($tok{expired_within_leeway})), 'ok', 'expired 10 s ago is within the 60 s leeway');
is(sqlstate($node, "SET payment.jwt_leeway = 0; " . submit($tok{expired_within_leeway})),
	'28000', 'same token refused with no leeway');

# every invalid or forged token: 28000, and the client is told nothing more
my %bad = (
	expired => 'expired',
	not_yet_valid => 'nbf in the future',
	issued_in_future => 'iat in the future',
	wrong_issuer => 'wrong issuer',
	wrong_audience => 'access token for another app client',
	id_wrong_audience => 'ID token for another app client',
	access_with_aud_only => 'access token without client_id',
	bad_token_use => 'token_use refresh',
	no_exp => 'no exp',
	no_sub => 'no sub',
	unknown_kid => 'unknown kid',
	kid_of_other_key => 'kid of one key, signed by another',
	alg_none => 'alg none',
	hs256_public_key => 'HS256 keyed with the RSA public key',
	tampered => 'payload edited after signing');
for my $case (sort keys %bad)
{
	my ($state, $out, $err) = sqlstate($node, submit($tok{$case}));
	is($state, '28000', "refused: $bad{$case}");
	if ($case eq 'expired')
	{
		like($err, qr/token expired/, 'an expired token is reported as such (the client can act)');
	}
	else
	{
		like($err, qr/ERROR:  28000: invalid token\s*(LOCATION:[^\n]*)?$/,
			"no detail about what failed: $case");
	}
}
is(sqlstate($node, submit('not.a-token')), '28000', 'garbage refused');
is(sqlstate($node, submit('')), '28000', 'empty credential refused');
is(sqlstate($node, submit(undef)), '28000', 'no credential and no request.headers refused');

# the token's user and the payment's user
is(sqlstate($node, submit($tok{access}, $bob)), '42501', "another user's userId: 42501");
my $bobs_payment = '5b0f3c1e-1111-4222-8333-444455556666';
is(sqlstate($node, submit($bob_token, $bob, $bobs_payment)), 'ok', 'bob submits his own payment');
my ($state, $out) = sqlstate($node, "SELECT payment_status('$bobs_payment', '$bob_token')->>'status'");
is($state, 'ok', 'bob sees his payment status');
is($out, 'queued', 'status of bob\'s payment is queued');
is(sqlstate($node, "SELECT payment_status('$bobs_payment', '$tok{access}')"), '42501',
	"alice cannot see bob's payment status");
is(sqlstate($node, "SELECT payment_status('$bobs_payment', '$tok{tampered}')"), '28000',
	'payment_status authenticates too');

is(sqlstate($node, "SELECT submit_payments('[" . payload($alice) . ", " . payload($bob) . "]', '$tok{access}')"),
	'42501', 'submit_payments: one payment of another user refuses the batch');

my $unused_port = free_port();
# the verified-token cache never outlives the token or a settings change
my $try = try_function($alice);
# minted just before use: its 3 s lifetime must not run out while earlier tests run
$tok{short_lived} = mint($jwks, 'short_lived', $alice);
is($node->safe_psql('postgres', qq{$try
SET payment.jwt_leeway = 0;
SELECT pg_temp.try('$tok{short_lived}');
SELECT pg_temp.try('$tok{short_lived}');
SELECT pg_sleep(3.5);
SELECT pg_temp.try('$tok{short_lived}');
SELECT pg_temp.try('$tok{access}');
SET payment.jwt_audience = 'another-app';
SELECT pg_temp.try('$tok{access}');
RESET payment.jwt_audience;
SELECT pg_temp.try('$tok{access}');
SET payment.jwks_url = 'http://127.0.0.1:$unused_port/jwks.json';
SELECT pg_temp.try('$tok{access}');}), "ok\nok\n\n28000\nok\n28000\nok\n58000",
	'a cached token expires with its exp; a changed audience or JWKS URL empties the cache');

# PostgREST: the credential from request.headers
is(sqlstate($node, qq{SET request.headers = '{"authorization": "Bearer $tok{access}"}'; } . submit(undef)),
	'ok', 'token read from request.headers');
is(sqlstate($node, qq{SET request.headers = '{"authorization": "Bearer $tok{access}"}'; } . submit(undef, $bob)),
	'42501', 'token from request.headers is bound to its user');
is(sqlstate($node, qq{SET request.headers = '{"authorization": "Bearer $tok{tampered}"}'; } . submit(undef)),
	'28000', 'forged token in request.headers refused');
is(sqlstate($node, qq{SET request.headers = 'not json'; } . submit(undef)),
	'28000', 'unparsable request.headers: no credential');

# settings: misconfiguration is the server's problem, not the client's
is(sqlstate($node, "SET payment.jwt_issuer = ''; " . submit($tok{access})), '55000',
	'no issuer configured: 55000');
is(sqlstate($node, "SET payment.jwks_url = 'http://example.com/jwks.json'"), '22023',
	'plain http JWKS URL off the loopback host refused');
is(sqlstate($node, "SET payment.jwks_url = 'http://127.0.0.1:80\@example.com/jwks.json'"), '22023',
	'a loopback-looking URL that names another host refused');
is(sqlstate($node, "SET payment.jwks_url = 'ftp://127.0.0.1/jwks.json'"), '22023', 'only http(s)');
my $closed = free_port();
is(sqlstate($node, "SET payment.jwks_url = 'http://127.0.0.1:$closed/jwks.json'; " . submit($tok{access})),
	'58000', 'unreachable JWKS: 58000');

# key rotation without restart, and the refetch rate limit, in one session
sub fetches { HTTP::Tiny->new->get("$jwks->{base}/stats")->{content} =~ /(\d+)/; $1 }
my $before = fetches();
my $session = $node->safe_psql('postgres', qq{
$try
SELECT pg_temp.try('$tok{access}');
SELECT pg_temp.try('$tok{rotated}');
SELECT pg_temp.try('$tok{rotated}');
\\! node -e "await fetch('$jwks->{base}/rotate', {method: 'POST'})" --input-type=module
SELECT pg_temp.try('$tok{rotated}');
SELECT pg_sleep(3.2);
SELECT pg_temp.try('$tok{rotated}');
SELECT pg_temp.try('$tok{rotated}');
SELECT pg_temp.try('$tok{second_key}');
});
is($session, join("\n", 'ok', '28000', '28000', '28000', '', 'ok', 'ok', 'ok'),
	'rotated key unknown until the rate-limited refetch, then accepted without restart');
is(fetches() - $before, 2, 'two JWKS fetches in that session: the first and one after the interval');
is(sqlstate($node, submit(mint($jwks, 'access', $alice))), '28000',
	'a fresh token signed by the withdrawn key is refused');
is(sqlstate($node, submit($tok{rotated})), 'ok', 'the new key works in new sessions');

# TLS is verified: a JWKS behind a self-signed certificate is not trusted
my $tls = PostgreSQL::Test::Utils::tempdir;
system_or_bail('openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
	'-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
	'-keyout', "$tls/key.pem", '-out', "$tls/cert.pem");
my $https = start_jwks($tls);
is(sqlstate($node, "SET payment.jwks_url = '$https->{jwks_url}'; " . submit($tok{access})),
	'58000', 'JWKS over https with an untrusted certificate: not fetched (58000)');
like(slurp_file($node->logfile), qr/could not fetch the JWKS from "https:[^"]*": SSL certificate problem: self.signed certificate/,
	'the log says why: certificate verification');
$https->{handle}->kill_kill;

# audit: reasons, roles and payment ids in the log, no token text
my $forged_payment = 'e0e0e0e0-1111-4222-8333-444455556666';
is(sqlstate($node, submit($tok{tampered}, $alice, $forged_payment)), '28000', 'forged token refused');
my $crafted = payload($alice);
$crafted =~ s/"paymentId": "[^"]*"/"paymentId": "x\\nFAKE LOG LINE"/;
is(sqlstate($node, "SELECT submit_payment('$crafted', '$tok{tampered}')"), '28000', 'forged token with a crafted paymentId refused');
my $log = slurp_file($node->logfile);
like($log, qr/refused submit_payment by role "postgres", payment "$forged_payment": /,
	'a refusal in authentication names the payment id');
like($log, qr/payment "x\?FAKE LOG LINE": /, 'client-supplied values cannot break the log line');
unlike($log, qr/^FAKE LOG LINE/m, 'no forged log line');
like($log, qr/payment: refused submit_payment by role "postgres"(, payment "[^"]*")?: bad token signature/,
	'audit line names role and reason');
like($log, qr/refused submit_payment by role "postgres"(, payment "[^"]*")?: token algorithm is not RS256/,
	'alg none / HS256 logged as a wrong algorithm');
like($log, qr/refused payment_status by role "postgres", user "$alice", payment "$bobs_payment": token user does not match/,
	'42501 refusal logged with user and payment id');
for my $case (sort keys %tok)
{
	my @parts = split /\./, $tok{$case};
	my $secret = $parts[2] // $parts[1];
	unlike($log, qr/\Q$secret\E/, "no token text of $case in the log") if length($secret // '') > 10;
}

# submittedBy is the token's user claim (issue 19), in the answer and, after
# the store, in payment.payments.submitted_by; a replay answers the first
# one.  The claim is taken as the token says it: Cognito's sub matches the
# userId case-insensitively, so a token with the sub in capitals is another
# valid token of alice whose own submissions say ALICE.  (After the
# rotation above: tokens signed by the new key, and by the second key.)
sub answer
{
	my ($sql, $what) = @_;
	my ($state, $out, $err) = sqlstate($node, $sql);
	is($state, 'ok', "jwt: $what is accepted") or diag($err);
	return $state eq 'ok' ? JSON::PP::decode_json($out) : {};
}
my $upper = mint($jwks, 'rotated', uc($alice));
my $traced = 'a1b2c3d4-1111-4222-8333-444455556666';
my $mine = payload($alice, $traced);
my $first = answer("SELECT submit_payment('$mine', '$tok{rotated}')", 'a first submission');
ok(!$first->{replayed}, 'jwt: a first acceptance');
is($first->{submittedBy}, $alice, "jwt: submittedBy is the token's sub claim");
my $upper_own = 'a1b2c3d4-2222-4222-8333-444455556666';
my $other = answer("SELECT submit_payment('" . payload($alice, $upper_own) . "', '$upper')", 'a submission under the capitalised-sub token');
is($other->{submittedBy}, uc($alice), 'jwt: submittedBy is the claim as the token spells it');
for my $replay_token ([ 'the capitalised-sub token', $upper ], [ 'a token signed by the other key', $tok{second_key} ])
{
	my $r = answer("SELECT submit_payment('$mine', '$replay_token->[1]')", "a retry under $replay_token->[0]");
	ok($r->{replayed} && $r->{messageId} eq $first->{messageId},
		"jwt: a retry under $replay_token->[0] is a replay of the first");
	is($r->{submittedBy}, $alice, "jwt: and answers the first submittedBy");
}
# the store: a worker (restart_only setting)
$node->append_conf('postgresql.conf', "payment.workers = 1\n");
$node->restart;
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM payment.payments WHERE payment_id IN ('$traced', '$upper_own')"),
	'jwt: both payments stored');
is($node->safe_psql('postgres',
		"SELECT string_agg(submitted_by || ' ' || request_id, ',' ORDER BY payment_id)"
		  . " FROM payment.payments WHERE payment_id IN ('$traced', '$upper_own')"),
	"$alice $first->{requestId}," . uc($alice) . " $other->{requestId}",
	"jwt: payment.payments.submitted_by is each answer's submittedBy, with its request id");
my $after = answer("SELECT submit_payment('$mine', '$upper')", 'a retry after the store');
ok($after->{replayed} && $after->{submittedBy} eq $alice && $after->{requestId} eq $first->{requestId},
	'jwt: a replay of the stored payment under another token answers the first submittedBy and request id')
  or diag(JSON::PP::encode_json($after));

$node->stop;
$jwks->{handle}->kill_kill;
done_testing();
