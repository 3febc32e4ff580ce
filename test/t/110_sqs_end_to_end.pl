# The SQS backend end to end, against the fauxqs emulator behind a proxy
# that verifies every request's SigV4 signature independently:
# submit_payment / submit_payments return SQS MessageIds, workers drain an
# SDK-produced backlog (valid, non-JSON, schema-invalid, duplicate and
# conflicting bodies) into payment.payments / payment.dead_letters, AWS
# errors become SQLSTATEs, slow endpoints time out, query cancel works,
# settings are superuser-only and secrets never reach the server log.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use SqsPeers;

my $key = SqsPeers::new_key_id();
my $secret = 'sqs-secret-' . SqsPeers::random_word(32);
my $token = 'sqs-token-' . SqsPeers::random_word(48);
my $peers = SqsPeers->new(keys => SqsPeers::producer_and($key, secret => $secret, token => $token));
my $queue_url = $peers->create_queue('payments', 30);

my $node = $peers->start_node('sqs_e2e', $key,
	'payment.workers' => 2,
	'payment.wait_time' => 1,
	'payment.visibility_timeout' => 10,
	'payment.http_timeout' => "'5s'",
	'log_statement' => "'all'",
	'log_min_messages' => 'debug1');

my $uuid_re = qr/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

sub uuid { return $node->safe_psql('postgres', 'SELECT gen_random_uuid()'); }

sub payment_json
{
	my (%over) = @_;
	return encode_json({
		paymentId => uuid(), userId => uuid(), amount => 12.5, currency => 'GBP',
		description => 'Regular payment made to Netflix from HSBC account',
		dateTimestamp => '1709553600', %over });
}

