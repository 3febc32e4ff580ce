# The embedded queue's insert-only event tables (extension 1.1): while a
# snapshot is held (a REPEATABLE READ report, as pg_dump holds one) tens of
# thousands of payments go through and the queue's tables gain no dead rows;
# the generations are emptied by TRUNCATE meanwhile; a transaction that
# enqueued and stays open across several rotations is neither lost nor
# emptied away; a pg_dump running meanwhile blocks no intake.  Every payment
# is stored once.  A batch whose claimer died comes back after the
# visibility timeout, one receive more each time, and is dead-lettered past
# payment.max_receive_count.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use PaymentNode qw(new_payment_node payment_sql);

my $payments = 20_000;

my $node = new_payment_node('event_log',
	settings => { 'payment.queue_rotate_after' => '1s', autovacuum => 'off' });

my $payload = payment_sql('', 'event log');

sub queue_tables_sql
{
	my ($what) = @_;
	return qq{(SELECT coalesce(sum($what), 0) FROM pg_stat_user_tables
	  WHERE schemaname = 'payment' AND relname LIKE 'queue%')};
}

# a snapshot held for the whole run, as a long report or pg_dump holds one
my $hold = $node->background_psql('postgres');
$hold->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$hold->query_safe('SELECT count(*) FROM payment.payments');

# a transaction that enqueues and stays open across several rotations
my $open = $node->background_psql('postgres');
$open->query_safe('BEGIN');
$open->query_safe(qq{SELECT submit_payment($payload) FROM generate_series($payments + 1, $payments + 1) i});

# pg_dump of the database, running meanwhile
my $dump_file = $node->basedir . '/during.dump';
my $dump_start = time();

my $start = time();
for my $chunk (0 .. 19)
{
	my ($from, $to) = ($chunk * 1000 + 1, ($chunk + 1) * 1000);
	$node->safe_psql('postgres', qq{SELECT count(submit_payment($payload)) FROM generate_series($from, $to) i});
}
my $dump = $node->command_ok(['pg_dump', '-Fc', '-f', $dump_file, '-d', $node->connstr('postgres')],
	'pg_dump runs while the queue is busy');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = $payments FROM payment.payments"),
	"$payments payments stored while a snapshot is held");
note sprintf('stored in %.1f s', time() - $start);

# deliberate: the open transaction spans several rotations (one a second);
# it commits only now
usleep(3_000_000);
$open->query_safe('COMMIT');
ok($node->poll_query_until('postgres', "SELECT count(*) = $payments + 1 FROM payment.payments"),
	'the payment of a transaction open across rotations is stored after its commit');
$open->quit;

# the workers' statistics reach the cumulative statistics within a second
ok($node->poll_query_until('postgres', 'SELECT ' . queue_tables_sql('n_tup_ins') . " >= $payments"),
	'the statistics count the inserts into the event tables');
is($node->safe_psql('postgres', 'SELECT ' . queue_tables_sql('n_dead_tup')), '0',
	'no dead rows in the queue tables while a snapshot is held');
is($node->safe_psql('postgres', 'SELECT ' . queue_tables_sql('n_tup_upd') . ' + ' . queue_tables_sql('n_tup_del')),
	'0', 'no message row was updated or deleted');
# (polled: when the 20,000 went in within one rotation, beside the open
# transaction, their generation settles only after its commit just above)
ok($node->poll_query_until('postgres', qq{
SELECT (SELECT count(*) FROM payment.queue_events_0) + (SELECT count(*) FROM payment.queue_events_1)
     + (SELECT count(*) FROM payment.queue_events_2) < $payments}),
	'generations were emptied by TRUNCATE during the hold');
is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.queue_retry'), '0',
	'no message needed a row of its own');

$hold->query_safe('COMMIT');
$hold->quit;

is($node->safe_psql('postgres', q{SELECT count(*) FROM payment.queue}), '0', 'payment.queue is empty');
is($node->safe_psql('postgres', q{SELECT count(*), count(DISTINCT (payment_id, user_id)) FROM payment.payments}),
	($payments + 1) . '|' . ($payments + 1), 'each payment stored once');
is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.dead_letters'), '0', 'no dead letter');

# the event tables empty out once idle: all three generations within a few rotations
ok($node->poll_query_until('postgres', q{
SELECT (SELECT count(*) FROM payment.queue_events_0) + (SELECT count(*) FROM payment.queue_events_1)
     + (SELECT count(*) FROM payment.queue_events_2) = 0}),
	'the event tables are emptied once every message is settled');

# A batch whose claimer died (claimed and never settled: payment.claim_messages
# commits a claim as a worker's claim does) comes back after the visibility
# timeout with one more receive each time; past payment.max_receive_count the
# workers dead-letter it.
$node->safe_psql('postgres', q{ALTER SYSTEM SET payment.visibility_timeout = '1s';
ALTER SYSTEM SET payment.paused = on; SELECT pg_reload_conf()});
# once a new session sees it, the idle workers have been told to pause
$node->poll_query_until('postgres', q{SELECT current_setting('payment.paused') = 'on'
   AND current_setting('payment.visibility_timeout') = '1s'})
  or die 'payment.paused and payment.visibility_timeout not reloaded';
my $first = $payments + 2;
my $last = $payments + 4;
$node->safe_psql('postgres', qq{SELECT count(submit_payment($payload)) FROM generate_series($first, $last) i});
for my $receive (1 .. 3)
{
	ok($node->poll_query_until('postgres', q{SELECT count(*) FROM payment.claim_messages(10)}, '3'),
		"the batch is claimed again after the visibility timeout (receive $receive)");
	is($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT receive_count::text, ',') FROM payment.queue}),
		$receive, "each of its messages shows $receive receives");
}
$node->safe_psql('postgres', q{ALTER SYSTEM SET payment.paused = off; SELECT pg_reload_conf()});
ok($node->poll_query_until('postgres', q{
SELECT count(*) = 3 FROM payment.dead_letters WHERE reason = 'max_receives' AND receive_count = 4}),
	'received a fourth time, past payment.max_receive_count: dead-lettered');
is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.queue'), '0', 'the queue is empty');

$node->stop;
done_testing();
