# A payment stored by someone else while a worker stores its batch: the
# worker's check of the keys cannot see the uncommitted row, so its INSERT
# waits for that transaction and then hits the unique index; the batch is
# stored again message by message, where the payment counts as a duplicate
# (the same body) or a conflict (another body), and the rest of the batch is
# stored.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;

use PaymentNode;

my $payment = q{{"paymentId": "%s", "userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4",
  "dateTimestamp": "1709553600", "description": "%s", "currency": "GBP", "amount": 1}};

my $node = new_payment_node('concurrent_store',
	settings => { 'payment.workers' => 1, log_min_messages => 'debug1' });

# One case: a session inserts the payment of key $id with $held_description
# and keeps its transaction open; the worker's batch holds the same key
# (description 'queued') and another payment.
sub race
{
	my ($id, $other, $held_description) = @_;
	my $held = $node->background_psql('postgres');
	my $row = sprintf($payment, $id, $held_description);
	$held->query_safe(qq{
BEGIN;
INSERT INTO payment.payments (payment_id, user_id, amount, currency, description,
    date_timestamp, body, message_id)
SELECT (b->>'paymentId')::uuid, (b->>'userId')::uuid, 1, 'GBP', b->>'description',
       b->>'dateTimestamp', b, 'held'
  FROM (SELECT '$row'::jsonb AS b) s});
	$node->safe_psql('postgres', sprintf(q{SELECT submit_payments(jsonb_build_array('%s'::jsonb, '%s'::jsonb))},
		sprintf($payment, $id, 'queued'), sprintf($payment, $other, 'queued')));
	# the worker's INSERT waits for the open transaction
	ok($node->poll_query_until('postgres', q{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE backend_type = 'payment worker' AND wait_event_type = 'Lock' AND wait_event = 'transactionid'}),
		"$held_description: the worker waits for the transaction storing the same key");
	$held->query_safe('COMMIT');
	$held->quit;
	ok($node->poll_query_until('postgres', qq{
SELECT payment_status('$other') ->> 'status' = 'stored'}),
		"$held_description: the rest of the batch is stored");
}

my $log_offset = -s $node->logfile;
race('c0c0c0c0-0000-4000-8000-000000000001', 'c0c0c0c0-0000-4000-8000-000000000002', 'queued');
ok($node->poll_query_until('postgres', q{SELECT duplicates = 1 FROM payment.counters()}),
	'the same body stored meanwhile counts as a duplicate');
ok($node->log_contains(qr/payment worker isolates the messages of a failed batch/, $log_offset),
	'the batch was stored again message by message');
ok($node->log_contains(qr/DETAIL:\s+duplicate key value violates unique constraint "payments_pkey"/,
		$log_offset), 'because the unique index refused it');

race('c0c0c0c0-0000-4000-8000-000000000003', 'c0c0c0c0-0000-4000-8000-000000000004', 'held elsewhere');
ok($node->poll_query_until('postgres', q{SELECT conflicts = 1 FROM payment.counters()}),
	'another body stored meanwhile is a conflict');
is($node->safe_psql('postgres', q{
SELECT reason FROM payment.dead_letters WHERE payment_id = 'c0c0c0c0-0000-4000-8000-000000000003'}),
	'conflict', 'dead-lettered as a conflict');

is($node->safe_psql('postgres', q{
SELECT count(*) || ' ' || count(*) FILTER (WHERE message_id = 'held') FROM payment.payments}),
	'4 2', 'every payment stored once, the held ones as the other session wrote them');
is($node->safe_psql('postgres', q{SELECT stored FROM payment.counters()}), '2',
	'the workers stored the two others');
ok(!$node->log_contains(qr/terminated by signal/), "no crash");
$node->stop;
done_testing();
