# AuthHelper.pm: shared by the auth TAP tests (test/t/2*_auth_*.pl): a
# loopback JWKS server (test/auth/jwks-server.mjs), a preloaded cluster on a
# port in 57000-57999, and a way to run SQL and get back its SQLSTATE.
package AuthHelper;

use strict;
use warnings;
use Exporter 'import';
use HTTP::Tiny;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

use PaymentNode;

our @EXPORT = qw(free_port start_jwks mint new_auth_node sqlstate payload try_function);

# a free port on 127.0.0.1 in 57000-57999 (PaymentNode::free_port)
sub free_port
{
	return PaymentNode::free_port(57000);
}

# Start the JWKS server; returns a hash with port, issuer, audience, jwks_url.
# With $tls_dir (cert.pem, key.pem) it serves https.
sub start_jwks
{
	my ($tls_dir) = @_;
	my ($out, $err) = ('', '');
	my $port = free_port();
	my $h = IPC::Run::start([ 'node', 'test/auth/jwks-server.mjs', $port, $tls_dir // () ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(30));
	$h->pump until $out =~ /READY (\d+) (\S+) (\S+)\n/;
	my %s = (handle => $h, port => $1, issuer => $2, audience => $3);
	$s{jwks_url} = "$s{issuer}/.well-known/jwks.json";
	$s{base} = ($tls_dir ? 'https' : 'http') . "://127.0.0.1:$s{port}";
	return \%s;
}

sub mint
{
	my ($jwks, $case, $sub) = @_;
	my $url = "$jwks->{base}/mint?case=$case";
	$url .= "&sub=$sub" if defined $sub;
	my $res = HTTP::Tiny->new->get($url);
	die "mint $case: $res->{status} $res->{content}" unless $res->{success};
	return $res->{content};
}

# A cluster with the library preloaded, workers off (payments stay queued,
# which is all the front door needs), and statements not logged, so that the
# log shows only what the extension itself writes about credentials.
sub new_auth_node
{
	my ($name, $conf) = @_;
	return new_payment_node($name,
		port => free_port(),
		settings => {
			'payment.workers' => 0,
			log_statement => 'none',
			log_min_messages => 'info' },
		conf => $conf);
}

# Run SQL (as role $opts{role} if given); returns 'ok' or the SQLSTATE, and
# the output in list context.
sub sqlstate
{
	my ($node, $sql, %opts) = @_;
	my @extra = ('-v', 'VERBOSITY=verbose');
	push @extra, ('-U', $opts{role}) if $opts{role};
	my ($ret, $out, $err) = $node->psql('postgres', $sql, extra_params => \@extra);
	my $state = $err =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : ($ret == 0 ? 'ok' : "psql failed: $err");
	return wantarray ? ($state, $out, $err) : $state;
}

# A valid payment document for user $user.
sub payload
{
	my ($user, $payment) = @_;
	$payment //= sprintf('%08x-%04x-4%03x-8%03x-%012x',
		int(rand(2**32)), int(rand(2**16)), int(rand(2**12)), int(rand(2**12)), int(rand(2**48)));
	return qq({"paymentId": "$payment", "userId": "$user", "dateTimestamp": "1709553600", "description": "Regular payment", "currency": "GBP", "amount": 7.99});
}

# SQL creating pg_temp.try(credential): submits a fresh payment of $user with
# that credential and returns 'ok' or the SQLSTATE of the refusal
sub try_function
{
	my ($user) = @_;
	return q{CREATE FUNCTION pg_temp.try(c text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM submit_payment(jsonb_set('} . payload($user) . q{'::jsonb, '{paymentId}', to_jsonb(gen_random_uuid()::text)), c);
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE;
END $$;};
}

1;
