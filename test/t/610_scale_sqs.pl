# The elastic pool with SQS at real-world latency (20 ms per request, added
# by test/sqs/latency-proxy.mjs between the SigV4-verifying proxy and
# fauxqs), and switching backends without stranding anything:
#  - embedded -> SQS: a backlog left in the embedded queue when
#    payment.queue_url is set is still drained, alongside an SQS backlog big
#    enough to grow the pool to payment.max_workers;
#  - SQS -> embedded: messages left in the replaced SQS queue when
#    payment.queue_url is emptied are still drained;
#  - back to SQS, whose receives now answer at most 5 messages (as real SQS
#    often answers fewer than asked): no claim is full, and the pool grows
#    on the queue's depth (GetQueueAttributes) instead.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use PaymentNode qw(reload_with payment_sql enqueue_directly);
use SqsPeers;

my $key = SqsPeers::new_key_id();
my $peers = SqsPeers->new(keys => SqsPeers::producer_and($key), latency_ms => 0);
my $queue_url = $peers->create_queue('payments', 30);

# configured for SQS, but starting on the embedded queue, paused
my $node = $peers->start_node('scale_sqs', $key,
	'payment.workers' => 2,
	'payment.max_workers' => 8,
	'max_worker_processes' => 16,
	'payment.scale_up_after' => "'500ms'",
	'payment.scale_down_after' => "'3s'",
	'payment.wait_time' => 1,
	'payment.visibility_timeout' => 10,
	'payment.paused' => 'on',
	'payment.queue_url' => "''");

# payment.queue_url set to $url and the workers resumed, reloaded: once a new
# session sees it, submits go to that queue
sub resume_on
{
	my ($url) = @_;
	reload_with($node, 'payment.queue_url' => "'$url'", 'payment.paused' => 'off');
}

# Workers paused; a worker in the middle of a receive (payment.wait_time =
# 1 s) takes the pause only after it, and no view shows when it has: two
# seconds more, so that what is submitted next stays in the queue in use.
sub pause
{
	reload_with($node, 'payment.paused' => 'on');
	sleep 2;
}

# payments 1 .. $n of payment_sql($tag, $what), in one submit_payments call;
# returns the count it reports
sub submit_many
{
	my ($n, $tag, $what) = @_;
	return $node->safe_psql('postgres',
		'SELECT submit_payments(jsonb_agg(' . payment_sql($tag, $what)
		  . ")) ->> 'count' FROM generate_series(1, $n) AS i");
}

# Replacing the queue in use by $url: payments submitted while paused, left
# in the old queue ([n, tag, description, test name]), then payments
# submitted to the new one once the workers resume on it.
sub replace_queue
{
	my ($url, $left, $new) = @_;
	pause();
	is(submit_many(@$left[ 0 .. 2 ]), $left->[0], $left->[3]);
	resume_on($url);
	is(submit_many(@$new[ 0 .. 2 ]), $new->[0], $new->[3]);
}

my $embedded = 2000;
my $sqs_backlog = 8000;
enqueue_directly($node, $embedded, 'e', 'embedded');
my $sent = $peers->producer('send', 'queue-url' => $queue_url, valid => $sqs_backlog,
	'not-json' => 0, invalid => 0, duplicates => 0, conflicts => 0);
is($sent->{sent}, $sqs_backlog, "an SQS backlog of $sqs_backlog sent by the AWS SDK");

### embedded -> SQS, at 20 ms a request
$peers->set_latency(20);
resume_on($queue_url);

my $workers_sql = q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'payment worker'};

