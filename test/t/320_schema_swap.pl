# A new active payment schema reaches sessions that are already open and the
# workers, on their next call, without reconnecting and without a query per
# call; also without shared_preload_libraries, and in a database that was
# still at extension version 1.0 when the session started.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use PaymentNode;

my $strict = q{'{"type": "object", "required": ["paymentId", "userId", "amount", "currency"],
  "properties": {"currency": {"enum": ["EUR"]}, "amount": {"type": "number"}}}'};
my $gbp = q{'{"paymentId": "%s", "userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4",
  "dateTimestamp": "1709553600", "description": "swap test", "currency": "GBP", "amount": 1}'};
sub gbp { sprintf($gbp, shift) }

sub swap_seen_by_open_session
{
	my ($node, $label) = @_;
	my $a = $node->background_psql('postgres');
	is($a->query_safe(sprintf('SELECT validate_payment(%s) ->> %s',
		gbp('aaaaaaaa-0000-4000-8000-000000000001'), q{'valid'})),
		'true', "$label: the open session validates against the reference model");

	$node->safe_psql('postgres', "SELECT set_payment_schema($strict, 'EUR only')");
	is($a->query_safe(sprintf('SELECT validate_payment(%s) -> %s ->> 0',
		gbp('aaaaaaaa-0000-4000-8000-000000000001'), q{'errors'})),
		'{"path": "$.currency", "keyword": "enum", "message": "not one of the enum values"}',
		"$label: the same open session sees the new version on its next call");

	# no query per call: 500 validations scan payment.schemas at most once
	my $scans = q{SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0)
		FROM pg_stat_user_tables WHERE relid = 'payment.schemas'::regclass};
	$a->query_safe('SELECT pg_stat_force_next_flush()');
	$a->query_safe('SELECT 1');
	my $before = $node->safe_psql('postgres', $scans);
	$a->query_safe(sprintf('SELECT count(validate_payment(%s)) FROM generate_series(1, 500)',
		gbp('aaaaaaaa-0000-4000-8000-000000000001')));
	$a->query_safe('SELECT pg_stat_force_next_flush()');
	$a->query_safe('SELECT 1');
	my $after = $node->safe_psql('postgres', $scans);
	cmp_ok($after - $before, '<=', 1, "$label: 500 validations read payment.schemas at most once ($before -> $after)");
	# the control: the counter does move when the session reads the table
	$a->query_safe('SELECT count(*) FROM payment.schemas') for 1 .. 3;
	$a->query_safe('SELECT pg_stat_force_next_flush()');
	$a->query_safe('SELECT 1');
	cmp_ok($node->safe_psql('postgres', $scans) - $after, '>=', 3,
		"$label: (control) three explicit reads are counted");

	$node->safe_psql('postgres', 'UPDATE payment.schemas SET active = false WHERE active');
	is($a->query_safe(sprintf('SELECT validate_payment(%s) ->> %s',
		gbp('aaaaaaaa-0000-4000-8000-000000000001'), q{'valid'})),
		'true', "$label: deactivating by hand is seen too (reference model again)");
	$a->quit;
}

my $node = new_payment_node('swap');
swap_seen_by_open_session($node, 'preloaded');

# the workers validate against the active version too: a message from
# another producer (straight into the queue) that only the reference model
# accepts is dead-lettered as invalid once the strict version is active
$node->safe_psql('postgres', "SELECT set_payment_schema($strict, 'EUR only')");
$node->safe_psql('postgres', sprintf(q{INSERT INTO payment.queue (payment_id, user_id, body)
	VALUES ('aaaaaaaa-0000-4000-8000-000000000002', '0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4', %s)},
	gbp('aaaaaaaa-0000-4000-8000-000000000002')));
$node->safe_psql('postgres', 'SELECT pg_notify($$x$$, $$y$$)');
ok($node->poll_query_until('postgres', q{
SELECT payment_status('aaaaaaaa-0000-4000-8000-000000000002') ->> 'status' = 'dead_lettered'}),
	'a worker applies the new active version to messages of other producers');
like($node->safe_psql('postgres', q{SELECT error FROM payment.dead_letters
	WHERE payment_id = 'aaaaaaaa-0000-4000-8000-000000000002'}),
	qr/\$\.currency: not one of the enum values/, 'dead letter names the broken rule');
$node->stop;

# without shared_preload_libraries
my $bare = PostgreSQL::Test::Cluster->new('swap_bare');
$bare->init;
$bare->start;
$bare->safe_psql('postgres', 'CREATE EXTENSION payment');
swap_seen_by_open_session($bare, 'not preloaded');

# a database still at 1.0 served by the new library: the reference model,
# no error; after ALTER EXTENSION UPDATE an open session sees a new version
$bare->safe_psql('postgres', 'CREATE DATABASE old');
$bare->safe_psql('old', q{CREATE EXTENSION payment VERSION '1.0'});
my $s = $bare->background_psql('old');
# (query, not query_safe: unpreloaded, submit_payment warns that no worker runs)
like(scalar($s->query(sprintf('SELECT submit_payment(%s) ->> %s',
	gbp('aaaaaaaa-0000-4000-8000-000000000003'), q{'message'}))),
	qr/^OK/, 'extension 1.0 with the new library: submit_payment uses the reference model');
my ($ret, $out, $err) = $bare->psql('old', sprintf('SELECT submit_payment(%s)',
	q{'{"paymentId": "aaaaaaaa-0000-4000-8000-000000000004"}'}));
like($err, qr/\$\.amount: required property missing/, 'and refuses what it refuses');
$bare->safe_psql('old', 'ALTER EXTENSION payment UPDATE');
$bare->safe_psql('old', "SELECT set_payment_schema($strict)");
# (validate_payment: the background psql stops at an error; query, not
# query_safe: the warning of the first submit_payment is still on stderr)
is(scalar $s->query(sprintf('SELECT validate_payment(%s) -> %s ->> 0',
	gbp('aaaaaaaa-0000-4000-8000-000000000005'), q{'errors'})),
	'{"path": "$.currency", "keyword": "enum", "message": "not one of the enum values"}',
	'after the update, the session opened at 1.0 sees the new version');
$s->quit;
$bare->stop;

done_testing();
