# Regression test for a poison message found by the fuzzer (520_fuzz.pl):
# a queued body nested deeper than the parser's stack allows ("stack depth
# limit exceeded", 54001).  The workers retried it as transient; when it ran
# out of receives, writing its dead letter looked for its keys by parsing
# the body again, outside any subtransaction, so the whole batch failed:
# the message was never settled, was delivered again forever, and took its
# batch neighbours down with it.  Now: dead-lettered once as invalid (a
# message that is too deep stays too deep), its neighbours stored.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;

use PaymentNode;

my $node = new_payment_node('deep_body', settings => {
	'payment.workers' => 1,
	'payment.batch_size' => 10,
	'payment.visibility_timeout' => "'2s'",
	'payment.paused' => 'on' });

# another producer writes the queue table directly: the front door's depth
# limit does not apply to what it sends
my $deep = '[' x 200_000 . ']' x 200_000;
my $valid = q{{"paymentId": "%s", "userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4",
 "dateTimestamp": "1709553600", "description": "neighbour", "currency": "GBP", "amount": 1}};
$node->safe_psql('postgres', qq{
INSERT INTO payment.queue (body) VALUES ('${\ sprintf($valid, 'dddddddd-0000-4000-8000-000000000001')}');
INSERT INTO payment.queue (body) VALUES ('$deep');
INSERT INTO payment.queue (body) VALUES ('{"paymentId": "dddddddd-0000-4000-8000-000000000002", "nested": $deep}');
INSERT INTO payment.queue (body) VALUES ('${\ sprintf($valid, 'dddddddd-0000-4000-8000-000000000003')}');});
$node->append_conf('postgresql.conf', 'payment.paused = off');
$node->reload;

ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM payment.queue'),
	'the queue drains: the deep bodies are settled');
is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.payments'), '2',
	'both neighbours of the deep bodies are stored');
is($node->safe_psql('postgres',
		q{SELECT string_agg(reason || ' ' || receive_count || ' ' || (payment_id IS NULL), ',' ORDER BY id)
  FROM payment.dead_letters}),
	'invalid 1 true,invalid 1 true', 'each deep body dead-lettered once, as invalid, on its first receive');
like($node->safe_psql('postgres', q{SELECT min(error) FROM payment.dead_letters}),
	qr/stack depth limit exceeded/, 'the dead letter says why');
my $log = slurp_file($node->logfile);
unlike($log, qr/WARNING:  stack depth limit exceeded/, 'no batch failed on a deep body');
unlike($log, qr/terminated by signal/, 'no crash');
$node->stop;
done_testing();
