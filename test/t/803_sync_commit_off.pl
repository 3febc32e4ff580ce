# Acknowledged means durable (issue 20): a client with synchronous_commit =
# off submits N payments, one per transaction, and the server is killed
# (kill -9 of every process at once) right after its last OK: after the
# restart every acknowledged payment is there (queued or stored).  The
# front door raises the transaction's synchronous_commit to local (to on
# when synchronous_standby_names is set) once it enqueued into the embedded
# queue, and keeps a level the caller chose at local or above.
#
# Without the raise this fails: the asynchronous commits of the last WAL
# page are only in memory when the server dies (wal_writer_delay is long
# here, and the workers are paused, so that no synchronous commit flushes
# them by chance).
use strict;
use warnings;

use FindBin;
use IPC::Run;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;

use Chaos;
use PaymentNode qw(new_payment_node reload_with);
use StandbyPair;

my $n = $ENV{PAYMENT_LONG} ? 3000 : 300;
my $node = new_payment_node('synccommit', settings => {
	'payment.paused' => 'on',
	wal_writer_delay => "'10s'",
	restart_after_crash => 'on',
	log_statement => 'none' });

my $doc = q{jsonb_build_object('paymentId', gen_random_uuid(), 'userId', gen_random_uuid(),
  'dateTimestamp', '1709553600', 'description', 'level', 'currency', 'GBP', 'amount', 1)};

# the level a transaction commits at, once it submitted, for the caller's
# level and synchronous_standby_names (PGC_SIGHUP: set in the file)
sub level_after_file
{
	my ($caller, $standbys) = @_;
	reload_with($node, synchronous_standby_names => "'$standbys'");
	return $node->safe_psql('postgres', qq{
BEGIN;
SET LOCAL synchronous_commit = $caller;
SELECT submit_payment($doc) IS NULL;
SHOW synchronous_commit;
ROLLBACK;});
}
is(level_after_file('off', 'nosuchstandby'), "f\non", 'off is raised to on with synchronous standbys named');
is(level_after_file('local', 'nosuchstandby'), "f\nlocal", 'local is kept');
is(level_after_file('remote_write', ''), "f\nremote_write", 'remote_write is kept');
is(level_after_file('off', ''), "f\nlocal", 'off is raised to local');
is($node->safe_psql('postgres', qq{
BEGIN; SET LOCAL synchronous_commit = off;
SELECT submit_payment($doc) IS NULL; ROLLBACK;
SET synchronous_commit = off; SELECT 1; SHOW synchronous_commit}), "f\n1\noff",
	'the raise ends with the transaction');

# the client: one payment per transaction, synchronous_commit off
my $dir = "$PostgreSQL::Test::Utils::tmp_check/synccommit";
mkdir $dir;
open my $fh, '>', "$dir/client.sql" or die $!;
print $fh "SET synchronous_commit = off;\n";
my @ids = map { Chaos::uuid() } 1 .. $n;
for my $i (0 .. $#ids)
{
	print $fh "SELECT 'ACK $ids[$i] ' || (submit_payment('" . Chaos::payload($ids[$i], $i) . "'::jsonb) ->> 'message');\n";
}
close $fh;
my $out = '';
IPC::Run::run([ 'psql', '-X', '-A', '-t', '-q', '-d', $node->connstr('postgres'), '-f', "$dir/client.sql" ],
	'<', \undef, '>', \$out, '2>', \my $err);
# at once: kill -9 of every process of the server
crash($node);
my @acked = map { /^ACK (\S+) OK$/ ? $1 : () } split /\n/, $out;
is(scalar(@acked), $n, "the client got $n OKs") or diag $err;
$node->start;

my $list = join(',', map { "'$_'" } @acked);
my $present = $node->safe_psql('postgres', qq{
SELECT count(DISTINCT payment_id) FROM (
  SELECT payment_id FROM payment.queue UNION ALL SELECT payment_id FROM payment.payments) q
 WHERE payment_id IN ($list)});
is($present, scalar(@acked), 'every acknowledged payment survived the kill -9 (queued or stored)');

reload_with($node, 'payment.paused' => 'off');
ok($node->poll_query_until('postgres', "SELECT count(*) = $n FROM payment.payments WHERE payment_id IN ($list)"),
	'and all are stored once the workers run');

$node->stop;
done_testing();
