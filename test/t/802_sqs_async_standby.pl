# SQS with an asynchronous standby (issue 20): a message is deleted from SQS
# only once every streaming standby has flushed the commit of its payment.
#
# 1. A failover in the middle of an SQS drain: kill -9 of every primary
#    process while it drains 300 messages, promote the standby: all 300
#    stored once on it, nothing dead-lettered, the queue emptied.
# 2. The standby's WAL receiver stopped (SIGSTOP) while the primary stores
#    300 messages: the primary stores them all but deletes none (one
#    WARNING per worker), is killed, the receiver continued and the standby
#    promoted: the messages come back from SQS and all 300 are stored on
#    the new primary.  payment.standby_flush_timeout is 300 ms here, not the
#    default 10 s: every batch waits it out in full while the receiver is
#    stopped, and 30 batches of 10 s would take minutes.  With the wait
#    off (PAYMENT_802_FLUSH_TIMEOUT=0) part 2 loses payments.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;

use PaymentNode qw(reload_with);
use SqsPeers;
use StandbyPair;

my $n = $ENV{PAYMENT_LONG} ? 2000 : 300;
my $visibility = 15;
my $key = SqsPeers::new_key_id();
my $peers = SqsPeers->new(keys => SqsPeers::producer_and($key));
my $queue_url = $peers->create_queue('standby_payments', $visibility);

my $p1 = new_primary('sqs_alpha', settings => {
	$peers->node_settings($key),
	'payment.workers' => 2,
	'payment.wait_time' => 1,
	'payment.visibility_timeout' => $visibility,
	'payment.standby_flush_timeout' => "'" . ($ENV{PAYMENT_802_FLUSH_TIMEOUT} // 300) . "ms'",
	'payment.paused' => 'on',
	log_statement => 'none' });
my $s1 = new_standby($p1, 'sqs_beta', 'payment.paused' => 'off');

sub in_list { return join(',', map { "'$_'" } @{ $_[0] }); }

sub stored
{
	my ($node, $ids) = @_;
	return $node->safe_psql('postgres', 'SELECT count(*) FROM payment.payments WHERE payment_id IN (' . in_list($ids) . ')');
}

sub check_all
{
	my ($node, $ids, $what) = @_;
	ok(SqsPeers::wait_until(sub { stored($node, $ids) == @$ids }, 90),
		"$what: all " . scalar(@$ids) . ' stored on the new primary') or diag 'stored: ' . stored($node, $ids);
	is($node->safe_psql('postgres', 'SELECT count(*) - count(DISTINCT payment_id) FROM payment.payments'), '0',
		"$what: none stored twice");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.dead_letters'), '0', "$what: nothing dead-lettered");
	ok($peers->wait_queue_empty(60), "$what: the queue ends empty");
}

# --- 1. failover mid-drain
my $backlog = $peers->producer('send', 'queue-url' => $queue_url, valid => $n)->{valid};
reload_with($p1, 'payment.paused' => 'off');
ok(SqsPeers::wait_until(sub { stored($p1, $backlog) >= $n / 5 }, 60), 'the primary drains');
crash($p1);
$s1->promote;
ok($s1->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'standby promoted mid-drain');
check_all($s1, $backlog, 'failover mid-drain');

# --- 2. the standby's WAL receiver stopped while the primary stores
my $p2 = $s1;
reload_with($p2, 'payment.paused' => 'on');
my $s2 = new_standby($p2, 'sqs_gamma', 'payment.paused' => 'off');
my $receiver = $s2->safe_psql('postgres', 'SELECT pid FROM pg_stat_wal_receiver');
ok($receiver =~ /^\d+$/, 'the standby streams');
my $offset = -s $p2->logfile;
$backlog = $peers->producer('send', 'queue-url' => $queue_url, valid => $n)->{valid};
kill 'STOP', $receiver;
reload_with($p2, 'payment.paused' => 'off');
ok(SqsPeers::wait_until(sub { stored($p2, $backlog) == $n }, 90), "the primary stores all $n with the receiver stopped");
my $counts = $peers->queue_counts;
is($counts->{visible} + $counts->{in_flight}, $n, 'and deletes none of their messages');
# the pool grows for the backlog: each worker warns once, not once per batch
my %warned;
my $stalled_log = log_since($p2, $offset);
$warned{$1}++ while $stalled_log =~
  /\[(\d+)\] payment worker \S+ WARNING:  1 streaming standby server\(s\) did not flush a payment commit/g;
cmp_ok(scalar(keys %warned), '>=', 1, 'the workers warn that the standby is behind');
is(scalar(grep { $_ > 1 } values %warned), 0, 'once per worker (' . join(', ', values %warned) . ')');
crash($p2);
kill 'CONT', $receiver;
$s2->promote;
ok($s2->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'the stalled standby promoted');
note('stored on it at promotion: ' . stored($s2, $backlog));
check_all($s2, $backlog, 'stalled standby');

$s2->stop;
done_testing();
