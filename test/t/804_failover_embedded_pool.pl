# A failover in the middle of an embedded drain under the elastic pool
# (issue 20): a backlog drained by a pool grown past payment.workers, kill -9
# of every primary process mid-drain, promote the synchronous standby: all
# stored exactly once on it, nothing dead-lettered, the queue empty; the
# batches the old primary had claimed come back after their visibility
# timeout, counted once.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use PaymentNode qw(payment_sql reload_with);
use StandbyPair;

my $n = $ENV{PAYMENT_LONG} ? 200000 : 30000;
my $primary = new_primary('pool_alpha', settings => {
	'payment.workers' => 1,
	'payment.max_workers' => 4,
	'payment.scale_up_after' => "'100ms'",
	'payment.batch_size' => 50,
	'payment.visibility_timeout' => 2,
	'payment.max_batch_payments' => $n,
	'payment.paused' => 'on',
	log_statement => 'none' });
# slow each insert a little, so that the pool grows and the crash lands mid-drain
$primary->safe_psql('postgres', q{
CREATE FUNCTION slow_store() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN PERFORM pg_sleep(0.0002); RETURN NEW; END $$;
CREATE TRIGGER slow_store BEFORE INSERT ON payment.payments
  FOR EACH ROW EXECUTE FUNCTION slow_store();
});
my $standby = new_standby($primary, 'pool_beta', 'payment.paused' => 'off');
reload_with($primary, synchronous_standby_names => "'pool_beta'");

my $doc = payment_sql('pool', 'pool failover');
$primary->safe_psql('postgres', "SELECT submit_payments(jsonb_agg($doc)) FROM generate_series(1, $n) i");
reload_with($primary, 'payment.paused' => 'off');
ok($primary->poll_query_until('postgres', q{
SELECT count(*) > 1 FROM pg_stat_activity WHERE backend_type = 'payment worker'}),
	'the pool grows for the backlog');
my $stored = 0;
for (1 .. 600)
{
	$stored = $primary->safe_psql('postgres', 'SELECT count(*) FROM payment.payments');
	last if $stored >= $n / 5;
	usleep(50_000);
}
crash($primary);
cmp_ok($stored, '<', $n, "the primary killed mid-drain ($stored of $n stored)");

$standby->promote;
ok($standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'standby promoted');
ok($standby->poll_query_until('postgres', qq{
SELECT count(*) = $n FROM payment.payments WHERE description LIKE 'pool failover %'}),
	"all $n stored on the new primary");
is($standby->safe_psql('postgres', 'SELECT count(*) - count(DISTINCT payment_id) FROM payment.payments'), '0',
	'none stored twice');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM payment.dead_letters'), '0', 'nothing dead-lettered');
ok($standby->poll_query_until('postgres', 'SELECT count(*) = 0 FROM payment.queue'), 'the queue drained');

$standby->stop;
done_testing();
