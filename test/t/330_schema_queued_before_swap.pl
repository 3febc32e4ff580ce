# A payment accepted under one schema version is stored even if a version
# made active before the workers reach it would refuse it: workers paused,
# submit, swap to a stricter version, resume: stored, not dead-lettered.
# This needs the queue to record the version each payment was accepted
# under and the store to call payment_validate_version with it.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;

use PaymentNode;

my $node = new_payment_node('queued_swap', settings => { 'payment.paused' => 'on' });
$node->safe_psql('postgres', q{SELECT submit_payment('{"paymentId": "bbbbbbbb-0000-4000-8000-000000000001",
  "userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4", "dateTimestamp": "1709553600",
  "description": "accepted under the reference model", "currency": "GBP", "amount": 1}')});
$node->safe_psql('postgres', q{SELECT set_payment_schema('{"type": "object",
  "required": ["paymentId", "userId", "currency"], "properties": {"currency": {"enum": ["EUR"]}}}')});
is($node->safe_psql('postgres', q{SELECT payment_status('bbbbbbbb-0000-4000-8000-000000000001') ->> 'status'}),
	'queued', 'queued while the workers are paused');
$node->append_conf('postgresql.conf', 'payment.paused = off');
$node->reload;
ok($node->poll_query_until('postgres', q{
SELECT payment_status('bbbbbbbb-0000-4000-8000-000000000001') ->> 'status' <> 'queued'}),
	'the workers reach it after the swap');
is($node->safe_psql('postgres', q{SELECT payment_status('bbbbbbbb-0000-4000-8000-000000000001') ->> 'status'}),
	'stored', 'stored under the version it was accepted under, not dead-lettered');
$node->stop;
done_testing();
