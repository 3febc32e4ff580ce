# Two servers on one SQS queue (fauxqs behind the SigV4 proxy): two
# clusters, each with the extension and its own payment.payments, drain the
# same queue.  Half the payments are submitted through server A's
# submit_payment, half are sent by the SDK producer, with exact duplicates
# (the same body as two SQS messages).  What holds: every SQS message is
# stored by exactly one server; every payment sent once is stored exactly
# once across both; both servers did part of the work; a payment submitted
# through A and stored by B carries A's request id and caller.  What does
# not: an exact duplicate sent as two messages is stored by each server
# that receives a copy (shown deterministically below), and the key record
# A took at submit_payment stays in A when B stores the payment (A's
# payment_status then says queued).  docs/sqs.md "Several servers on one
# queue" documents both.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use PaymentNode qw(reload_with payment_sql);
use SqsPeers;

my $from_a = 1000;		# through A's submit_payment, 10 statements of 100
my $from_sdk = 1000;	# by the SDK producer
my $dups = 100;			# of the SDK's payments, sent a second time

my $key = SqsPeers::new_key_id();
my $peers = SqsPeers->new(keys => SqsPeers::producer_and($key));
my $queue_url = $peers->create_queue('shared', 30);

my %settings = (
	'payment.workers' => 2,
	'payment.wait_time' => 1,
	'payment.visibility_timeout' => 10,
	'payment.paused' => 'on');
my $a = $peers->start_node('sqs_a', $key, %settings);
my $b = $peers->start_node('sqs_b', $key, %settings);
my %node = (A => $a, B => $b);

