# The SQS fault proxy, one fault kind at a time at rate 1, as the extension
# sees it: each kind gives the error (and SQLSTATE) it is meant to
# simulate, a failed delete leaves the stored message on the queue until
# deletes pass again, and a replayed receive delivers stored messages again
# without storing them twice.  The chaos run relies on these faults being
# what they claim.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use SqsPeers;

my $key = SqsPeers::new_key_id();
my $peers = SqsPeers->new(
	keys => SqsPeers::producer_and($key),
	faults => { rate => 0, seed => 505, delay_ms => 1500, keys => [$key] });
$peers->create_queue('payments', 30);
my $node = $peers->start_node('fault_proxy', $key,
	'payment.workers' => 1,
	'payment.wait_time' => 1,
	'payment.visibility_timeout' => 2,
	'payment.http_timeout' => "'500ms'");

my $i = 0;
sub submit
{
	$i++;
	my ($ret, $out, $err) = $node->psql('postgres', qq{
SELECT submit_payment(jsonb_build_object('paymentId', gen_random_uuid()::text,
  'userId', '0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4', 'dateTimestamp', '1',
  'description', 'fault proxy $i', 'currency', 'GBP', 'amount', $i)) ->> 'message'},
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return $ret == 0 ? $out : $err;
}

my %expect = (
	http500 => qr/ERROR:  58000: SQS SendMessage failed with HTTP status 500.*InternalError/s,
	http503 => qr/ERROR:  08006: SQS SendMessage failed with HTTP status 503.*ServiceUnavailable/s,
	throttle => qr/ERROR:  53000: SQS SendMessage failed with HTTP status 400.*(ThrottlingException|RequestThrottled)/s,
	reset => qr/ERROR:  08006: SQS request to .* failed/s,
	delay => qr/ERROR:  08006: SQS request to .* timed out/s,
	truncated => qr/ERROR:  08P01: SQS SendMessage answered with something other than a JSON object/s,
);
for my $kind (sort keys %expect)
{
	$peers->faults_config(rate => 1, kinds => $kind, ops => 'SendMessage');
	like(submit(), $expect{$kind}, "$kind: the submit fails as it should");
}
$peers->faults_config(rate => 0, ops => '');
is(submit(), 'OK', 'without faults the submit passes');
my $f = $peers->fault_stats;
is($f->{injected}{$_}, 1, "$_ counted once") for sort keys %expect;

# reset, delay and truncated were forwarded: SQS holds those three messages
# although their submits failed; all four reach the table
ok($node->poll_query_until('postgres', 'SELECT count(*) = 4 FROM payment.payments'),
	'the forwarded submits and the good one are stored');

# failed deletes: the stored message stays on the queue, then goes
$peers->faults_config(rate => 1, kinds => 'delete_failed');
is(submit(), 'OK', 'submit with every delete failing');
ok(SqsPeers::wait_until(sub { $peers->fault_stats->{failed_delete_entries} >= 2 }, 30),
	'the message was received again after its delete failed');
my $c = $peers->queue_counts;
is($c->{visible} + $c->{in_flight}, 1, 'the message is still on the queue');
$peers->faults_config(rate => 0);
ok(SqsPeers::wait_until(sub { my $c = $peers->queue_counts; $c->{visible} + $c->{in_flight} == 0 }, 30),
	'deleted once deletes pass');

# replay: the last receive's messages come again; stored once
$peers->faults_config(rate => 1, kinds => 'replay');
ok(SqsPeers::wait_until(sub { $peers->fault_stats->{replayed_messages} >= 3 }, 30),
	'receives replayed');
$peers->faults_config(rate => 0);
is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.payments'), '5',
	'replayed messages are not stored twice');
is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.dead_letters'), '0',
	'nor dead-lettered');
is($peers->stats->{rejected}, 0, 'every request correctly signed');

$node->stop;
done_testing();
