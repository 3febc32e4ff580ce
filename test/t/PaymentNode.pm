# PaymentNode.pm: what nearly every TAP test here starts from: a cluster
# with the payment library preloaded (new_payment_node), settings changed by
# a reload that is waited for (reload_with), free loopback ports for its
# peers (free_port), and payments generated in SQL (payment_sql,
# enqueue_directly).  The other helpers build on it: ReleaseHelper's
# new_release_node, AuthHelper's new_auth_node, SqsPeers' start_node.
package PaymentNode;

use strict;
use warnings;
use Carp;
use Exporter 'import';
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;

our @EXPORT = qw(new_payment_node);
our @EXPORT_OK = qw(reload_with free_port payment_sql enqueue_directly);

# What every node gets unless its test overrides it: the library preloaded
# and the workers' defaults spelled out.
my %DEFAULT_SETTINGS = (
	shared_preload_libraries => "'payment'",
	'payment.database' => "'postgres'",
	'payment.workers' => 2);

# postgresql.conf lines for settings given as name => value
sub conf_lines
{
	my (%settings) = @_;
	return join('', map { "$_ = $settings{$_}\n" } sort keys %settings);
}

# A started cluster named $name with the library preloaded.  Options:
#   settings  => { name => value as written in postgresql.conf }, added to
#                or overriding %DEFAULT_SETTINGS;
#   conf      => more postgresql.conf text, written after the settings;
#   extension => the database to CREATE EXTENSION payment in ('postgres'
#                unless given; undef: none);
#   port      => the port (PostgreSQL::Test::Cluster's choice otherwise);
#   init      => { parameters of PostgreSQL::Test::Cluster's init }, e.g.
#                allows_streaming => 1 for a primary with standbys.
sub new_payment_node
{
	my ($name, %opt) = @_;
	my %settings = (%DEFAULT_SETTINGS, %{ $opt{settings} // {} });
	my $db = exists $opt{extension} ? $opt{extension} : 'postgres';
	my $node = PostgreSQL::Test::Cluster->new($name,
		defined $opt{port} ? (port => $opt{port}) : ());
	$node->init(%{ $opt{init} // {} });
	$node->append_conf('postgresql.conf', conf_lines(%settings) . ($opt{conf} // ''));
	$node->start;
	$node->safe_psql($db, 'CREATE EXTENSION payment') if defined $db;
	return $node;
}

# Appends %settings (name => value as written in postgresql.conf) to $node's
# postgresql.conf, reloads, and waits until a new session sees every one:
# then the postmaster has re-read the file and signalled the workers, which
# take the change at their next loop (at once when idle, after the batch or
# the receive they are in otherwise).
sub reload_with
{
	my ($node, %settings) = @_;
	$node->append_conf('postgresql.conf', conf_lines(%settings));
	$node->reload;
	my $seen = join(' AND ', map {
			my $value = $settings{$_} =~ s/^'(.*)'$/$1/r;
			"current_setting('$_') = '$value'"
		} sort keys %settings);
	$node->poll_query_until('postgres', "SELECT $seen")
	  or croak "reload of @{[ sort keys %settings ]} not seen";
	return;
}

# A TCP port on 127.0.0.1 in $first .. $first + 999 that nothing listens on,
# never the same twice in one test (the peer it is for may not listen yet).
my %used_ports;

sub free_port
{
	my ($first) = @_;
	for (1 .. 200)
	{
		my $port = $first + int(rand(1000));
		next if $used_ports{$port};
		my $sock = IO::Socket::INET->new(
			LocalAddr => '127.0.0.1',
			LocalPort => $port,
			Proto => 'tcp',
			Listen => 1,
			ReuseAddr => 1);
		next unless $sock;
		close($sock);
		$used_ports{$port} = 1;
		return $port;
	}
	croak sprintf('no free port in %d-%d', $first, $first + 999);
}

# SQL for payment i of a generate_series(...) AS i, as jsonb: payment and
# user ids md5("${tag}p" || i) and md5("${tag}u" || i) (a test finds them
# again; another $tag makes other payments), description "$description i",
# amount i.
sub payment_sql
{
	my ($tag, $description) = @_;
	return qq{jsonb_build_object('paymentId', md5('${tag}p' || i)::uuid, 'userId', md5('${tag}u' || i)::uuid,
  'dateTimestamp', '1709553600', 'description', '$description ' || i, 'currency', 'GBP', 'amount', i)};
}

# Payments 1 .. $n of payment_sql($tag, $description) written straight into
# payment.queue of database $db (default postgres), as another producer
# would: one statement, so the whole backlog appears at once.
sub enqueue_directly
{
	my ($node, $n, $tag, $description, $db) = @_;
	my $doc = payment_sql($tag, $description);
	$node->safe_psql($db // 'postgres', qq{
INSERT INTO payment.queue (payment_id, user_id, body)
SELECT (d ->> 'paymentId')::uuid, (d ->> 'userId')::uuid, d::text
  FROM generate_series(1, $n) AS i, LATERAL (SELECT $doc AS d) k});
}

1;
