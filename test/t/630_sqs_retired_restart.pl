# A replaced SQS queue is still drained after a restart (issue 11): when
# payment.queue_url changes, the workers record the old queue in
# payment.retired_queues; a worker starting after a restart drains it until
# a receive finds it empty, then forgets it.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use SqsPeers;

my $key = SqsPeers::new_key_id();
my $peers = SqsPeers->new(keys => SqsPeers::producer_and($key));
my $old_url = $peers->create_queue('old', 5);
my $new_url = $peers->create_queue('new', 5);
$peers->{queue_url} = $old_url;

my $node = $peers->start_node('sqs_retired', $key,
	'payment.workers' => 1,
	'payment.max_workers' => 1,
	'payment.wait_time' => 1,
	'payment.paused' => 'on');
sub sql { return $node->safe_psql('postgres', shift); }

# a backlog in the old queue, which nobody drains before the switch
my $sent = $peers->producer('send', 'queue-url' => $old_url, valid => 40);
is(scalar @{ $sent->{valid} }, 40, '40 payments in the old queue');

sql("ALTER SYSTEM SET payment.queue_url = '$new_url'");
sql('SELECT pg_reload_conf()');
ok(SqsPeers::wait_until(sub {
		sql('SELECT queue_url FROM payment.retired_queues') eq $old_url }, 30),
	'the worker recorded the replaced queue');

# the restart forgets shared memory; the table remembers
$node->restart;
sql('ALTER SYSTEM SET payment.paused = off');
sql('SELECT pg_reload_conf()');
ok(SqsPeers::wait_until(sub { sql('SELECT count(*) FROM payment.payments') == 40 }, 60),
	'after the restart, the replaced queue is drained');
ok($peers->wait_queue_empty(30), 'the old queue is empty');
ok(SqsPeers::wait_until(sub { sql('SELECT count(*) FROM payment.retired_queues') == 0 }, 30),
	'and forgotten once a receive found it empty');
my $log = slurp_file($node->logfile);
like($log, qr/payment worker drains the replaced SQS queue \Q$old_url\E/,
	'the restarted worker said it drains the recorded queue');

$node->stop;
$peers->stop;
done_testing();
