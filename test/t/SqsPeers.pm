# SqsPeers.pm: the real peers of the SQS TAP tests, on 127.0.0.1 only.
#
# Starts the fauxqs emulator and the SigV4-verifying proxy in front of it
# as child processes on free ports in 56000-56999, runs the AWS SDK
# producer, talks to the proxy's control port, and configures a
# PostgreSQL::Test::Cluster node to use them.  With faults => {...} a fault
# proxy (test/sqs/fault-proxy.mjs) sits between the SigV4 proxy and fauxqs,
# so that signatures are checked on what the client sent and faults are
# injected on what the emulator answers.
package SqsPeers;

use strict;
use warnings;

use Carp;
use File::Basename qw(dirname);
use Cwd qw(abs_path);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(usleep time);

use PostgreSQL::Test::Utils;

use PaymentNode;

my $root = abs_path(dirname(__FILE__) . '/../..');
my @all_peers;

# a free port on 127.0.0.1 in 56000-56999 (PaymentNode::free_port)
sub free_port
{
	return PaymentNode::free_port(56000);
}

sub random_word
{
	return join('', map { ('a' .. 'z', 0 .. 9)[ rand 36 ] } 1 .. shift);
}

# a fresh access key id for a test's workers
sub new_key_id
{
	return 'AKIDPAYMENT' . uc(random_word(9));
}

# keys for new(): the AWS SDK producer's (AKIDPRODUCER) and the workers' $key,
# with a random secret unless %creds (secret, token) give them
sub producer_and
{
	my ($key, %creds) = @_;
	return {
		AKIDPRODUCER => { secret => 'producer-' . random_word(20), producer => 1 },
		$key => { secret => 'sqs-secret-' . random_word(32), %creds },
	};
}

