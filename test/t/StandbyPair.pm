# StandbyPair.pm: primaries and streaming standbys for the failover tests
# (8xx): a preloaded primary that allows streaming (new_primary), a hot
# standby streaming from it from a fresh base backup (new_standby), a crash
# of every process of a server at once (crash), the lines a server logged
# since an offset (log_since), and the payment processes a server runs.
package StandbyPair;

use strict;
use warnings;
use Carp;
use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep);

use Chaos;
use PaymentNode qw(new_payment_node);

our @EXPORT = qw(new_primary new_standby crash log_since payment_processes);

# Settings a primary and its standbys share (the base backup copies them):
# connections and workers enough for the tests' clients, and a standby's
# max_worker_processes at least the primary's, as hot standby requires.
my %PAIR_SETTINGS = (
	max_connections => 40,
	shared_buffers => "'32MB'",
	max_worker_processes => 16,
	restart_after_crash => 'on',
	log_line_prefix => "'%m [%p] %b %e '");

# new_primary($name, settings => {...}, extension => ...): new_payment_node
# with allows_streaming (wal_level replica, wal_log_hints for pg_rewind)
sub new_primary
{
	my ($name, %opt) = @_;
	return new_payment_node($name, %opt, init => { allows_streaming => 1 },
		settings => { %PAIR_SETTINGS, %{ $opt{settings} // {} } });
}

# A hot standby named $name streaming from $primary (application_name $name,
# for synchronous_standby_names), from a base backup taken now, with
# %settings appended to what it copied; started, and caught up.
sub new_standby
{
	my ($primary, $name, %settings) = @_;
	my $backup = "for_$name";
	$primary->backup($backup);
	my $standby = PostgreSQL::Test::Cluster->new($name);
	$standby->init_from_backup($primary, $backup, has_streaming => 1);
	$standby->append_conf('postgresql.conf', PaymentNode::conf_lines(%settings)) if %settings;
	$standby->start;
	$primary->wait_for_catchup($name);
	return $standby;
}

# kill -9 of every process of $node's server at once (the postmaster and its
# children, as a machine failure leaves them): no process flushes anything
# afterwards.  Waits until they are gone; the node is then stopped.
sub crash
{
	my ($node) = @_;
	my $pm = Chaos::postmaster_pid({ node => $node }) or croak 'no postmaster to crash';
	my @all = ($pm, Chaos::children_of($pm));
	kill('KILL', @all);
	$node->kill9;
	for (1 .. 300)
	{
		last unless grep { Chaos::alive($_) } @all;
		usleep(20_000);
	}
	croak 'server processes survived kill -9' if grep { Chaos::alive($_) } @all;
	# a zombie postmaster keeps its pid "running": the lock files are stale
	unlink($node->data_dir . '/postmaster.pid', $node->host . '/.s.PGSQL.' . $node->port . '.lock');
	return;
}

# the server log of $node from byte $offset on
sub log_since
{
	my ($node, $offset) = @_;
	return substr(slurp_file($node->logfile), $offset);
}

# how many payment workers and launchers $node runs
sub payment_processes
{
	my ($node) = @_;
	return $node->safe_psql('postgres', q{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type IN ('payment worker', 'payment launcher')});
}

1;
