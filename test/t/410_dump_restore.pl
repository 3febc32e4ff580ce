# pg_dump keeps the data: a database populated in every user table
# (payments, dead letters, queued messages, API keys, reader mappings, schema
# versions) is dumped with pg_dump -Fc and restored with pg_restore into a new
# database; every table is the same there, row for row, and new rows in it
# take fresh ids (dead letters, queue messages, schema versions).
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use ReleaseHelper;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = new_release_node('dump');
$node->safe_psql('postgres', 'CREATE EXTENSION payment');

# A team's schema: the reference model with a closed list of currencies.
my $strict = reference_schema() =~ s/"currency": \{"type": "string"\}/"currency": {"type": "string", "enum": ["GBP", "EUR"]}/r;
isnt($strict, reference_schema(), 'the strict schema differs from the reference');
is(query($node, 'postgres', "SELECT set_payment_schema('$strict', 'GBP and EUR only')"),
	'1', 'set_payment_schema: version 1');

my $key = populate($node, 'postgres', 'source');
is(query($node, 'postgres',
		"SELECT validate_payment(jsonb_set('" . payment_doc(501) . "', '{currency}', '\"USD\"')) ->> 'valid'"),
	'false', 'the strict schema is active in the source: USD refused');

# a worker role's grants and policy (payment.grant_worker_privileges) come along too
$node->safe_psql('postgres', q{CREATE ROLE payment_worker LOGIN;
SELECT payment.grant_worker_privileges('payment_worker')});
my $worker_grants_sql = q{
SELECT (SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = 'payment_worker')
       || ' ' || (SELECT count(*) FROM pg_policies WHERE 'payment_worker' = ANY (roles))};
# 1.2: SELECT and DELETE on payment.idempotency_keys too
my $worker_grants = $node->safe_psql('postgres', $worker_grants_sql);
like($worker_grants, qr/^3\d 1$/, 'the worker role has its grants and its policy in the source');

my $source = digests($node, 'postgres');
is(scalar(keys %$source), 6, 'six user tables in the source');
# the key records of the 5 queued payments (pg_extension_config_dump)
my $keys_sql = q{
SELECT count(*) || ' ' || md5(string_agg(k::text, E'\n' ORDER BY k::text)) FROM payment.idempotency_keys AS k};
my $source_keys = $node->safe_psql('postgres', $keys_sql);
like($source_keys, qr/^5 /, 'the source has a key record for each of the 5 queued payments');
# dumped from the running server, whose workers serve this database
my $dir = PostgreSQL::Test::Utils::tempdir();
$node->command_ok([ 'pg_dump', '-Fc', '-f', "$dir/payment.dump", 'postgres' ], 'pg_dump -Fc');
$node->command_ok([ 'createdb', 'restored' ], 'createdb restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'restored', "$dir/payment.dump" ],
	'pg_restore into the new database');

my $restored = digests($node, 'restored');
# pg_dump writes the grants on the extension's tables, not a policy added to
# one after CREATE EXTENSION: the workers would say so (42501); the grant
# call, run again, restores it
my ($grants) = $worker_grants =~ /^(\d+)/;
is($node->safe_psql('restored', $worker_grants_sql), "$grants 0",
	'the worker role has the same grants in the restored database, not its policy');
$node->safe_psql('restored', q{SELECT payment.grant_worker_privileges('payment_worker')});
is($node->safe_psql('restored', $worker_grants_sql), $worker_grants,
	'payment.grant_worker_privileges run again: grants and policy as in the source');
for my $t (@USER_TABLES)
{
	is($restored->{$t}, $source->{$t}, "$t: restored row for row");
}
like($restored->{'payment.payments'}, qr/^20 /, 'the 20 stored payments are among them');
like($restored->{'payment.queue'}, qr/^5 /, 'and the 5 queued ones');
is($node->safe_psql('restored', $keys_sql), $source_keys, 'payment.idempotency_keys: restored row for row');

# a retry of a queued payment is still answered from its key record (no
# worker serves the restored database: the payments stay queued)
is(query($node, 'restored', q{
SELECT (r ->> 'replayed') || ' ' || (r ->> 'messageId') = 'true ' || (SELECT message_id::text
         FROM payment.queue WHERE payment_id = 'aaaaaaaa-0000-4000-8000-000000000103')
  FROM submit_payment('} . payment_doc(103) . q{') AS r}),
	't', 'after restore, a retry of a queued payment is a replay of its message');
is($node->safe_psql('restored', 'SELECT count(*) FROM payment.queue'), '5', 'and enqueues nothing');
like(query($node, 'restored', "SELECT submit_payment('" . payment_doc(103, '1.00') . "')"),
	qr/already accepted with a different body/, 'another body for it is refused');

# The restored database is usable: new rows do not collide with restored ids.
is(query($node, 'restored', q{
INSERT INTO payment.dead_letters (body, reason) VALUES ('after restore', 'invalid')
RETURNING id = (SELECT max(id) FROM payment.dead_letters WHERE body <> 'after restore') + 1}),
	't', 'a new dead letter takes the next id');
is(query($node, 'restored', "SELECT submit_payment('" . payment_doc(500) . "') ->> 'message'"),
	'OK', 'a new payment is queued');
is($node->safe_psql('restored', q{
SELECT (SELECT seq FROM payment.queue WHERE payment_id = 'aaaaaaaa-0000-4000-8000-000000000500')
     > (SELECT max(seq) FROM payment.queue WHERE payment_id <> 'aaaaaaaa-0000-4000-8000-000000000500')}),
	't', 'with a queue sequence number past the restored messages');
like(query($node, 'restored', q{SELECT create_api_key('after-restore')}), qr/^pay_/,
	'a new API key');
is($node->safe_psql('restored', 'SELECT count(*) FROM payment.api_keys'), '3', 'beside the restored two');
is($node->safe_psql('restored', q{
SELECT count(*) FROM payment.api_keys WHERE name = 'partner' AND key_hash = sha256('} . $key . q{')}),
	'1', 'the restored API key still matches its secret');
# the active schema came along with the data
is(query($node, 'restored',
		"SELECT validate_payment(jsonb_set('" . payment_doc(501) . "', '{currency}', '\"USD\"')) ->> 'valid'"),
	'false', 'the restored active schema (version 1) refuses USD');
is(query($node, 'restored', "SELECT set_payment_schema('" . reference_schema() . "')"),
	'2', 'a new schema version takes the next number');

$node->stop;
done_testing();
