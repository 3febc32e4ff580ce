# A worker keeps SQS requests in flight while it stores (issue 11): the next
# ReceiveMessage is asked for before the current batch is stored, and the
# DeleteMessageBatch of a committed batch is answered while the next one is
# stored.  test/sqs/latency-proxy.mjs (20 ms a request) logs every receive
# and delete with the times it arrived and was answered, and
# track_commit_timestamp gives each stored payment's commit time, so that:
#  - one worker is seen with requests overlapping (a synchronous worker,
#    one request at a time, never overlaps its own);
#  - no message is deleted before the commit of its payment (each store
#    made to take 50 ms, so that the proxy's clock can tell), through a
#    kill -9 in the middle of the drain, and nothing is lost or stored twice;
#  - a batch received in advance and held while the worker cannot store (a
#    held lock) comes back and is stored once when the worker is stopped
#    with SIGTERM, and again when it is killed with kill -9.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use SqsPeers;

my $key = SqsPeers::new_key_id();
my $log = "$PostgreSQL::Test::Utils::log_path/latency_exchanges.jsonl";
unlink $log;
my $peers = SqsPeers->new(keys => SqsPeers::producer_and($key), latency_ms => 20, latency_log => $log);
$peers->create_queue('inflight', 3);

my $node = $peers->start_node('sqs_inflight', $key,
	'payment.workers' => 1,
	'payment.max_workers' => 1,
	'payment.batch_size' => 10,
	'payment.wait_time' => 1,
	'payment.visibility_timeout' => 3,
	'payment.paused' => 'on',
	'track_commit_timestamp' => 'on',
	'restart_after_crash' => 'on');

sub sql { return $node->safe_psql('postgres', shift); }
sub stored { return sql('SELECT count(*) FROM payment.payments'); }

sub worker_pid
{
	return sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'payment worker'");
}

sub set_paused
{
	sql("ALTER SYSTEM SET payment.paused = $_[0]");
	sql('SELECT pg_reload_conf()');
}

