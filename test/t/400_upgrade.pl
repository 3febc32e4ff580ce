# The 1.0 -> 1.1 release path (401_upgrade_1_2.pl takes it on to 1.2): a database created at 1.0 and populated in
# every user table (stored payments, dead letters, queued messages, API keys,
# reader mappings) is served by the new library while still at 1.0; after
# ALTER EXTENSION payment UPDATE every row is still there, the queued
# payments drain, the 1.1 objects exist and work, and the result is the same
# set of objects as a fresh CREATE EXTENSION payment.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use ReleaseHelper;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = new_release_node('upgrade');

is($node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_available_extension_versions WHERE name = 'payment' AND version IN ('1.0', '1.1')}),
	'2', 'versions 1.0 and 1.1 are installable');
$node->safe_psql('postgres', q{CREATE EXTENSION payment VERSION '1.0'});
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'payment'}),
	'1.0', 'created at 1.0');

# The new library serves a database still at 1.0: submit, store, dead-letter.
populate($node, 'postgres', 'at 1.0 with the new library');
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'payment'}),
	'1.0', 'all of that at 1.0');
is($node->safe_psql('postgres', 'SELECT to_regclass(\'payment.schemas\') IS NULL'),
	't', 'no 1.1 object before the update');
ok(!$node->log_contains(qr/ERROR|FATAL|PANIC/), 'the server log has no error at 1.0')
  or diag(join "\n", grep { /ERROR|FATAL|PANIC/ } split /\n/, slurp_file($node->logfile));

# 1.1 adds columns (NULL in old rows): the 1.0 columns must be unchanged
my $columns_10 = columns($node, 'postgres');
my $before = digests($node, 'postgres', $columns_10);
is(scalar(keys %$before), 5, 'five user tables at 1.0');

$node->safe_psql('postgres', q{ALTER EXTENSION payment UPDATE TO '1.1'});

like($node->safe_psql('postgres', '\dx payment'), qr/^payment\|1\.1\|public\|/m, '\dx shows 1.1');
my $after = digests($node, 'postgres', $columns_10);
for my $t (sort keys %$before)
{
	is($after->{$t}, $before->{$t}, "$t: every row unchanged by the update");
}
is($after->{'payment.schemas'}, '0 -', 'payment.schemas exists, empty');

# the 1.1 objects
is($node->safe_psql('postgres', q{
SELECT count(*) FROM unnest(ARRAY['validate_json(jsonb,jsonb)', 'set_payment_schema(jsonb,text)',
                                  'validate_payment(jsonb)', 'payment_schema_from_openapi(jsonb,text)'])
                     AS f(sig)
 WHERE to_regprocedure('public.' || sig) IS NOT NULL}), '4', 'the four 1.1 functions exist');
is($node->safe_psql('postgres', q{
SELECT array_agg(c ORDER BY c)::text
  FROM (SELECT unnest(extconfig)::regclass::text AS c FROM pg_extension WHERE extname = 'payment') s}),
	'{payment.api_keys,payment.dead_letters,payment.dead_letters_id_seq,payment.payments,'
	  . 'payment.queue_events_0,payment.queue_events_1,payment.queue_events_2,payment.queue_retry,'
	  . 'payment.queue_seq_seq,payment.reader_users,payment.schemas,payment.schemas_version_seq}',
	'user tables and their identity sequences registered for pg_dump');
is($node->safe_psql('postgres', q{
SELECT string_agg(attname, ',' ORDER BY attname) FROM pg_attribute
 WHERE attrelid = 'payment.payments'::regclass AND attnum > 0 AND NOT attisdropped AND NOT attnotnull}),
	'amount,currency,date_timestamp,description', 'the non-key payment columns are nullable');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM pg_proc WHERE proname IN ('validate_json', 'set_payment_schema',
  'validate_payment', 'payment_schema_from_openapi') AND has_function_privilege('public', oid, 'EXECUTE')}),
	'0', 'none of them executable by PUBLIC');

drains_after_update($node, 'postgres');

# The new functions work (their real results, not their mere presence).
is(query($node, 'postgres', q{SELECT validate_json('{"a": 1}', '{"type": "object"}') ->> 'valid'}),
	'true', 'validate_json accepts a matching document');
is(query($node, 'postgres', q{
SELECT r ->> 'valid', r -> 'errors' -> 0 ->> 'path', r -> 'errors' -> 0 ->> 'keyword'
  FROM validate_json('{"a": "x"}', '{"properties": {"a": {"type": "integer"}}}') AS r}),
	'false|$.a|type', 'validate_json refuses a mismatch, by path and keyword');
is(query($node, 'postgres', "SELECT validate_payment('" . payment_doc(200) . "') ->> 'valid'"),
	'true', 'validate_payment accepts the reference payment (no schema set: the 1.0 model)');
is(query($node, 'postgres',
		"SELECT validate_payment('" . payment_doc(200) . "'::jsonb - 'userId') ->> 'valid'"),
	'false', 'validate_payment refuses a payment without userId');
my $openapi = q({"openapi": "3.0.1", "info": {"title": "payments", "version": "1"}, "paths": {},
 "components": {"schemas": {
   "Uuid": {"type": "string", "format": "uuid"},
   "Payment": {"type": "object", "required": ["paymentId", "userId", "amount"],
               "properties": {"paymentId": {"$ref": "#/components/schemas/Uuid"},
                              "userId": {"$ref": "#/components/schemas/Uuid"},
                              "amount": {"type": "number"}}}}}});
is(query($node, 'postgres', qq{
SELECT validate_json('} . payment_doc(201) . qq{', s) ->> 'valid',
       validate_json(jsonb_set('} . payment_doc(201) . qq{', '{paymentId}', '"nope"'), s) ->> 'valid'
  FROM payment_schema_from_openapi('$openapi') AS s}),
	'true|false', 'payment_schema_from_openapi resolves its $refs: a uuid is checked through one');
is(query($node, 'postgres', "SELECT set_payment_schema('" . reference_schema() . "', 'release test')"),
	'1', 'set_payment_schema stores the reference schema as version 1');
is(query($node, 'postgres', 'SELECT version, active, comment FROM payment.schemas'),
	'1|t|release test', 'version 1 is active');
$node->safe_psql('postgres', "SELECT submit_payment('" . payment_doc(300) . "')");
ok($node->poll_query_until('postgres', q{
SELECT payment_status('aaaaaaaa-0000-4000-8000-000000000300') ->> 'status' = 'stored'}),
	'a payment submitted after the update is stored');

# A fresh CREATE EXTENSION payment VERSION '1.1' has exactly the objects of
# 1.0 + the update.
same_objects_as_fresh($node, 'postgres', '1.1');

$node->stop;
done_testing();
