# ReleaseHelper.pm: shared by the release TAP tests (400_upgrade.pl,
# 410_dump_restore.pl): a preloaded cluster, a database populated in every
# table that holds user data, ordered digests of those tables, pausing the
# workers, and running SQL whose failure is an assertion rather than a die.
package ReleaseHelper;

use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Utils;
use Test::More;

use PaymentNode qw(new_payment_node reload_with);

our @EXPORT = qw(columns @USER_TABLES @USER_SEQUENCES new_release_node payment_doc
  reference_schema query digests set_paused populate drains_after_update same_objects_as_fresh);

# Every table holding user data, and the identity sequences behind their ids.
our @USER_TABLES = qw(payment.payments payment.dead_letters payment.queue
  payment.api_keys payment.reader_users payment.schemas);
our @USER_SEQUENCES = qw(payment.dead_letters_id_seq payment.queue_seq_seq
  payment.schemas_version_seq);

our $USER = '0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4';

# A started cluster with the library preloaded and two workers serving
# 'postgres' (PaymentNode::new_payment_node), without the extension: each
# release test creates the version it starts from.  %settings (name => value
# as written in postgresql.conf) are added or override those.
sub new_release_node
{
	my ($name, %settings) = @_;
	return new_payment_node($name, extension => undef, settings => \%settings);
}

# The reference example payment with payment id $n (1 .. 2^48) and $amount.
sub payment_doc
{
	my ($n, $amount) = @_;
	return sprintf(
		'{"paymentId": "aaaaaaaa-0000-4000-8000-%012d", "userId": "%s", '
		  . '"dateTimestamp": "1709553600", "description": "release test %d", '
		  . '"currency": "GBP", "amount": %s}',
		$n, $USER, $n, $amount // '7.99');
}

# The reference API's Payment model (JSON Schema draft-04).
sub reference_schema
{
	return q({"$schema": "http://json-schema.org/draft-04/schema#", "title": "Payment",
  "type": "object",
  "required": ["amount", "currency", "dateTimestamp", "description", "paymentId", "userId"],
  "properties": {
    "paymentId": {"type": "string", "format": "uuid"},
    "userId": {"type": "string", "format": "uuid"},
    "dateTimestamp": {"type": "string"},
    "description": {"type": "string", "maxLength": 256},
    "currency": {"type": "string"},
    "amount": {"type": "number"}}});
}

# The output of $sql in $db, or "ERROR: ..." when it fails: tests compare it
# with is(), so that a failure shows the server's message and the test goes on.
sub query
{
	my ($node, $db, $sql) = @_;
	my ($ret, $out, $err) = $node->psql($db, $sql);
	return $out if $ret == 0;
	$err =~ s/^psql:\S+ //mg;
	return $err =~ /\S/ ? $err : "psql failed ($ret)";
}

# table => its column list, for every user table that exists in $db
sub columns
{
	my ($node, $db) = @_;
	my %c;
	for my $t (@USER_TABLES)
	{
		next unless $node->safe_psql($db, "SELECT to_regclass('$t') IS NOT NULL") eq 't';
		$c{$t} = $node->safe_psql($db, qq{
SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
 WHERE attrelid = '$t'::regclass AND attnum > 0 AND NOT attisdropped});
	}
	return \%c;
}

# table => "<row count> <md5 of its rows' text, ordered>" for every user
# table that exists in $db; with $cols (from columns()), of those columns only,
# so that rows can be compared across an update that adds columns.
sub digests
{
	my ($node, $db, $cols) = @_;
	my %d;
	for my $t (@USER_TABLES)
	{
		next unless $node->safe_psql($db, "SELECT to_regclass('$t') IS NOT NULL") eq 't';
		my $list = $cols && $cols->{$t} ? $cols->{$t} : '*';
		$d{$t} = $node->safe_psql($db, qq{
SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '-')
  FROM (SELECT $list FROM $t) AS t});
	}
	return \%d;
}

# After populate() and an update: the workers resumed, the 5 payments left
# queued are stored (25 in all) and nothing more is dead-lettered.
sub drains_after_update
{
	my ($node, $db) = @_;
	set_paused($node, 0);
	ok($node->poll_query_until($db, q{
SELECT (SELECT count(*) FROM payment.queue) = 0
   AND (SELECT count(*) FROM payment.payments) = 25}), 'the queued payments are stored after the update');
	is($node->safe_psql($db, 'SELECT count(*) FROM payment.dead_letters'), '2',
		'and nothing more dead-lettered');
}

