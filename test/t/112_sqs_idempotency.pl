# The idempotent front door on Amazon SQS (fauxqs behind the SigV4 proxy),
# on a standard queue and on a FIFO queue: a retry of a queued or stored
# payment is answered with the first answer and sends nothing (the proxy
# counts SendMessage requests: on a FIFO queue SQS's own deduplication would
# hide a second send), another body is refused with 23505, the request id
# and the caller travel as message attributes into payment.payments, a FIFO
# message is grouped by userId and deduplicated by a hash of the key and its
# number of dead letters (so that a fresh attempt after a dead letter is
# delivered), and a message from an outside producer keeps the request id it
# carries.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use Digest::SHA qw(sha256_hex);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use PaymentNode qw(reload_with);
use SqsPeers;

my $key = SqsPeers::new_key_id();
my $peers = SqsPeers->new(keys => SqsPeers::producer_and($key));
my $fifo_url = $peers->producer('create', queue => 'idem.fifo', visibility => 30,
	fifo => 'true')->{queueUrl};
like($fifo_url, qr/\.fifo$/, 'fauxqs created a FIFO queue');
my $std_url = $peers->create_queue('idem', 30);

my $node = $peers->start_node('sqs_idem', $key,
	'payment.workers' => 1,
	'payment.wait_time' => 1,
	'payment.visibility_timeout' => 10);

my $me = $node->safe_psql('postgres', 'SELECT current_user');

