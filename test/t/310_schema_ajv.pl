# Differential test: validate_json against ajv (with ajv-draft-04) on 2,000
# documents generated from a seeded PRNG for four schemas (a strict payment
# schema, tuples, combinators with dependencies and patternProperties, a
# recursive tree).  Every verdict must agree.  See test/schema/ajv-verdicts.mjs
# for the two settings that keep ajv to the specification (no formats,
# multipleOfPrecision).
use strict;
use warnings;
use File::Basename;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $root = dirname(__FILE__) . '/../..';
my $count = 2000;
my $json = `node $root/test/schema/ajv-verdicts.mjs $count 20261125`;
is($?, 0, 'ajv produced its verdicts');
die 'the generated JSON holds the quoting tag' if $json =~ /\$ajv\$/;

my $node = PostgreSQL::Test::Cluster->new('ajv');
$node->init;
$node->start;
$node->safe_psql('postgres', qq{
CREATE EXTENSION payment;
CREATE TABLE run AS SELECT \$ajv\$$json\$ajv\$::jsonb AS j;
CREATE TABLE cases AS
  SELECT n, (c ->> 'schema')::int AS s, c -> 'doc' AS doc, (c ->> 'valid')::bool AS ajv
    FROM run, jsonb_array_elements(j -> 'cases') WITH ORDINALITY AS t(c, n);
});

is($node->safe_psql('postgres', 'SELECT count(*) FROM cases'), $count, "$count documents");
my ($valid, $invalid) = split /\|/, $node->safe_psql('postgres',
	'SELECT count(*) FILTER (WHERE ajv), count(*) FILTER (WHERE NOT ajv) FROM cases');
cmp_ok($valid, '>=', $count / 5, "ajv accepts many ($valid)");
cmp_ok($invalid, '>=', $count / 5, "and refuses many ($invalid)");

my $disagree = $node->safe_psql('postgres', q{
SELECT n || ' schema ' || s || ' ajv ' || ajv || ': ' || doc::text
  FROM cases, run
 WHERE (validate_json(doc, j -> 'schemas' -> s) ->> 'valid')::bool IS DISTINCT FROM ajv
 ORDER BY n});
diag("disagreement: $_") for grep { length } split /\n/, $disagree;
is($disagree, '', 'validate_json agrees with ajv on every document');

$node->stop;
done_testing();
