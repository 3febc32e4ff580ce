# Where the SQS backend's credentials and region come from when the
# payment.aws_* settings are unset: the server's environment, then the
# shared credentials file (AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE), which
# is re-read per request so rotated keys work without a restart.  Every
# request is checked by the SigV4-verifying proxy, which knows which key
# signed it.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;

use PaymentNode;
use SqsPeers;

my %key;
my %secret;
for my $k (qw(env file rotated))
{
	$key{$k} = 'AKID' . uc($k) . uc(SqsPeers::random_word(8));
	$secret{$k} = "$k-secret-" . SqsPeers::random_word(32);
}
my $env_token = 'env-token-' . SqsPeers::random_word(40);
my $peers = SqsPeers->new(
	keys => {
		AKIDPRODUCER => { secret => 'producer-' . SqsPeers::random_word(20), producer => 1 },
		$key{env} => { secret => $secret{env}, token => $env_token },
		$key{file} => { secret => $secret{file} },
		$key{rotated} => { secret => $secret{rotated} },
	});
my $queue_url = $peers->create_queue('payments', 30);

my $node;

my $payment = encode_json({
	paymentId => '2d5a8218-3c6a-436e-b724-8dff12e7010d',
	userId => '0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4',
	amount => 7.99, currency => 'GBP', description => 'Netflix',
	dateTimestamp => '1709553600' });
# a fresh payment each time: a retry of the same one is answered without a send
my $submit = "SELECT submit_payment(jsonb_set('$payment', '{paymentId}',"
  . " to_jsonb(gen_random_uuid()::text)))::jsonb ? 'messageId'";

sub try_submit
{
	my ($stdout, $stderr);
	$node->psql('postgres', "\\set VERBOSITY verbose\n$submit",
		stdout => \$stdout, stderr => \$stderr);
	return ($stdout // '', $stderr // '');
}

sub accepted_for { return $peers->stats->{byKey}{ shift() }{accepted} // 0; }

delete $ENV{$_} for qw(AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
  AWS_REGION AWS_DEFAULT_REGION AWS_PROFILE AWS_SHARED_CREDENTIALS_FILE AWS_CONFIG_FILE);

### the server's environment, with a session token and the region
{
	local $ENV{AWS_ACCESS_KEY_ID} = $key{env};
	local $ENV{AWS_SECRET_ACCESS_KEY} = $secret{env};
	local $ENV{AWS_SESSION_TOKEN} = $env_token;
	local $ENV{AWS_REGION} = 'us-east-1';
	local $ENV{AWS_SHARED_CREDENTIALS_FILE} = '/nonexistent/credentials';
	# no payment.aws_* settings, not even the region
	$node = new_payment_node('sqs_credentials', settings => {
		'payment.workers' => 0,
		'payment.queue_url' => "'$queue_url'",
		'payment.sqs_endpoint' => "'" . $peers->endpoint . "'",
		'payment.http_timeout' => "'5s'" });
}
my ($out, $err) = try_submit();
is($out, 't', 'credentials and region from the environment') or diag($err);
cmp_ok(accepted_for($key{env}), '>', 0, 'the request was signed with the environment key and token');
$node->stop;

### the shared credentials file, profile from AWS_PROFILE
my $file = "${PostgreSQL::Test::Utils::tmp_check}/aws_credentials";
sub write_credentials
{
	my ($k) = @_;
	open(my $fh, '>', $file) or die $!;
	print $fh "# test credentials\n[default]\naws_access_key_id = AKIDWRONG\n"
	  . "aws_secret_access_key = wrong\n\n[payments]\n"
	  . "aws_access_key_id = $key{$k}\naws_secret_access_key = $secret{$k}\nregion = us-east-1\n";
	close($fh);
	chmod 0600, $file;
}
write_credentials('file');
{
	local $ENV{AWS_SHARED_CREDENTIALS_FILE} = $file;
	local $ENV{AWS_PROFILE} = 'payments';
	$node->start;
}
($out, $err) = try_submit();
is($out, 't', 'credentials and region from the shared credentials file') or diag($err);
cmp_ok(accepted_for($key{file}), '>', 0, 'signed with the key of profile "payments"');
is($peers->stats->{byKey}{AKIDWRONG}, undef, 'not with the default profile');

write_credentials('rotated');
($out, $err) = try_submit();
is($out, 't', 'rotated credentials in the file work without a restart') or diag($err);
cmp_ok(accepted_for($key{rotated}), '>', 0, 'signed with the rotated key');
$node->stop;

### no credentials anywhere: a clear error, 28000
{
	local $ENV{AWS_SHARED_CREDENTIALS_FILE} = '/nonexistent/credentials';
	local $ENV{AWS_REGION} = 'us-east-1';
	$node->start;
}
($out, $err) = try_submit();
like($err, qr/ERROR:  28000: no AWS credentials found for the SQS backend/, 'no credentials: 28000');
like($err, qr{profile "default" of "/nonexistent/credentials"}, 'the error says where it looked');

# half the credentials in settings
$node->append_conf('postgresql.conf', "payment.aws_access_key_id = '$key{file}'\n");
$node->reload;
($out, $err) = try_submit();
like($err, qr/ERROR:  28000: incomplete AWS credentials in settings/, 'a key id without a secret: 28000');
$node->stop;

### no region anywhere
$node->append_conf('postgresql.conf', "payment.aws_access_key_id = ''\n");
{
	local $ENV{AWS_ACCESS_KEY_ID} = $key{env};
	local $ENV{AWS_SECRET_ACCESS_KEY} = $secret{env};
	local $ENV{AWS_SHARED_CREDENTIALS_FILE} = '/nonexistent/credentials';
	local $ENV{AWS_CONFIG_FILE} = '/nonexistent/config';
	$node->start;
}
($out, $err) = try_submit();
like($err, qr/ERROR:  22023: no AWS region configured/, 'no region: a clear error');
$node->stop;

is($peers->stats->{rejected}, 0, 'no request was rejected by the SigV4 verifier');
my $log = slurp_file($node->logfile);
for my $k (sort keys %secret)
{
	unlike($log, qr/\Q$secret{$k}\E/, "the $k secret is not in the server log");
}
unlike($log, qr/\Q$env_token\E/, 'the session token is not in the server log');

done_testing();