sub uuid { return $node->safe_psql('postgres', 'SELECT gen_random_uuid()'); }
sub lit { my $s = shift; $s =~ s/'/''/g; return "'$s'"; }
sub sql { return $node->safe_psql('postgres', shift); }

sub wait_for_sql
{
	my ($q, $expected, $timeout) = @_;
	return SqsPeers::wait_until(sub { sql($q) eq $expected }, $timeout // 60);
}

# psql with VERBOSITY verbose: (ok, stdout, stderr)
sub try_sql
{
	my ($q) = @_;
	my ($stdout, $stderr);
	my $rc = $node->psql('postgres', "\\set VERBOSITY verbose\n$q",
		stdout => \$stdout, stderr => \$stderr);
	return ($rc == 0, $stdout // '', $stderr // '');
}

# submit_payment($body) under x-request-id $rid: (ok, decoded answer or stderr)
sub submit
{
	my ($body, $rid) = @_;
	my ($ok, $out, $err) = try_sql(
		"SET request.headers = " . lit(encode_json({ 'x-request-id' => $rid })) . ";\n"
		  . 'SELECT submit_payment(' . lit($body) . ')');
	return ($ok, $ok ? decode_json($out) : $err);
}

sub sends { return $peers->stats->{byOperation}{SendMessage} // 0; }

sub counts { return $peers->producer('count', 'queue-url' => shift); }

sub queue_empty
{
	my $url = shift;
	return SqsPeers::wait_until(sub { my $c = counts($url); $c->{visible} + $c->{in_flight} == 0 }, 30);
}

sub use_queue
{
	my ($url, $paused) = @_;
	reload_with($node, 'payment.queue_url' => "'$url'", 'payment.paused' => $paused ? 'on' : 'off');
	# a worker takes the SIGHUP after the receive it is in
	sleep 2;
}

for my $case ([ 'standard', $std_url ], [ 'fifo', $fifo_url ])
{
	my ($kind, $url) = @$case;
	use_queue($url, 1);

	my ($pid, $uid) = (uuid(), uuid());
	my $body = qq({"paymentId": "$pid", "userId": "$uid", "amount": 12.5, "currency": "GBP",
 "description": "idempotency on $kind", "dateTimestamp": "1709553600"});
	# JSON-equal: other key order, 12.50 for 12.5
	my $same = qq({"dateTimestamp": "1709553600", "description": "idempotency on $kind",
 "currency": "GBP", "amount": 12.50, "userId": "$uid", "paymentId": "$pid"});
	my $other = $body =~ s/12\.5/13.5/r;

	### the first acceptance
	my $sends0 = sends();
	my ($ok, $first) = submit($body, "req-$kind-1");
	ok($ok, "$kind: submitted") or diag($first);
	ok(!$first->{replayed}, "$kind: the first answer is not a replay");
	is($first->{requestId}, "req-$kind-1", "$kind: the request id is the x-request-id header");
	is($first->{submittedBy}, $me, "$kind: submittedBy is the calling role");
	is(sends(), $sends0 + 1, "$kind: one SendMessage");
	my $dup0 = sql('SELECT duplicates FROM payment.stats');

	### a replay while it is queued: the first answer, nothing sent
	my ($ok2, $replay) = submit($same, "req-$kind-2");
	ok($ok2, "$kind: the retry is accepted") or diag($replay);
	ok($replay->{replayed}, "$kind: a JSON-equal retry of a queued payment is a replay");
	is($replay->{messageId}, $first->{messageId}, "$kind: with the first messageId");
	is($replay->{requestId}, "req-$kind-1", "$kind: and the first request id");
	is(sends(), $sends0 + 1, "$kind: the replay sent nothing");
	is(counts($url)->{visible}, 1, "$kind: one message in the queue (ApproximateNumberOfMessages)");
	is(sql("SELECT payment_status('$pid') ->> 'status'"), 'queued', "$kind: payment_status says queued");

	### another body for the key: 23505 at once
	my ($ok3, $err) = submit($other, "req-$kind-3");
	ok(!$ok3 && $err =~ /ERROR:  23505: payment \Q$pid\E of user \Q$uid\E was already accepted with a different body/
		  && $err =~ /DETAIL:  It was accepted as message \Q$first->{messageId}\E at /,
		"$kind: a different body for a queued payment raises 23505 naming the first message")
	  or diag($err);
	is(sends(), $sends0 + 1, "$kind: the conflict sent nothing");

	### what travels with the message
	my $peek = $peers->producer('peek', 'queue-url' => $url)->{messages};
	is(scalar(@$peek), 1, "$kind: peeked one message");
	is($peek->[0]{messageId}, $first->{messageId}, "$kind: the message is the first one");
	is($peek->[0]{attributes}{PaymentRequestId}, "req-$kind-1", "$kind: PaymentRequestId attribute");
	is($peek->[0]{attributes}{PaymentSubmittedBy}, $me, "$kind: PaymentSubmittedBy attribute");
	if ($kind eq 'fifo')
	{
		is($peek->[0]{groupId}, $uid, 'fifo: MessageGroupId is the userId');
		is($peek->[0]{dedupId}, sha256_hex("$pid/$uid/0"),
			'fifo: MessageDeduplicationId is sha256 of paymentId/userId/0 (no dead letter yet)');
	}

	### stored from the message, with its request id and caller
	use_queue($url, 0);
	ok(wait_for_sql("SELECT message_id || ' ' || request_id || ' ' || submitted_by FROM payment.payments"
			  . " WHERE payment_id = '$pid'", "$first->{messageId} req-$kind-1 $me"),
		"$kind: stored under the first messageId with the request id and caller");
	is(sql("SELECT count(*) FROM payment.idempotency_keys WHERE payment_id = '$pid'"), '0',
		"$kind: the store removed the key record");
	ok(queue_empty($url), "$kind: the queue is empty");
	is(sql('SELECT duplicates FROM payment.stats'), $dup0, "$kind: no duplicate reached the store");

	### a replay after the store
	my ($ok4, $after) = submit($same, "req-$kind-4");
	ok($ok4 && $after->{replayed}, "$kind: a retry of a stored payment is a replay") or diag($after);
	is($after->{messageId}, $first->{messageId}, "$kind: with the first messageId");
	is($after->{requestId}, "req-$kind-1", "$kind: and the first request id");
	my ($ok5, $err5) = submit($other, "req-$kind-5");
	ok(!$ok5 && $err5 =~ /ERROR:  23505: .*already accepted with a different body/
		  && $err5 =~ /\Q$first->{messageId}\E/,
		"$kind: a different body for a stored payment raises 23505") or diag($err5);
	is(sends(), $sends0 + 1, "$kind: neither sent anything");
	is(sql("SELECT count(*) FROM payment.payments WHERE payment_id = '$pid'"), '1', "$kind: stored once");

	### a message from an outside producer carries its own request id
	my ($xpid, $xuid) = (uuid(), uuid());
	my $xbody = qq({"paymentId": "$xpid", "userId": "$xuid", "amount": 3, "currency": "EUR",
 "description": "outside producer on $kind", "dateTimestamp": "1709553600"});
	my $sent = $peers->producer('send-one', 'queue-url' => $url, body => $xbody,
		'request-id' => "ext-$kind-1",
		$kind eq 'fifo' ? (group => $xuid, dedup => "outside-$xpid") : ());
	ok(wait_for_sql("SELECT message_id || ' ' || request_id || ' ' || coalesce(submitted_by, '(null)')"
			  . " FROM payment.payments WHERE payment_id = '$xpid'", "$sent->{messageId} ext-$kind-1 (null)"),
		"$kind: an SDK message's PaymentRequestId is stored as request_id, no caller");
	is(sql("SELECT count(*) FROM payment.idempotency_keys WHERE payment_id = '$xpid'"), '0',
		"$kind: no key record for it");
	my ($ok6, $xr) = submit($xbody, "req-$kind-6");
	ok($ok6 && $xr->{replayed} && $xr->{messageId} eq $sent->{messageId} && $xr->{requestId} eq "ext-$kind-1",
		"$kind: submitting the SDK's payment again is a replay of the stored one")
	  or diag(explain $xr);
}

### FIFO: a dead-lettered payment's key is a fresh attempt, with a new
### MessageDeduplicationId (SQS would otherwise drop it for 5 minutes as a
### duplicate of the first)
use_queue($fifo_url, 0);
sql(q{
	CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql
	SECURITY DEFINER SET search_path = public, pg_catalog AS $$
	BEGIN
		IF NEW.description = 'refused once' THEN
			RAISE EXCEPTION 'injected permanent failure' USING ERRCODE = '22023';
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER refuse BEFORE INSERT ON payment.payments
		FOR EACH ROW EXECUTE FUNCTION refuse();
});
my ($dpid, $duid) = (uuid(), uuid());
my $dbody = qq({"paymentId": "$dpid", "userId": "$duid", "amount": 1, "currency": "GBP",
 "description": "refused once", "dateTimestamp": "1709553600"});
my $sends0 = sends();
my ($ok, $d1) = submit($dbody, 'req-dead-1');
ok($ok && !$d1->{replayed}, 'fifo: a payment the store will refuse is accepted') or diag($d1);
ok(wait_for_sql("SELECT reason || ' ' || message_id || ' ' || request_id FROM payment.dead_letters"
		  . " WHERE payment_id = '$dpid'", "invalid $d1->{messageId} req-dead-1"),
	'fifo: it is dead-lettered, with its request id');
is(sql("SELECT count(*) FROM payment.idempotency_keys WHERE payment_id = '$dpid'"), '0',
	'fifo: the dead letter removed the key record');
sql('DROP TRIGGER refuse ON payment.payments');

my ($ok2, $d2) = submit($dbody, 'req-dead-2');
ok($ok2 && !$d2->{replayed}, 'fifo: the same key submitted again after its dead letter is a fresh attempt')
  or diag($d2);
is(sends(), $sends0 + 2, 'fifo: sent again');
isnt($d2->{messageId}, $d1->{messageId},
	'fifo: SQS did not deduplicate it (a new MessageId within the 5-minute window)');
ok(wait_for_sql("SELECT message_id || ' ' || request_id FROM payment.payments WHERE payment_id = '$dpid'",
		"$d2->{messageId} req-dead-2"),
	'fifo: the second attempt is delivered and stored');
is(sql("SELECT count(*) FROM payment.dead_letters WHERE payment_id = '$dpid'"), '1',
	'fifo: the dead letter stays for the record');
ok(queue_empty($fifo_url), 'fifo: the queue is empty');

is($peers->stats->{rejected}, 0, 'no request was rejected by the SigV4 verifier');

$node->stop;
done_testing();