# the server answers again after a crash restart
sub wait_for_server
{
	return SqsPeers::wait_until(
		sub { (eval { $node->safe_psql('postgres', 'SELECT 1') } // '') eq '1' }, 60);
}

# the proxy's log: one hash per receive or delete, in the order answered
sub exchanges
{
	open my $fh, '<', $log or return ();
	my @e = map { decode_json($_) } grep { /\S/ } <$fh>;
	close $fh;
	return @e;
}

# Every delete after its payments' commits: returns (deleted receipts
# checked, violations as text).
sub check_delete_order
{
	my @e = exchanges();
	my %message_of;
	for my $r (grep { $_->{op} eq 'ReceiveMessage' } @e)
	{
		$message_of{ $r->{receipts}[$_] } = $r->{ids}[$_] for 0 .. $#{ $r->{receipts} };
	}
	my %commit_ms = map { split /\|/ } split /\n/, sql(
		"SELECT message_id, floor(extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000)::bigint
		   FROM payment.payments");
	my ($checked, @bad) = (0);
	for my $d (grep { $_->{op} eq 'DeleteMessageBatch' } @e)
	{
		for my $receipt (@{ $d->{receipts} })
		{
			my $id = $message_of{$receipt};
			if (!defined $id) { push @bad, "delete of a receipt never received"; next; }
			if (!defined $commit_ms{$id}) { push @bad, "message $id deleted but not stored"; next; }
			push @bad, "message $id deleted at $d->{arrive}, committed at $commit_ms{$id}"
			  if $d->{arrive} < $commit_ms{$id};
			$checked++;
		}
	}
	return ($checked, @bad);
}

# ------------------------------------------------------------------
# one worker, a backlog, a kill -9 in the middle of the drain

# Every store takes at least 50 ms, so that a delete sent before its
# store's commit would reach the proxy well before that commit, whatever
# the scheduling delays of a loaded machine.
sql(q{CREATE FUNCTION slow_store() RETURNS trigger LANGUAGE plpgsql AS
        $$BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END$$;
      CREATE TRIGGER slow_store BEFORE INSERT ON payment.payments
        FOR EACH STATEMENT EXECUTE FUNCTION slow_store();});

my $n = 400;
$peers->producer('send', 'queue-url' => $peers->queue_url, valid => $n);
set_paused('off');
ok(SqsPeers::wait_until(sub { stored() >= 150 }, 60), 'the worker stores');
my $victim = worker_pid();
kill 'KILL', $victim;
ok(wait_for_server(), 'the server restarts after kill -9 of the worker');
ok(SqsPeers::wait_until(sub { stored() >= $n }, 90) && $peers->wait_queue_empty(60),
	"all $n stored and the queue empty after the kill");
is(sql('SELECT count(*) || \'/\' || count(DISTINCT payment_id) FROM payment.payments'),
	"$n/$n", 'each payment stored once');

my ($checked, @bad) = check_delete_order();
cmp_ok($checked, '>=', $n, 'every stored message was deleted (duplicates included)');
is(scalar(@bad), 0, 'no message deleted before the commit of its payment')
  or diag(join("\n", @bad[ 0 .. ($#bad < 9 ? $#bad : 9) ]));

# Overlap: a request arriving while another is still unanswered.  Only one
# worker runs (the producer's sends are not logged), so a synchronous worker
# never overlaps; here most batches should.
my @e = sort { $a->{arrive} <=> $b->{arrive} } exchanges();
# (With stores of 50 ms the receive asked for in advance is answered during
# the store, and the next one is sent while the delete is in flight.)
my $overlaps = 0;
for my $i (1 .. $#e)
{
	$overlaps++ if grep { $e[$_]{answered} > $e[$i]{arrive} } 0 .. $i - 1;
}
my $batches = grep { $_->{op} eq 'DeleteMessageBatch' } @e;
cmp_ok($overlaps, '>=', $batches / 2,
	"requests sent while another is in flight: $overlaps, for $batches batches");

sql('DROP TRIGGER slow_store ON payment.payments');

# ------------------------------------------------------------------
# a batch received in advance, held, then the worker stopped

# Hold the store back with a lock, let the worker receive its batch and the
# next one, stop it with $signal; every held message must come back.
sub held_batch_comes_back
{
	my ($signal) = @_;
	my $before = stored();
	my $since = time() * 1000;
	my $locker = IPC::Run::start(
		[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c',
		  "SET application_name = 'locker'; BEGIN; LOCK TABLE payment.payments IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120); COMMIT;" ],
		'<', \undef, '>', \my $out, '2>', \my $err);
	ok(SqsPeers::wait_until(sub {
			sql("SELECT count(*) FROM pg_locks WHERE relation = 'payment.payments'::regclass AND mode = 'AccessExclusiveLock' AND granted") == 1
		}, 30), "$signal: the lock is held");

	$peers->producer('send', 'queue-url' => $peers->queue_url, valid => 30);
	my %held;
	my $seen = SqsPeers::wait_until(sub {
		%held = ();
		for my $r (grep { $_->{op} eq 'ReceiveMessage' && $_->{answered} >= $since } exchanges())
		{
			$held{$_} = 1 for @{ $r->{ids} };
		}
		my $waiting = sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'payment worker' AND wait_event_type = 'Lock'");
		return keys(%held) > 10 && $waiting == 1;
	}, 30);
	ok($seen, "$signal: the worker, blocked storing a batch, has received the next one too ("
		  . scalar(keys %held) . ' messages)');
	is(scalar(grep { $_->{op} eq 'DeleteMessageBatch' && $_->{arrive} >= $since } exchanges()),
		0, "$signal: nothing deleted while nothing could be stored");

	my $stopped_at = time() * 1000;
	if ($signal eq 'SIGTERM')
	{
		sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'payment worker'");
		sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'locker'");
	}
	else
	{
		kill 'KILL', worker_pid();
		ok(wait_for_server(), "$signal: the server restarts");
	}
	$locker->finish;

	ok(SqsPeers::wait_until(sub { stored() >= $before + 30 }, 90) && $peers->wait_queue_empty(60),
		"$signal: all 30 stored, the queue empty");
	is(sql('SELECT count(*) - count(DISTINCT payment_id) FROM payment.payments'), 0,
		"$signal: nothing stored twice");
	my %again;
	for my $r (grep { $_->{op} eq 'ReceiveMessage' && $_->{arrive} > $stopped_at } exchanges())
	{
		$again{$_} = 1 for @{ $r->{ids} };
	}
	my @lost = grep { !$again{$_} } keys %held;
	is(scalar(@lost), 0, "$signal: every message held in advance was delivered again");
	is(sql("SELECT count(*) FROM payment.payments WHERE message_id IN ('"
			  . join("','", keys %held) . "')"),
		scalar(keys %held), "$signal: and stored");
}

held_batch_comes_back('SIGTERM');
held_batch_comes_back('SIGKILL');

($checked, @bad) = check_delete_order();
is(scalar(@bad), 0, 'still no message deleted before its commit')
  or diag(join("\n", @bad[ 0 .. ($#bad < 9 ? $#bad : 9) ]));

$node->stop;
$peers->stop;
done_testing();