sub lit { my $s = shift; $s =~ s/'/''/g; return "'$s'"; }

sub count_sql { return $node->safe_psql('postgres', shift); }

sub wait_for_sql
{
	my ($sql, $expected, $timeout) = @_;
	return SqsPeers::wait_until(sub { count_sql($sql) eq $expected }, $timeout // 60);
}

# psql with VERBOSITY verbose: (ok, stderr); SQLSTATE is in stderr
sub try_sql
{
	my ($sql) = @_;
	my ($stdout, $stderr);
	my $rc = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql",
		stdout => \$stdout, stderr => \$stderr);
	return ($rc == 0, $stderr // '', $stdout);
}

### submit_payment returns the SQS MessageId
my $p1 = payment_json();
my $r1 = decode_json(count_sql('SELECT submit_payment(' . lit($p1) . ')'));
like($r1->{messageId}, $uuid_re, 'submit_payment returns a MessageId');
my $pid1 = decode_json($p1)->{paymentId};
ok(wait_for_sql("SELECT message_id FROM payment.payments WHERE payment_id = '$pid1'",
		$r1->{messageId}),
	'the worker stored the payment under the MessageId SQS gave submit_payment');

### submit_payments: SendMessageBatch, 10 per request
my @batch = map { payment_json() } 1 .. 25;
my $rb = decode_json(count_sql('SELECT submit_payments(' . lit('[' . join(',', @batch) . ']') . ')'));
is($rb->{count}, 25, 'submit_payments accepted 25 payments');
my %ids = map { $_ => 1 } @{ $rb->{messageIds} };
is(scalar(keys %ids), 25, '25 distinct MessageIds');
my $batch_pids = join(',', map { "'" . decode_json($_)->{paymentId} . "'" } @batch);
ok(wait_for_sql("SELECT count(*) FROM payment.payments WHERE payment_id IN ($batch_pids)", '25'),
	'all 25 stored');
my @stored_ids = split /\n/,
  count_sql("SELECT message_id FROM payment.payments WHERE payment_id IN ($batch_pids)");
is_deeply([ sort @stored_ids ], [ sort keys %ids ], 'stored under the MessageIds returned');
is($peers->stats->{byOperation}{SendMessageBatch}, 3, '25 payments took 3 SendMessageBatch requests');

### a backlog produced by the official SDK
my $sent = $peers->producer('send', 'queue-url' => $queue_url, valid => 300,
	'not-json' => 20, invalid => 20, duplicates => 30, conflicts => 10);
is($sent->{sent}, 380, 'SDK producer sent 380 messages');
my $valid_pids = join(',', map { "'$_'" } @{ $sent->{valid} });
ok(wait_for_sql("SELECT count(*) FROM payment.payments WHERE payment_id IN ($valid_pids)", '300', 90),
	'every valid SDK payment is stored');
ok(wait_for_sql('SELECT count(*) FROM payment.dead_letters', '50', 60),
	'50 messages dead-lettered (20 non-JSON, 20 schema-invalid, 10 conflicts)');
is(count_sql("SELECT count(*) FROM payment.payments WHERE payment_id IN ($valid_pids)"
	  . " GROUP BY payment_id HAVING count(*) > 1"), '', 'no payment stored twice');
is(count_sql("SELECT count(*) FROM payment.dead_letters WHERE reason = 'invalid' AND payment_id IS NULL"),
	'20', 'non-JSON bodies dead-lettered as invalid');
my $invalid_pids = join(',', map { "'$_'" } @{ $sent->{invalid} });
is(count_sql("SELECT count(*) FROM payment.dead_letters WHERE reason = 'invalid' AND payment_id IN ($invalid_pids)"),
	'20', 'schema-invalid bodies dead-lettered as invalid');
my $conflict_pids = join(',', map { "'$_'" } @{ $sent->{conflicts} });
is(count_sql("SELECT count(*) FROM payment.dead_letters WHERE reason = 'conflict' AND payment_id IN ($conflict_pids)"),
	'10', 'one of each conflicting pair dead-lettered as conflict');
my $dup_pids = join(',', map { "'$_'" } @{ $sent->{duplicates} });
is(count_sql("SELECT count(*) FROM payment.dead_letters WHERE payment_id IN ($dup_pids)"),
	'0', 'exact duplicates are not dead letters');
cmp_ok(count_sql('SELECT duplicates FROM payment.stats'), '>=', 30, 'duplicates counted');
# the submit-to-stored latency from SQS's SentTimestamp: seconds here, not
# the decades a missing or misread timestamp would make
my ($samples, $p99) = split /\|/, $node->safe_psql('postgres',
	'SELECT stored_last_minute, extract(epoch FROM latency_p99) FROM payment.stats');
cmp_ok($samples, '>', 0, "SQS payments are the last minute's latency samples ($samples)");
ok($p99 > 0 && $p99 < 120, "their latency p99 is from SentTimestamp ($p99 s)");
ok($peers->wait_queue_empty(30),
	'the queue is empty afterwards (GetQueueAttributes)');

### transient store failures of one message (a serialization failure; a lock
### timeout is a fault of the database, see 540_degraded.pl):
### ChangeMessageVisibilityBatch, then stored or dead-lettered after
### payment.max_receive_count (3) receives
$node->safe_psql('postgres', q{
	CREATE SEQUENCE flaky_seq;
	-- the workers run it with their pinned search_path and their role
	CREATE FUNCTION flaky() RETURNS trigger LANGUAGE plpgsql
	SECURITY DEFINER SET search_path = public, pg_catalog AS $$
	BEGIN
		IF NEW.description = 'flaky twice' AND nextval('flaky_seq') <= 2
		   OR NEW.description = 'always flaky' THEN
			RAISE EXCEPTION 'injected transient failure' USING ERRCODE = '40001';
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER flaky BEFORE INSERT ON payment.payments
		FOR EACH ROW EXECUTE FUNCTION flaky();
});
my $twice = payment_json(description => 'flaky twice');
my $always = payment_json(description => 'always flaky');
my $cmv_before = $peers->stats->{byOperation}{ChangeMessageVisibilityBatch} // 0;
count_sql("SELECT submit_payment(" . lit($twice) . "), submit_payment(" . lit($always) . ")");
my ($twice_pid, $always_pid) = map { decode_json($_)->{paymentId} } ($twice, $always);
ok(wait_for_sql("SELECT count(*) FROM payment.payments WHERE payment_id = '$twice_pid'", '1', 30),
	'a payment that failed transiently twice is stored on its third delivery');
ok(wait_for_sql("SELECT reason || ':' || receive_count FROM payment.dead_letters WHERE payment_id = '$always_pid'",
		'max_receives:3', 30),
	'a payment that always fails transiently is dead-lettered after 3 receives');
cmp_ok(($peers->stats->{byOperation}{ChangeMessageVisibilityBatch} // 0) - $cmv_before, '>=', 2,
	'retries were scheduled with ChangeMessageVisibilityBatch');
ok($peers->wait_queue_empty(30),
	'both are gone from the queue afterwards');
$node->safe_psql('postgres', 'DROP TRIGGER flaky ON payment.payments');

### every request of the extension passed the independent SigV4 check
my $stats = $peers->stats;
is($stats->{rejected}, 0, 'no request was rejected by the SigV4 verifier');
cmp_ok($stats->{byKey}{$key}{accepted}, '>', 50, "the extension's signed requests were verified");
ok($stats->{byOperation}{$_}, "$_ requests seen") for qw(SendMessage ReceiveMessage DeleteMessageBatch);
# the verifier does reject a bad signature (negative control)
my $bad = $peers->producer('badsig', 'queue-url' => $queue_url);
is($bad->{status}, 403, 'a request signed with a wrong secret gets 403');
is($peers->stats->{rejected}, 1, 'and is counted as rejected');

# connections are kept alive and reused
cmp_ok($stats->{connections} * 10, '<', $stats->{accepted},
	"requests reuse connections ($stats->{accepted} requests on $stats->{connections} connections)");

### AWS errors become SQLSTATEs, with the AWS error in the detail
my $submit = 'SELECT submit_payment(' . lit(payment_json()) . ')';
for my $case (
	[ 403, 'AccessDeniedException', '42501' ],
	[ 400, 'InvalidClientTokenId', '28000' ],
	[ 400, 'ExpiredToken', '28000' ],
	[ 400, 'ThrottlingException', '53000' ],
	[ 503, 'ServiceUnavailable', '08006' ],
	[ 500, 'InternalError', '58000' ],
	[ 400, 'QueueDoesNotExist', '42704' ])
{
	my ($status, $code, $sqlstate) = @$case;
	$peers->control("/__fail?status=$status&code=$code&count=1&op=SendMessage");
	my ($ok, $err) = try_sql($submit);
	ok(!$ok && $err =~ /ERROR:  $sqlstate: SQS SendMessage failed with HTTP status $status/
		  && $err =~ /DETAIL:  AWS error $code/,
		"AWS $code ($status) raises SQLSTATE $sqlstate")
	  or diag($err);
}

# a body SQS refuses in a batch: the error names the entry
my ($ok, $err) = try_sql('SELECT submit_payments('
	  . lit('[' . payment_json() . ',' . payment_json(description => "bad \x{FFFF} char") . ']') . ')');
ok(!$ok && $err =~ /ERROR:  22021: SQS rejected 1 of the payments 0 to 1/
	  && $err =~ /entry 1: InvalidMessageContents/,
	'a Failed SendMessageBatch entry raises an error naming it')
  or diag($err);

### a slow endpoint fails within payment.http_timeout
$peers->control('/__slow?ms=6000&op=SendMessage&before=1');
my $t0 = time();
($ok, $err) = try_sql("SET payment.http_timeout = '1s'; $submit");
my $elapsed = time() - $t0;
ok(!$ok && $err =~ /ERROR:  08006: SQS request to ".*" timed out/, 'slow endpoint: timeout error')
  or diag($err);
ok($elapsed >= 0.9 && $elapsed < 3, sprintf('failed after %.1f s (http_timeout 1 s)', $elapsed));

### query cancel and terminate work during the call
for my $how ('pg_cancel_backend', 'pg_terminate_backend')
{
	my ($out, $perr) = ('', '');
	my $sends = $peers->stats->{byOperation}{SendMessage} // 0;
	my $h = IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c',
		  "SET application_name = 'slow_submit'; $submit" ],
		'>', \$out, '2>', \$perr);
	ok(SqsPeers::wait_until(sub {
				count_sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'slow_submit' AND state = 'active'") eq '1';
			}, 10),
		"$how: the submit is waiting on the slow endpoint");
	# its SendMessage has reached the proxy, which holds it: the backend is
	# in the HTTP call
	SqsPeers::wait_until(sub { ($peers->stats->{byOperation}{SendMessage} // 0) > $sends }, 10)
	  or die 'the SendMessage did not reach the proxy';
	my $t1 = time();
	count_sql("SELECT $how(pid) FROM pg_stat_activity WHERE application_name = 'slow_submit'");
	$h->finish;
	my $took = time() - $t1;
	my $expect = $how eq 'pg_cancel_backend'
	  ? qr/canceling statement due to user request/
	  : qr/terminating connection due to administrator command/;
	like($perr, $expect, "$how interrupts the SQS call");
	ok($took < 2.5, sprintf("$how took effect in %.1f s", $took));
}
$peers->control('/__slow?ms=0');

### TLS certificates are verified: an untrusted endpoint is refused
my $tls = $peers->tls_endpoint;
$node->safe_psql('postgres', "ALTER SYSTEM SET payment.sqs_endpoint = '$tls'");
$node->reload;
($ok, $err) = try_sql($submit);
ok(!$ok && $err =~ /ERROR:  08001: TLS handshake with SQS endpoint "\Q$tls\E" failed/,
	'an endpoint with an untrusted certificate is refused (08001)')
  or diag($err);
cmp_ok($peers->stats->{tls_connections}, '>=', 1, 'a TLS connection was attempted');
is($peers->stats->{tls_handshakes}, 0, 'and the client did not complete the handshake');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET payment.sqs_endpoint');
$node->reload;
ok(SqsPeers::wait_until(sub { (try_sql($submit))[0] }, 10), 'back on the plain endpoint, submits work');

### settings are superuser-only; secrets are not shown
$node->safe_psql('postgres', 'CREATE ROLE clerk LOGIN');
for my $name (qw(payment.aws_secret_access_key payment.aws_session_token payment.aws_access_key_id
	payment.queue_url payment.sqs_endpoint payment.aws_region))
{
	my ($ok2, $err2) = try_sql("SET ROLE clerk; SHOW $name");
	ok(!$ok2 && $err2 =~ /42501/, "a non-superuser cannot show $name");
}
($ok, $err) = try_sql("SET ROLE clerk; SET payment.sqs_endpoint = 'http://127.0.0.1:1'");
ok(!$ok && $err =~ /55P02/, 'nobody can SET payment.sqs_endpoint in a session') or diag($err);
($ok, $err) = try_sql("SET ROLE clerk; SET payment.http_timeout = '1h'");
ok(!$ok && $err =~ /42501/, 'a non-superuser cannot SET payment.http_timeout') or diag($err);
is(count_sql("SET ROLE clerk; SELECT count(*) FROM pg_settings WHERE name LIKE 'payment.aws%' OR name IN ('payment.queue_url', 'payment.sqs_endpoint')"),
	'0', 'pg_settings hides the SQS settings from a non-superuser');
unlike(count_sql('SHOW ALL'), qr/\Q$secret\E|\Q$token\E/, 'SHOW ALL does not show the secrets, even to a superuser');
($ok, $err) = try_sql("ALTER SYSTEM SET payment.sqs_endpoint = 'ftp://127.0.0.1/'");
ok(!$ok && $err =~ /22023/, 'an endpoint that is not http(s) is refused') or diag($err);

### the server log never contains a secret
$node->stop;
my $log = slurp_file($node->logfile);
unlike($log, qr/\Q$secret\E/, 'the secret access key is not in the server log');
unlike($log, qr/\Q$token\E/, 'the session token is not in the server log');
like($log, qr/SQS SendMessage failed/, '(the log does contain the SQS errors)');

done_testing();