sub lit { my $s = shift; $s =~ s/'/''/g; return "'$s'"; }

sub wait_for
{
	my ($node, $q, $expected, $timeout) = @_;
	return SqsPeers::wait_until(sub { $node->safe_psql('postgres', $q) eq $expected }, $timeout // 60);
}

# the stored payments of a node: "payment_id user_id" => [message_id, request_id, submitted_by]
sub stored
{
	my ($node) = @_;
	my %rows;
	for (split /\n/, $node->safe_psql('postgres',
			q{SELECT payment_id || ' ' || user_id, message_id, coalesce(request_id, '(null)'),
			         coalesce(submitted_by, '(null)') FROM payment.payments}))
	{
		my ($k, @rest) = split /\|/;
		$rows{$k} = \@rest;
	}
	return \%rows;
}

my $me = $a->safe_psql('postgres', 'SELECT current_user');

### the backlog, both servers paused
my $doc = payment_sql('twoserv', 'two servers');
for my $part (1 .. 10)
{
	my $lo = ($part - 1) * $from_a / 10 + 1;
	my $hi = $part * $from_a / 10;
	is($a->safe_psql('postgres',
			"SET request.headers = '{\"x-request-id\": \"twoserv-a-$part\"}';"
			  . " SELECT count(*) FILTER (WHERE (submit_payment(d) ->> 'message') = 'OK')"
			  . " FROM generate_series($lo, $hi) AS i, LATERAL (SELECT $doc AS d) k"),
		$hi - $lo + 1, "A's submit_payment accepted payments $lo to $hi");
}
my $sent = $peers->producer('send', 'queue-url' => $queue_url, valid => $from_sdk,
	duplicates => $dups);
is($sent->{sent}, $from_sdk + $dups, "the SDK sent $from_sdk payments and $dups exact duplicates");
my $c = $peers->queue_counts;
is($c->{visible}, $from_a + $from_sdk + $dups, 'all of them wait in the one queue');

### both servers drain it
reload_with($_, 'payment.paused' => 'off') for ($a, $b);
my $n = $from_a + $from_sdk;
ok(SqsPeers::wait_until(sub {
			my %u = (%{ stored($a) }, %{ stored($b) });
			scalar(keys %u) == $n && $peers->queue_empty;
		}, 60),
	"$n distinct payments stored across the two servers and the queue is empty");
# the last deletes are sent after the commits: let every duplicate be counted
ok(SqsPeers::wait_until(sub {
			my $d = 0;
			$d += $_->safe_psql('postgres', 'SELECT duplicates FROM payment.stats') for ($a, $b);
			my ($sa, $sb) = (stored($a), stored($b));
			my $both = grep { $sb->{$_} } keys %$sa;
			$d + $both == $dups;
		}, 20),
	'every duplicate message is either counted as a duplicate by its server or stored by the other');

my ($sa, $sb) = (stored($a), stored($b));
my %union = (%$sa, %$sb);
is(scalar(keys %union), $n, "the union of both payment.payments has $n distinct payments");
cmp_ok(scalar(keys %$sa), '>', $n / 10, 'A stored a share of them (' . scalar(keys %$sa) . ')');
cmp_ok(scalar(keys %$sb), '>', $n / 10, 'B stored a share of them (' . scalar(keys %$sb) . ')');

# each SQS message is stored by exactly one server
my %by_message;
push @{ $by_message{ $_->[0] } }, 'A' for values %$sa;
push @{ $by_message{ $_->[0] } }, 'B' for values %$sb;
is(scalar(grep { @{ $by_message{$_} } > 1 } keys %by_message), 0,
	'no SQS message is stored by both servers');
my @sdk_ids = map { @{ $sent->{message_ids}{$_} } } qw(valid duplicates);
my %stored_ids = map { $_ => 1 } keys %by_message;
# an exact duplicate delivered to the same server is stored under one of its two MessageIds
my $missing = grep { !$stored_ids{$_} } @sdk_ids;
my ($sa_keys, $sb_keys) = ([ keys %$sa ], [ keys %$sb ]);
my @in_both = grep { $sb->{$_} } @$sa_keys;
is($missing, $dups - @in_both,
	'every SDK message is stored under its MessageId, but for one of each duplicate pair that met one server');

# which keys are in both: only payments the SDK sent twice
my %dup_pids = map { $_ => 1 } @{ $sent->{duplicates} };
is(scalar(grep { !$dup_pids{ (split / /)[0] } } @in_both), 0,
	'only payments sent twice as two SQS messages are stored by both servers');
diag(scalar(@in_both) . " of $dups duplicate pairs were split across the servers and stored by both");

# the payments submitted through A: each stored exactly once, with A's request id and caller
my @a_keys = split /\n/, $a->safe_psql('postgres',
	"SELECT d ->> 'paymentId' || ' ' || (d ->> 'userId') FROM generate_series(1, $from_a) AS i,"
	  . " LATERAL (SELECT $doc AS d) k");
is(scalar(grep { ($sa->{$_} ? 1 : 0) + ($sb->{$_} ? 1 : 0) == 1 } @a_keys), $from_a,
	"each of the $from_a payments submitted through A is stored by exactly one server");
my @a_on_b = grep { $sb->{$_} } @a_keys;
cmp_ok(scalar(@a_on_b), '>', 0, scalar(@a_on_b) . ' payments submitted through A were stored by B');
is(scalar(grep { $sb->{$_}[1] =~ /^twoserv-a-([1-9]|10)$/ && $sb->{$_}[2] eq $me } @a_on_b),
	scalar(@a_on_b),
	"B stored them with A's request id (PaymentRequestId) and caller (PaymentSubmittedBy)");
my $i = (split /\n/, $a->safe_psql('postgres',
		"SELECT i FROM generate_series(1, $from_a) AS i, LATERAL (SELECT $doc AS d) k"
		  . " WHERE d ->> 'paymentId' = '" . (split / /, $a_on_b[0])[0] . "'"))[0];
is($sb->{ $a_on_b[0] }[1], 'twoserv-a-' . (int(($i - 1) / 100) + 1),
	"a payment A accepted under x-request-id twoserv-a-k has exactly that request id in B");

# the SDK's payments sent once: each stored exactly once
my %once = map { $_ => 1 } grep { !$dup_pids{$_} } @{ $sent->{valid} };
my %sdk_count;
$sdk_count{ (split / /)[0] }++ for (@$sa_keys, @$sb_keys);
is(scalar(grep { ($sdk_count{$_} // 0) == 1 } keys %once), $from_sdk - $dups,
	'each SDK payment sent once is stored exactly once across the two servers');

### A's key records of the payments B stored stay in A
is($a->safe_psql('postgres', 'SELECT count(*) FROM payment.idempotency_keys'), scalar(@a_on_b),
	'A keeps the key record of every payment it accepted and B stored (only the storing server settles one)');
is($b->safe_psql('postgres', 'SELECT count(*) FROM payment.idempotency_keys'), '0',
	'B has no key record');
my ($pid, $uid) = split / /, $a_on_b[0];
is($a->safe_psql('postgres', "SELECT payment_status('$pid') ->> 'status'"), 'queued',
	"A's payment_status of a payment B stored says queued");
is($b->safe_psql('postgres', "SELECT payment_status('$pid') ->> 'status'"), 'stored',
	"B's says stored");
my $body = $a->safe_psql('postgres', "SELECT d::text FROM (SELECT $i AS i) s, LATERAL (SELECT $doc AS d) k");
my $sends = $peers->stats->{byOperation}{SendMessage} // 0;
my $replay = decode_json($a->safe_psql('postgres', 'SELECT submit_payment(' . lit($body) . ')'));
ok($replay->{replayed} && $replay->{messageId} eq $sb->{ $a_on_b[0] }[0],
	'a retry through A is still a replay with the first messageId (from the record A kept)')
  or diag(explain $replay);
is($peers->stats->{byOperation}{SendMessage} // 0, $sends, 'and sends nothing');

### the limit, deterministically: the same body as two messages, one to each
### server (the other one stopped: a paused worker may still be in a receive)
$b->stop;
my ($xpid, $xuid) = map { $a->safe_psql('postgres', 'SELECT gen_random_uuid()') } 1 .. 2;
my $xbody = qq({"paymentId": "$xpid", "userId": "$xuid", "amount": 5, "currency": "GBP",
 "description": "sent twice", "dateTimestamp": "1709553600"});
my $m1 = $peers->producer('send-one', 'queue-url' => $queue_url, body => $xbody)->{messageId};
ok(wait_for($a, "SELECT message_id FROM payment.payments WHERE payment_id = '$xpid'", $m1, 30),
	'the first copy is stored by A (B stopped)');
ok($peers->wait_queue_empty(30), 'and deleted from the queue');
$a->stop;
# a long poll A's workers left open may still take a message in fauxqs (then
# hidden for the visibility timeout): let it end (payment.wait_time 1 s)
sleep 2;
$b->start;
my $m2 = $peers->producer('send-one', 'queue-url' => $queue_url, body => $xbody)->{messageId};
ok(wait_for($b, "SELECT message_id FROM payment.payments WHERE payment_id = '$xpid'", $m2, 30),
	'the second copy, another SQS message, is stored by B as well: separate tables, no shared key check');
ok($peers->wait_queue_empty(30), 'the queue is empty');

is($peers->stats->{rejected}, 0, 'no request was rejected by the SigV4 verifier');
$b->stop;
done_testing();