# Wait (90 s at most) until $total payments are stored; returns how many
# were stored and the largest pool seen meanwhile.
sub drain_watching_pool
{
	my ($total) = @_;
	my ($stored, $max_seen) = (0, 0);
	my $start = time();
	while (time() - $start < 90)
	{
		my ($n, $s) = split /\|/, $node->safe_psql('postgres',
			"SELECT ($workers_sql), (SELECT count(*) FROM payment.payments)");
		$max_seen = $n if $n > $max_seen;
		$stored = $s;
		last if $s == $total;
		usleep(200_000);
	}
	return ($stored, $max_seen);
}
my $total = $embedded + $sqs_backlog;
my $start = time();
my ($stored, $max_seen) = drain_watching_pool($total);
my $seconds = time() - $start;
is($stored, $total, sprintf('embedded leftovers and the SQS backlog all stored (%.1f s)', $seconds));
is($max_seen, 8, 'the pool grew to payment.max_workers on the SQS backlog');
is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.queue'), '0',
	'the embedded queue was drained although SQS is in use');
is($node->safe_psql('postgres', 'SELECT count(DISTINCT payment_id) FROM payment.payments'),
	$total, 'each stored once');
is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.dead_letters'), '0',
	'nothing dead-lettered');
ok($peers->wait_queue_empty(30),
	'the SQS queue is empty');
is($peers->stats->{rejected}, 0, 'every request carried a valid signature');
my $latency = $peers->set_latency(20);
cmp_ok($latency->{requests}, '>', 1600,
	"the workers' requests went through the 20 ms latency proxy ($latency->{requests})");

ok($node->poll_query_until('postgres', "SELECT ($workers_sql) = 2"),
	'the pool shrinks back to payment.workers when idle');

### SQS -> embedded: leftovers in SQS when payment.queue_url is emptied
replace_queue('',
	[ 300, 's', 'left in SQS', '300 payments submitted to SQS while paused' ],
	[ 100, 'n', 'embedded again', '100 more on the embedded queue' ]);
ok($node->poll_query_until('postgres',
	"SELECT count(*) = $total + 400 FROM payment.payments"),
	'the replaced SQS queue\'s leftovers and the new embedded payments are all stored');
ok($peers->wait_queue_empty(30),
	'the replaced SQS queue is empty');
ok($node->wait_for_log(qr/found the replaced SQS queue empty/),
	'the workers stop draining the replaced queue once it is empty');

### back to SQS; receives never full: the depth grows the pool
reload_with($node, 'payment.paused' => 'on');
my $short = 4000;
$peers->set_latency(0);
$sent = $peers->producer('send', 'queue-url' => $queue_url, valid => $short,
	'not-json' => 0, invalid => 0, duplicates => 0, conflicts => 0);
is($sent->{sent}, $short, "$short more sent to SQS");
$peers->set_latency(20);
$peers->set_max_receive(5);
# the pool must start this phase at its minimum, or growth could not be seen
ok($node->poll_query_until('postgres', "SELECT ($workers_sql) = 2"),
	'the pool is back at payment.workers before the depth phase');
my $events_before = $node->safe_psql('postgres', 'SELECT scale_events FROM payment.stats');
resume_on($queue_url);
$total += 400 + $short;
$start = time();
($stored, $max_seen) = drain_watching_pool($total);
is($stored, $total, sprintf('all stored with receives of at most 5 (%.1f s)', time() - $start));
is($max_seen, 8, 'the pool grew to payment.max_workers on the queue depth alone');
cmp_ok($node->safe_psql('postgres', 'SELECT scale_events FROM payment.stats'), '>',
	$events_before, 'scale events counted');
ok($peers->stats->{byOperation}{GetQueueAttributes} > 0,
	'the launcher asked SQS for the depth (GetQueueAttributes)');
is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.dead_letters'), '0',
	'nothing dead-lettered');

### SQS -> another SQS queue: the first one's leftovers are still drained
$peers->set_max_receive(0);
my $second_url = $peers->producer('create', queue => 'payments2', visibility => 30)->{queueUrl};
replace_queue($second_url,
	[ 200, 'x', 'left in the first queue', '200 payments left in the first queue' ],
	[ 50, 'y', 'in the second queue', '50 payments sent to the second queue' ]);
$total += 250;
ok($node->poll_query_until('postgres', "SELECT count(*) = $total FROM payment.payments"),
	'both queues drained into payment.payments');
ok($peers->wait_queue_empty(30),
	'the first queue is empty');

$node->stop;
$peers->stop;
done_testing();
