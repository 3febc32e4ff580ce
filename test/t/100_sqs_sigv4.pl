# The extension's SigV4 signer (src/queue/sigv4.c, called through the library's
# test hook payment_sigv4_test_sign) against AWS's published SigV4 test
# vectors, test/sqs/sigv4-vectors.json.
use strict;
use warnings;

use Encode qw(encode_utf8);
use File::Basename qw(dirname);
use FindBin;
use lib $FindBin::RealBin;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;

use PaymentNode;

my $root = dirname(__FILE__) . '/../..';
my $suite = decode_json(slurp_file("$root/test/sqs/sigv4-vectors.json"));

my $node = new_payment_node('sigv4', extension => undef, settings => { 'payment.workers' => 0 });

# The hook is not part of the extension's SQL; the test declares it.
$node->safe_psql('postgres', q{
	CREATE FUNCTION sigv4_test_sign(method text, path text, query text,
		headers text[], payload text, amz_date text, region text,
		service text, key_id text, secret text)
	RETURNS text AS 'payment', 'payment_sigv4_test_sign' LANGUAGE C STRICT;
});

sub lit { my $s = encode_utf8(shift); return '$v$' . $s . '$v$'; }

sub sign
{
	my ($v) = @_;
	my $headers = 'ARRAY[' . join(',', map { lit($_) } @{ $v->{headers} }) . ']::text[]';
	return $node->safe_psql('postgres',
		sprintf('SELECT sigv4_test_sign(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)',
			lit($v->{method}), lit($v->{path}), lit($v->{query}), $headers,
			lit($v->{body}), lit($suite->{amz_date}), lit($suite->{region}),
			lit($suite->{service}), lit($suite->{access_key_id}),
			lit($suite->{secret_access_key})));
}

for my $v (@{ $suite->{vectors} })
{
	my $expected = sprintf(
		'AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s',
		$suite->{access_key_id}, substr($suite->{amz_date}, 0, 8),
		$suite->{region}, $suite->{service}, $v->{signed_headers}, $v->{signature});
	is(sign($v), $expected, "AWS test vector $v->{name}");
}

# The order headers are given in does not matter; any byte of the payload does.
my ($form) = grep { $_->{name} eq 'post-x-www-form-urlencoded' } @{ $suite->{vectors} };
my %reversed = (%$form, headers => [ reverse @{ $form->{headers} } ]);
is(sign(\%reversed), sign($form), 'header order does not change the signature');
my %tampered = (%$form, body => 'Param1=value2');
isnt(sign(\%tampered), sign($form), 'a changed payload changes the signature');

$node->stop;
done_testing();