# The extension's objects in $db, updated to $version, are exactly those of
# a fresh CREATE EXTENSION payment VERSION $version (in a new database):
# pg_dump --schema-only --binary-upgrade writes every member, with columns,
# privileges and the pg_dump registrations; oids, xids and sequence
# positions (data, not objects) are left out.
sub same_objects_as_fresh
{
	my ($node, $db, $version) = @_;
	my $fresh = 'fresh_' . ($version =~ s/\./_/gr);
	$node->safe_psql('postgres', "CREATE DATABASE $fresh");
	$node->safe_psql($fresh, "CREATE EXTENSION payment VERSION '$version'");
	is($node->safe_psql($fresh, q{SELECT extversion FROM pg_extension WHERE extname = 'payment'}),
		$version, "a fresh CREATE EXTENSION payment VERSION '$version' installs $version");
	my %objects;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	for my $d ($db, $fresh)
	{
		$node->command_ok([ 'pg_dump', '--schema-only', '--binary-upgrade', '-f', "$dir/$d.sql", $d ],
			"pg_dump --schema-only --binary-upgrade $d");
		$objects{$d} = join "\n", map {
			s/(binary_upgrade_create_empty_extension\('payment', 'public', false, '[^']*', )'\{[0-9,]*\}'/$1'{oids}'/r
		} grep {
			!/^\\(un)?restrict|binary_upgrade_set_next_|relfrozenxid|^WHERE oid = |pg_catalog\.setval\(/
		} split /\n/, slurp_file("$dir/$d.sql");
	}
	cmp_ok(scalar(() = $objects{$fresh} =~ /^ALTER EXTENSION payment ADD /mg), '>=', 20,
		'the dump lists the extension\'s members');
	is($objects{$db}, $objects{$fresh}, "$db updated to $version and a fresh $version have the same objects");
}

# Workers stop (on) or resume (off) draining: a reload waited for
# (PaymentNode::reload_with), then a second more: a worker takes the SIGHUP
# only after the batch it is storing, and no view shows when it has.
sub set_paused
{
	my ($node, $on) = @_;
	reload_with($node, 'payment.paused' => $on ? 'on' : 'off');
	sleep 1;
}

# Fills every user table of $db (served by the workers) with data the way
# users make it; asserts each step.  Payment ids 1 .. 20 are stored, 1 is
# also dead-lettered as a conflict, a non-JSON message is dead-lettered as
# invalid, and 101 .. 105 are left queued with the workers paused (they stay
# paused on return).  Returns the plain-text API key created.
sub populate
{
	my ($node, $db, $what) = @_;

	$node->safe_psql($db, 'SELECT count(submit_payment(d::jsonb)) FROM (VALUES '
		  . join(', ', map { "('" . payment_doc($_) . "')" } 1 .. 20) . ') AS v(d)');
	ok($node->poll_query_until($db, 'SELECT count(*) = 20 FROM payment.payments'),
		"$what: 20 submitted payments stored by the workers");
	is($node->safe_psql($db, q{SELECT payment_status('aaaaaaaa-0000-4000-8000-000000000020') ->> 'status'}),
		'stored', "$what: payment_status reports stored");

	# dead letters from another producer: the same key with another body
	# (which the front door refuses from 1.2 on), and a message that is not JSON
	$node->safe_psql($db, "INSERT INTO payment.queue (body) VALUES ('" . payment_doc(1, '8.50') . "')");
	$node->safe_psql($db, q{INSERT INTO payment.queue (body) VALUES ('this is not JSON')});
	ok($node->poll_query_until($db, q{
SELECT count(*) = 2 AND count(*) FILTER (WHERE reason = 'conflict') = 1
   AND count(*) FILTER (WHERE reason = 'invalid') = 1
  FROM payment.dead_letters}), "$what: a conflict and an invalid message dead-lettered");
	ok($node->poll_query_until($db, 'SELECT count(*) = 0 FROM payment.queue'),
		"$what: the queue drained");

	my $key = $node->safe_psql($db, q{SELECT create_api_key('partner', 5, 10, 1000, '7 days')});
	like($key, qr/^pay_/, "$what: an API key created");
	$node->safe_psql($db, q{SELECT create_api_key('leaver'); SELECT revoke_api_key('leaver')});
	$node->safe_psql($db, qq{
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'support') THEN CREATE ROLE support; END IF;
END \$\$;
INSERT INTO payment.reader_users (role_name, user_id) VALUES ('support', '$USER');});

	# queued messages: the workers paused first, so that they stay queued
	set_paused($node, 1);
	$node->safe_psql($db, 'SELECT count(submit_payment(d::jsonb)) FROM (VALUES '
		  . join(', ', map { "('" . payment_doc($_) . "')" } 101 .. 105) . ') AS v(d)');
	# deliberate: a second in which the paused workers must not receive them
	sleep 1;
	is($node->safe_psql($db, 'SELECT count(*) || \' \' || sum(receive_count) FROM payment.queue'),
		'5 0', "$what: 5 payments queued, none received, with the workers paused");
	return $key;
}

1;