# wait until $check returns true, polling every 100 ms; false on timeout
sub wait_until
{
	my ($check, $timeout) = @_;
	my $deadline = time() + ($timeout // 60);
	while (time() < $deadline)
	{
		return 1 if $check->();
		usleep(100_000);
	}
	return 0;
}

# keys: { KEYID => { secret => ..., token => ... } }
sub new
{
	my ($class, %args) = @_;
	my $self = bless {
		region => $args{region} // 'us-east-1',
		keys => $args{keys},
		http => HTTP::Tiny->new(timeout => 30),
		logdir => $PostgreSQL::Test::Utils::log_path,
	}, $class;

	$self->{fauxqs_port} = free_port();
	$self->{proxy_port} = free_port();
	$self->{control_port} = free_port();
	$self->{endpoint} = "http://127.0.0.1:$self->{proxy_port}";

	my %proxy_keys = map {
		$_ => {
			secret => $args{keys}{$_}{secret},
			defined $args{keys}{$_}{token} ? (token => $args{keys}{$_}{token}) : ()
		}
	} keys %{ $args{keys} };

	$self->{fauxqs} = $self->_spawn('fauxqs',
		'test/sqs/fauxqs-server.mjs', '--port', $self->{fauxqs_port});
	wait_until(sub { $self->_get("http://127.0.0.1:$self->{fauxqs_port}/health") }, 30)
	  or croak "fauxqs did not start";
	my $upstream = "http://127.0.0.1:$self->{fauxqs_port}";

	# faults => { rate, seed, delay_ms, kinds => [...], keys => [...] }:
	# keys limits the faults to requests signed by those access keys
	if (my $f = $args{faults})
	{
		$self->{fault_port} = free_port();
		$self->{fault_control_port} = free_port();
		$self->{faultproxy} = $self->_spawn(
			'faults', 'test/sqs/fault-proxy.mjs',
			'--port', $self->{fault_port},
			'--control-port', $self->{fault_control_port},
			'--upstream', $upstream,
			'--rate', $f->{rate} // 0,
			'--seed', $f->{seed} // 1,
			'--delay-ms', $f->{delay_ms} // 5000,
			$f->{kinds} ? ('--kinds', join(',', @{ $f->{kinds} })) : (),
			'--fault-keys', join(',', @{ $f->{keys} // [] }));
		wait_until(sub { $self->_get("http://127.0.0.1:$self->{fault_control_port}/__stats") }, 30)
		  or croak "fault proxy did not start";
		$upstream = "http://127.0.0.1:$self->{fault_port}";
	}

	# latency_ms => N: a latency proxy between the SigV4 proxy and fauxqs;
	# latency_log => FILE: what it logs of receives and deletes (latency-proxy.mjs)
	if (defined $args{latency_ms})
	{
		$self->{latency_port} = free_port();
		$self->{latency_control_port} = free_port();
		$self->{latency} = $self->_spawn('latency', 'test/sqs/latency-proxy.mjs',
			'--port', $self->{latency_port},
			'--control-port', $self->{latency_control_port},
			'--upstream', $upstream, '--latency-ms', $args{latency_ms},
			defined $args{latency_log} ? ('--log', $args{latency_log}) : ());
		wait_until(sub { $self->_get("http://127.0.0.1:$self->{latency_control_port}/__stats") }, 30)
		  or croak "latency proxy did not start";
		$upstream = "http://127.0.0.1:$self->{latency_port}";
	}

	# a self-signed certificate for the proxy's HTTPS port: no client may trust it
	$self->{tls_port} = free_port();
	my $cert = "$self->{logdir}/proxy_cert.pem";
	my $certkey = "$self->{logdir}/proxy_key.pem";
	my ($o, $e);
	IPC::Run::run([ 'openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
			'-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
			'-days', '1', '-keyout', $certkey, '-out', $cert ],
		'<', \undef, '>', \$o, '2>', \$e)
	  or croak "openssl: $e";

	$self->{proxy} = $self->_spawn(
		'proxy', 'test/sqs/sigv4-proxy.mjs',
		'--tls-port', $self->{tls_port}, '--tls-cert', $cert, '--tls-key', $certkey,
		'--port', $self->{proxy_port},
		'--control-port', $self->{control_port},
		'--upstream', $upstream,
		'--region', $self->{region},
		'--keys', encode_json(\%proxy_keys));
	wait_until(sub { $self->_get("http://127.0.0.1:$self->{control_port}/__stats") }, 30)
	  or croak "proxy did not start";

	push @all_peers, $self;
	return $self;
}

sub _spawn
{
	my ($self, $name, @args) = @_;
	my $log = "$self->{logdir}/peer_$name.log";
	return IPC::Run::start([ 'node', '--no-warnings', "$root/$args[0]", @args[ 1 .. $#args ] ],
		'<', \undef, '>>', $log, '2>>', $log);
}

sub _get
{
	my ($self, $url) = @_;
	my $r = $self->{http}->get($url);
	return $r->{success} ? $r->{content} : undef;
}

sub endpoint { return $_[0]->{endpoint}; }

# the same proxy over HTTPS, with an untrusted self-signed certificate
sub tls_endpoint { return "https://127.0.0.1:$_[0]->{tls_port}"; }

# POST to the proxy's control port, e.g. control('/__slow?ms=100')
sub control
{
	my ($self, $path) = @_;
	my $r = $self->{http}->post("http://127.0.0.1:$self->{control_port}$path");
	croak "control $path failed: $r->{status}" unless $r->{success};
	return decode_json($r->{content});
}

# the latency proxy's controls (needs latency_ms at construction):
# set_latency(ms), set_max_receive(n); each returns its stats
sub _latency_control
{
	my ($self, $path) = @_;
	my $r = $self->{http}->post("http://127.0.0.1:$self->{latency_control_port}$path");
	croak "latency control $path failed: $r->{status}" unless $r->{success};
	return decode_json($r->{content});
}
sub set_latency { return $_[0]->_latency_control("/__latency?ms=$_[1]"); }
sub set_max_receive { return $_[0]->_latency_control("/__max_receive?n=$_[1]"); }

# the fault proxy: POST /__config?rate=...; its counters
sub faults_config
{
	my ($self, %set) = @_;
	my $q = join('&', map { "$_=$set{$_}" } sort keys %set);
	my $r = $self->{http}->post("http://127.0.0.1:$self->{fault_control_port}/__config?$q");
	croak "fault proxy config failed: $r->{status}" unless $r->{success};
	return decode_json($r->{content});
}

sub fault_stats
{
	my ($self) = @_;
	return decode_json($self->_get("http://127.0.0.1:$self->{fault_control_port}/__stats"));
}

sub stats
{
	my ($self) = @_;
	return decode_json($self->_get("http://127.0.0.1:$self->{control_port}/__stats"));
}

# Run producer.mjs through the proxy with the producer's key; decoded JSON.
sub producer
{
	my ($self, $command, %opts) = @_;
	my ($key) = grep { $self->{keys}{$_}{producer} } keys %{ $self->{keys} };
	croak "no producer key" unless $key;
	my @cmd = (
		'node', '--no-warnings', "$root/test/sqs/producer.mjs", $command,
		'--endpoint', $self->{endpoint}, '--region', $self->{region},
		map { ("--$_", $opts{$_}) } sort keys %opts);
	my ($out, $err);
	local $ENV{AWS_ACCESS_KEY_ID} = $key;
	local $ENV{AWS_SECRET_ACCESS_KEY} = $self->{keys}{$key}{secret};
	local $ENV{AWS_SESSION_TOKEN};
	delete $ENV{AWS_SESSION_TOKEN};
	$ENV{AWS_SESSION_TOKEN} = $self->{keys}{$key}{token} if defined $self->{keys}{$key}{token};
	IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err)
	  or croak "producer $command failed: $err";
	return decode_json($out);
}

sub create_queue
{
	my ($self, $name, $visibility) = @_;
	$self->{queue_url} =
	  $self->producer('create', queue => $name, visibility => $visibility // 30)->{queueUrl};
	return $self->{queue_url};
}

sub queue_url { return $_[0]->{queue_url}; }

# visible + in flight + delayed, by the SDK's GetQueueAttributes
sub queue_counts
{
	my ($self) = @_;
	return $self->producer('count', 'queue-url' => $self->{queue_url});
}

# no message visible, in flight or delayed (GetQueueAttributes)
sub queue_empty
{
	my ($self) = @_;
	my $c = $self->queue_counts;
	return $c->{visible} + $c->{in_flight} + $c->{delayed} == 0;
}

# true once the queue is empty, false after $seconds
sub wait_queue_empty
{
	my ($self, $seconds) = @_;
	return wait_until(sub { $self->queue_empty }, $seconds);
}

# The settings (name => value as written in postgresql.conf) that point a
# node at the proxy and this queue, signing with $key (none: the node finds
# its credentials itself).
sub node_settings
{
	my ($self, $key) = @_;
	return (
		'payment.queue_url' => "'$self->{queue_url}'",
		'payment.sqs_endpoint' => "'$self->{endpoint}'",
		'payment.aws_region' => "'$self->{region}'",
		defined $key
		? (
			'payment.aws_access_key_id' => "'$key'",
			'payment.aws_secret_access_key' => "'$self->{keys}{$key}{secret}'",
			defined $self->{keys}{$key}{token}
			? ('payment.aws_session_token' => "'$self->{keys}{$key}{token}'")
			: ())
		: ());
}

# A started cluster named $name whose workers use this queue, signing as $key,
# with the given extra settings (which override node_settings) and the
# extension created (PaymentNode::new_payment_node).  With
# PAYMENT_TEST_WORKER_ROLE set, the workers connect as that role, a LOGIN
# role with only what payment.grant_worker_privileges gives it.
sub start_node
{
	my ($self, $name, $key, %settings) = @_;
	my $node = new_payment_node($name, settings => { $self->node_settings($key), %settings });
	my $role = $ENV{PAYMENT_TEST_WORKER_ROLE};
	if ($role)
	{
		$node->safe_psql('postgres',
			qq{CREATE ROLE "$role" LOGIN; SELECT payment.grant_worker_privileges('$role')});
		$node->append_conf('postgresql.conf', "payment.worker_role = '$role'\n");
		$node->restart;
		wait_until(sub {
			$node->safe_psql('postgres', qq{SELECT count(*) > 0 AND bool_and(usename = '$role')
			  FROM pg_stat_activity WHERE backend_type = 'payment worker'}) eq 't' }, 30)
		  or croak "the payment workers did not connect as $role";
	}
	return $node;
}

sub stop
{
	my ($self) = @_;
	for my $h (grep { defined } @{$self}{qw(proxy latency faultproxy fauxqs)})
	{
		eval { $h->signal('TERM'); $h->finish; 1 } or eval { $h->kill_kill };
	}
	delete @{$self}{qw(proxy latency faultproxy fauxqs)};
}

END
{
	$_->stop for @all_peers;
}

1;
