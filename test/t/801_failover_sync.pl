# Failover to a synchronous standby and back (issue 20).  Four clients
# submit concurrently (Chaos.pm: only an OK printed by psql counts); the
# primary is killed (kill -9 of every process) mid-load and the standby
# promoted: every acknowledged payment is stored exactly once on it, its
# workers having started by themselves.  Then the old primary is rewound
# (pg_rewind) into a standby of the new one, the roles are switched back
# by a clean switchover, the clients finish on it, and again: every
# payment stored once, nothing dead-lettered, the queue empty.
use strict;
use warnings;

use FindBin;
use IPC::Run;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use Chaos;
use PaymentNode qw(reload_with);
use StandbyPair;

my $n = $ENV{PAYMENT_LONG} ? 20000 : 2000;
my $primary = new_primary('alpha', settings => { 'payment.visibility_timeout' => 2,
	# pg_rewind reads alpha's WAL back to the last checkpoint before the divergence
	wal_keep_size => "'256MB'",
	log_statement => 'none' });
my $standby = new_standby($primary, 'beta');
reload_with($primary, synchronous_standby_names => "'beta'");
is($primary->safe_psql('postgres', q{SELECT sync_state FROM pg_stat_replication WHERE application_name = 'beta'}),
	'sync', 'beta is a synchronous standby');

sub check_stored
{
	my ($node, $ids, $what) = @_;
	my $list = join(',', map { "'$_'" } @$ids);
	ok($node->poll_query_until('postgres',
			"SELECT count(*) = " . scalar(@$ids) . " FROM payment.payments WHERE payment_id IN ($list)"),
		"$what: every acknowledged payment stored (" . scalar(@$ids) . ')');
	is($node->safe_psql('postgres', 'SELECT count(*) - count(DISTINCT payment_id) FROM payment.payments'), '0',
		"$what: none stored twice");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.dead_letters'), '0',
		"$what: nothing dead-lettered");
}

# --- load, then kill -9 of the primary
my $chaos = Chaos->new(node => $primary, n => $n, clients => 4, seed => 20);
while ($chaos->step_clients)
{
	last if $chaos->progress >= $n / 2;
	usleep(20_000);
}
crash($primary);
$chaos->reap_all;
my $acked = $chaos->accepted_ids;
note(scalar(@$acked) . " of $n acknowledged at the crash");
cmp_ok(scalar(@$acked), '>', 0, 'payments were acknowledged before the crash');
cmp_ok(scalar(@$acked), '<', $n, 'the crash came mid-load');

$standby->promote;
ok($standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'beta promoted');
check_stored($standby, $acked, 'after failover');
ok($standby->poll_query_until('postgres', 'SELECT count(*) = 0 FROM payment.queue'), 'after failover: queue drained');

# --- rewind alpha into a standby of beta
$standby->safe_psql('postgres', 'CHECKPOINT');
# a synchronous standby named beta would hold alpha's commits once it is primary again
$primary->append_conf('postgresql.conf', "synchronous_standby_names = ''\n");
# pg_rewind copies beta's configuration files over alpha's: keep alpha's
my $conf = $primary->data_dir . '/postgresql.conf';
my $kept_conf = slurp_file($conf);
my $rewind_log = "$PostgreSQL::Test::Utils::tmp_check/rewind.log";
my $rewound = IPC::Run::run([ 'pg_rewind', '-D', $primary->data_dir,
		'--source-server', $standby->connstr('postgres') ],
	'<', \undef, '>', $rewind_log, '2>&1');
ok($rewound, 'pg_rewind of alpha onto beta') or diag slurp_file($rewind_log);
open my $fh, '>', $conf or die $!;
print $fh $kept_conf;
close $fh;
# as a standby of beta, known to it as alpha
$primary->append_conf('postgresql.conf',
	"primary_conninfo = '" . $standby->connstr . " application_name=alpha'\n");
$primary->set_standby_mode;
$primary->start;
$standby->wait_for_catchup('alpha');
ok($primary->safe_psql('postgres', 'SELECT pg_is_in_recovery()') eq 't', 'alpha streams from beta');
is(payment_processes($primary), '0', 'no payment process on alpha while it is a standby');

# --- clean switchover back to alpha
$standby->stop('fast');
$primary->promote;
ok($primary->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'alpha promoted again');
check_stored($primary, $acked, 'after switching back');

# the clients finish on alpha (resubmitting what was not acknowledged)
my $t0 = time();
while ($chaos->step_clients)
{
	die 'clients did not finish' if time() - $t0 > 120;
	usleep(20_000);
}
is($chaos->accepted_count, $n, "all $n payments acknowledged in the end");
check_stored($primary, $chaos->accepted_ids, 'at the end');
ok($primary->poll_query_until('postgres', 'SELECT count(*) = 0 FROM payment.queue'), 'at the end: queue drained');

$primary->stop;
done_testing();
