# The 1.1 -> 1.2 release path: a database created at 1.1 and populated in
# every user table (stored payments, dead letters, messages still queued,
# API keys, reader mappings, a schema version) is updated with ALTER
# EXTENSION payment UPDATE; every row is still there, the queued payments
# drain, the API keys still authenticate, the 1.2 objects work, and the
# result is the same set of objects as a fresh CREATE EXTENSION payment.
# Retries of payments queued or stored at 1.1 are answered as replays (the
# update backfills a key record per queued message), another body is refused
# with 23505, and everything drains exactly once.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use ReleaseHelper;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = new_release_node('upgrade_1_2');

is($node->safe_psql('postgres',
		q{SELECT default_version FROM pg_available_extensions WHERE name = 'payment'}),
	'1.2', 'the installed default version is 1.2');
$node->safe_psql('postgres', q{CREATE EXTENSION payment VERSION '1.1'});
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'payment'}),
	'1.1', 'created at 1.1');
is(query($node, 'postgres', q{SELECT set_payment_schema('} . reference_schema() . q{', 'at 1.1')}),
	'1', 'a schema version set at 1.1');

my $key = populate($node, 'postgres', 'at 1.1');
my $columns = columns($node, 'postgres');
my $before = digests($node, 'postgres', $columns);
is(scalar(keys %$before), 6, 'six user tables at 1.1');
is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.dead_letters'), '2', 'two dead letters at 1.1');

$node->safe_psql('postgres', 'ALTER EXTENSION payment UPDATE');
like($node->safe_psql('postgres', '\dx payment'), qr/^payment\|1\.2\|public\|/m, '\dx shows 1.2');
my $after = digests($node, 'postgres', $columns);
for my $t (sort keys %$before)
{
	is($after->{$t}, $before->{$t}, "$t: every row unchanged by the update");
}
is($node->safe_psql('postgres', 'SELECT count(*) || \' \' || sum(receive_count) FROM payment.queue'),
	'5 0', 'the 5 queued payments are still queued, none received');

# Retries of payments accepted at 1.1, with the workers still paused: the
# update backfilled a key record for each queued message, and a stored
# payment is its own record.
is($node->safe_psql('postgres', q{
SELECT count(*) FROM payment.idempotency_keys AS k JOIN payment.queue AS q
    ON q.payment_id = k.payment_id AND q.user_id = k.user_id AND q.message_id::text = k.message_id}),
	'5', 'the update recorded the key of each of the 5 queued payments, under its message');
my $queued_id = $node->safe_psql('postgres', q{
SELECT message_id FROM payment.queue WHERE payment_id = 'aaaaaaaa-0000-4000-8000-000000000101'});
my $stored_id = $node->safe_psql('postgres', q{
SELECT message_id FROM payment.payments WHERE payment_id = 'aaaaaaaa-0000-4000-8000-000000000005'});
# the answer as "replayed messageId", or the error's SQLSTATE and message
sub replay
{
	my ($doc) = @_;
	return query($node, 'postgres', "\\set VERBOSITY verbose\n"
		  . "SELECT (r ->> 'replayed') || ' ' || (r ->> 'messageId') FROM submit_payment('$doc') AS r");
}
is(replay(payment_doc(101, '7.990')), "true $queued_id",
	'a JSON-equal retry of a payment queued at 1.1 is a replay of its first message');
is(replay(payment_doc(5)), "true $stored_id", 'a retry of a payment stored at 1.1 is a replay');
is(replay(payment_doc(1)), 'true ' . $node->safe_psql('postgres', q{
SELECT message_id FROM payment.payments WHERE payment_id = 'aaaaaaaa-0000-4000-8000-000000000001'}),
	'a retry of the stored payment whose conflicting copy was dead-lettered at 1.1 is a replay');
