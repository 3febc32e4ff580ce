# Worker life cycle: backend_type, SIGHUP reload (payment.paused), SIGTERM and
# restart, waiting for CREATE EXTENSION, and a server without the preloaded
# library, where submit_payment still queues and warns.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use PaymentNode qw(new_payment_node reload_with);

my $payment = q{'{"paymentId": "%s", "userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4",
  "dateTimestamp": "1709553600", "description": "worker test", "currency": "GBP", "amount": 1}'};

# the extension is created below, once the workers run
my $node = new_payment_node('worker', extension => undef);

# workers run before the extension exists, and wait without error
ok($node->poll_query_until('postgres', q{
SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'payment worker'}),
	'two payment workers in pg_stat_activity before CREATE EXTENSION');
$node->safe_psql('postgres', 'CREATE EXTENSION payment');
$node->safe_psql('postgres', sprintf('SELECT submit_payment(%s)',
	sprintf($payment, 'aaaaaaaa-0000-4000-8000-000000000001')));
ok($node->poll_query_until('postgres', q{
SELECT payment_status('aaaaaaaa-0000-4000-8000-000000000001') ->> 'status' = 'stored'}),
	'stored once the extension exists');

# SIGHUP: pause, submit, nothing stored; resume, stored
# the workers are idle: they take the reload at once
reload_with($node, 'payment.paused' => 'on');
$node->safe_psql('postgres', sprintf('SELECT submit_payment(%s)',
	sprintf($payment, 'aaaaaaaa-0000-4000-8000-000000000002')));
# deliberate: two seconds in which the paused workers must not store it
sleep 2;
is($node->safe_psql('postgres', q{
SELECT payment_status('aaaaaaaa-0000-4000-8000-000000000002') ->> 'status'}),
	'queued', 'paused workers leave the payment queued');
$node->append_conf('postgresql.conf', 'payment.paused = off');
$node->reload;
ok($node->poll_query_until('postgres', q{
SELECT payment_status('aaaaaaaa-0000-4000-8000-000000000002') ->> 'status' = 'stored'}),
	'resumed workers store it');

# SIGTERM stops a worker cleanly; the postmaster starts it again
my $pid = $node->safe_psql('postgres', q{
SELECT pid FROM pg_stat_activity WHERE backend_type = 'payment worker' ORDER BY pid LIMIT 1});
kill 'TERM', $pid;
ok($node->poll_query_until('postgres', qq{
SELECT count(*) = 2 AND bool_and(pid <> $pid) FROM pg_stat_activity
 WHERE backend_type = 'payment worker'}), 'a terminated worker is restarted');
ok($node->log_contains(qr/terminating background worker "payment worker" due to administrator command/),
	'SIGTERM logged as a clean termination');
ok(!$node->log_contains(qr/terminated by signal|server process .* was terminated/),
	'no crash');
$node->stop;

# without shared_preload_libraries: queued, with a warning and a hint
my $bare = PostgreSQL::Test::Cluster->new('bare');
$bare->init;
$bare->start;
$bare->safe_psql('postgres', 'CREATE EXTENSION payment');
my ($ret, $out, $err) = $bare->psql('postgres', sprintf('SELECT submit_payment(%s) ->> %s',
	sprintf($payment, 'aaaaaaaa-0000-4000-8000-000000000003'), q{'message'}));
is($out, 'OK', 'submit_payment still queues without the preloaded library');
like($err, qr/WARNING:  payment is queued but no payment worker is running/, 'it warns');
like($err, qr/HINT:  Add payment to shared_preload_libraries/, 'with a hint');
is($bare->safe_psql('postgres', 'SELECT count(*) FROM payment.queue'), '1', 'the payment is queued');
is($bare->safe_psql('postgres', 'SELECT submitted IS NULL FROM payment.stats'), 't',
	'stats counters are NULL without shared memory');
$bare->stop;

done_testing();
