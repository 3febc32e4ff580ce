# A standby is a clean read-only replica (issue 20): submit_payment and
# submit_payments refuse at once with 25006 in words that say it is a
# standby; payment_status (stored, queued, unknown), validate_payment,
# validate_json and payment.stats work there; no payment worker or launcher
# runs and nothing is logged as an error over a few seconds; after
# promotion the pool starts by itself, without a restart, and stores both
# what was queued before and what is submitted after.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;

use PaymentNode qw(payment_sql reload_with);
use StandbyPair;

my $primary = new_primary('primary');
my $stored_id = $primary->safe_psql('postgres', q{
SELECT (submit_payment(jsonb_build_object('paymentId', gen_random_uuid(), 'userId', gen_random_uuid(),
  'dateTimestamp', '1709553600', 'description', 'stored', 'currency', 'GBP', 'amount', 1)) ->> 'messageId')});
ok($primary->poll_query_until('postgres', "SELECT count(*) = 1 FROM payment.payments WHERE message_id = '$stored_id'"),
	'a payment stored on the primary');
$stored_id = $primary->safe_psql('postgres', "SELECT payment_id FROM payment.payments WHERE message_id = '$stored_id'");

my $standby = new_standby($primary, 'standby');
# one payment queued, not stored: the primary's workers paused (its own file only)
reload_with($primary, 'payment.paused' => 'on');
my $doc = payment_sql('q', 'queued');
$primary->safe_psql('postgres', "SELECT submit_payment($doc) FROM generate_series(1, 1) i");
my $queued_id = $primary->safe_psql('postgres', 'SELECT md5(\'qp\' || 1)::uuid');
$primary->wait_for_catchup('standby');

my $log_offset = -s $standby->logfile;
# the workers and the launcher would have started by now
sleep 3;
is(payment_processes($standby), '0', 'no payment worker or launcher runs on the standby');
my $quiet = log_since($standby, $log_offset);
unlike($quiet, qr/(ERROR|FATAL|WARNING):/, 'the standby logs no error while it waits');
unlike($quiet, qr/\] payment (worker|launcher) /, 'nor anything of payment workers');

sub try_sql
{
	my ($sql) = @_;
	my ($out, $err);
	my $rc = $standby->psql('postgres', "\\set VERBOSITY verbose\n$sql", stdout => \$out, stderr => \$err);
	return ($rc, $out // '', $err // '');
}

my ($rc, $out, $err) = try_sql("SELECT submit_payment($doc) FROM generate_series(2, 2) i");
isnt($rc, 0, 'submit_payment on a standby fails');
like($err, qr/ERROR:  25006: cannot submit payments on a standby server/, 'with 25006 and the standby wording');
like($err, qr/DETAIL:  The server is in recovery: it is a read-only replica\./, 'the detail says it is a replica');
like($err, qr/HINT:  Submit payments to the primary server\./, 'the hint says where to submit');
unlike($err, qr/nextval/, 'no internal detail');
($rc, $out, $err) = try_sql("SELECT submit_payments(jsonb_agg($doc)) FROM generate_series(3, 4) i");
like($err, qr/ERROR:  25006: cannot submit payments on a standby server/, 'submit_payments too');

($rc, $out, $err) = try_sql("SELECT payment_status('$stored_id') ->> 'status'");
is("$rc $out", '0 stored', 'payment_status of a stored payment works on the standby') or diag $err;
($rc, $out, $err) = try_sql("SELECT payment_status('$queued_id') ->> 'status'");
is("$rc $out", '0 queued', 'payment_status of a queued payment works on the standby') or diag $err;
($rc, $out, $err) = try_sql("SELECT payment_status(gen_random_uuid()) ->> 'status'");
is("$rc $out", '0 unknown', 'payment_status of an unknown payment works on the standby') or diag $err;
($rc, $out, $err) = try_sql("SELECT validate_payment($doc) FROM generate_series(5, 5) i");
like("$rc $out", qr/^0 \{.*"valid": true/, 'validate_payment works on the standby') or diag $err;
($rc, $out, $err) = try_sql(q{SELECT validate_json('{"a": 1}', '{"required": ["b"]}') ->> 'valid'});
is("$rc $out", '0 false', 'validate_json works on the standby') or diag $err;
($rc, $out, $err) = try_sql('SELECT count(*) FROM payment.stats');
is("$rc $out", '0 1', 'payment.stats works on the standby') or diag $err;

# promotion: the pool starts without a restart and drains what was queued
$log_offset = -s $standby->logfile;
$standby->promote;
ok($standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'promoted');
ok($standby->poll_query_until('postgres', q{
SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'payment worker'}),
	'its payment workers start after promotion');
ok($standby->poll_query_until('postgres', "SELECT count(*) = 1 FROM payment.payments WHERE payment_id = '$queued_id'"),
	'what was queued on the old primary is stored');
$standby->safe_psql('postgres', "SELECT submit_payment($doc) FROM generate_series(6, 7) i");
ok($standby->poll_query_until('postgres', q{
SELECT count(*) = 2 FROM payment.payments WHERE payment_id IN (md5('qp6')::uuid, md5('qp7')::uuid)}),
	'payments submitted after promotion are stored');
unlike(log_since($standby, $log_offset), qr/\] payment (worker|launcher) [^\n]*(ERROR|FATAL|WARNING):/,
	'no error from the payment processes across the promotion');

$standby->stop;
$primary->stop;
done_testing();