for my $case ([ 101, 'queued' ], [ 5, 'stored' ], [ 1, 'stored and dead-lettered' ])
{
	like(replay(payment_doc($case->[0], '8.50')),
		qr/ERROR:  23505: payment aaaaaaaa-0000-4000-8000-\d{12} of user \S+ was already accepted with a different body/,
		"another body for the payment $case->[1] at 1.1 is refused with 23505");
}
like(replay(payment_doc(101, '9.99')), qr/DETAIL:  It was accepted as message \Q$queued_id\E at /,
	'the refusal names the message queued at 1.1');
is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.queue'), '5', 'the retries enqueued nothing');
is($node->safe_psql('postgres', q{
SELECT (s ->> 'status') || ' ' || (s ->> 'messageId')
  FROM payment_status('aaaaaaaa-0000-4000-8000-000000000102') AS s}),
	'queued ' . $node->safe_psql('postgres', q{
SELECT message_id FROM payment.queue WHERE payment_id = 'aaaaaaaa-0000-4000-8000-000000000102'}),
	'payment_status of a payment queued at 1.1 says queued, from its key record');

drains_after_update($node, 'postgres');
is($node->safe_psql('postgres', q{
SELECT count(*) || ' ' || count(DISTINCT (payment_id, user_id)) FROM payment.payments}),
	'25 25', 'each payment stored exactly once');
is($node->safe_psql('postgres', q{
SELECT message_id FROM payment.payments WHERE payment_id = 'aaaaaaaa-0000-4000-8000-000000000101'}),
	$queued_id, 'the payment queued at 1.1 is stored under the message it was queued as');
is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.idempotency_keys'), '0',
	'the store removed the backfilled key records');
is($node->safe_psql('postgres', 'SELECT duplicates FROM payment.stats'), '0',
	'no duplicate reached the store');

# the API key made at 1.1 still authenticates; the revoked one still does not
$node->safe_psql('postgres', q{ALTER SYSTEM SET payment.auth = 'api_key'; SELECT pg_reload_conf()});
$node->poll_query_until('postgres', 'SHOW payment.auth', 'api_key') or die 'payment.auth not reloaded';
is(query($node, 'postgres', "SELECT submit_payment('" . payment_doc(400) . "', '$key') ->> 'message'"),
	'OK', 'the API key created at 1.1 is accepted at 1.2');
like(query($node, 'postgres', "SELECT submit_payment('" . payment_doc(401) . "', 'pay_nope_nope')"),
	qr/invalid API key/, 'a made-up key is still refused');
$node->safe_psql('postgres', q{ALTER SYSTEM RESET payment.auth; SELECT pg_reload_conf()});
ok($node->poll_query_until('postgres', q{
SELECT payment_status('aaaaaaaa-0000-4000-8000-000000000400') ->> 'status' = 'stored'}),
	'and its payment is stored');

# the 1.2 objects
$node->safe_psql('postgres', 'CREATE ROLE payment_worker LOGIN');
is(query($node, 'postgres', q{SELECT payment.grant_worker_privileges('payment_worker')}), '',
	'payment.grant_worker_privileges works after the update');
is($node->safe_psql('postgres', q{
SELECT has_table_privilege('payment_worker', 'payment.payments', 'INSERT')
   AND NOT has_table_privilege('payment_worker', 'payment.api_keys', 'SELECT')}),
	't', 'and grants what the workers need, not the API keys');
is($node->safe_psql('postgres', q{
SELECT has_function_privilege('public', 'payment.grant_worker_privileges(name)', 'EXECUTE')}),
	'f', 'not executable by PUBLIC');

# the grant made above is state of the updated database, not an object of the
# release (DROP OWNED revokes the grants and drops the role's policy)
$node->safe_psql('postgres', 'DROP OWNED BY payment_worker; DROP ROLE payment_worker');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_policy WHERE polname LIKE 'payments_worker_%'}),
	'0', 'no worker policy left');
# a fresh 1.2 has exactly the objects of 1.1 + the update
same_objects_as_fresh($node, 'postgres', '1.2');

$node->stop;
done_testing();
