# Soak (issue 9): many payments through the embedded queue, then through
# SQS (fauxqs behind the SigV4 proxy), while the worker backends' memory and
# the queue table's size are sampled.
#
# Checks: every payment stored exactly once, nothing dead-lettered; the RSS
# of each "payment worker" backend (/proc/<pid>/status) grows by less than
# 5 MiB between the end of the warm-up (the first fifth) and the end; the
# queue table (pg_total_relation_size of payment.queue) stays bounded: its
# largest size in the second half of the run is no larger than in the first
# half plus 1 MiB, so it does not grow with N (autovacuum_naptime = 1s: in
# a run of a minute or two, the default naptime of a minute would leave the
# short form's table before its first vacuum).
#
# RSS counts the shared buffers a backend has touched (RssShmem), which
# grows up to shared_buffers without any leak; the leak measure is the
# backend's own memory, VmRSS - RssShmem (= RssAnon + RssFile).  VmRSS
# itself is reported.
#
# PAYMENT_SOAK_N embedded payments (default 50,000; long 1,000,000), and a
# fifth of them through SQS (default 10,000; long 200,000).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use PaymentNode;
use SqsPeers;

my $n = $ENV{PAYMENT_SOAK_N} // 50_000;
my $n_sqs = int($n / 5);
my $round = 1000;
my $mib = 1024 * 1024;

# {pid => {VmRSS, RssShmem, RssAnon}} in bytes, for every payment worker
sub worker_memory
{
	my ($node) = @_;
	my %m;
	for my $pid (split /\n/, $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'payment worker'}))
	{
		open(my $fh, '<', "/proc/$pid/status") or next;
		while (<$fh>)
		{
			$m{$pid}{$1} = $2 * 1024 if /^(VmRSS|RssShmem|RssAnon|RssFile):\s+(\d+) kB/;
		}
		close $fh;
	}
	return \%m;
}

# Submits $total payments in rounds of $round (submit_payments), keeping at
# most a few rounds queued; samples the queue size every round and worker
# memory at the end of the warm-up and at the end.
sub soak
{
	my ($node, $label, $total, $embedded) = @_;
	my (@sizes, $warm);
	my $started = time();
	my $warmup = int($total / 5 / $round) || 1;
	my $rounds = int(($total + $round - 1) / $round);
	for my $r (1 .. $rounds)
	{
		my $k = $r == $rounds ? $total - ($rounds - 1) * $round : $round;
		$node->safe_psql('postgres', qq{
SELECT submit_payments(jsonb_agg(jsonb_build_object(
  'paymentId', gen_random_uuid(), 'userId', gen_random_uuid(), 'dateTimestamp', '1709553600',
  'description', 'soak $label round $r', 'currency', 'GBP', 'amount', (i % 10000) / 100.0)))
FROM generate_series(1, $k) i});
		if ($embedded)
		{
			# the workers keep up: at most two rounds stay queued
			$node->poll_query_until('postgres', "SELECT queue_depth < 2 * $round FROM payment.stats")
			  or die 'the workers fell behind';
			push @sizes, $node->safe_psql('postgres',
				q{SELECT pg_total_relation_size('payment.queue')});
		}
		if ($r == $warmup)
		{
			# warmed up once the workers have stored what was submitted so far
			$node->poll_query_until('postgres', 'SELECT count(*) >= ' . $r * $round
				  . " FROM payment.payments WHERE description LIKE 'soak $label %'")
			  or die 'warm-up not stored';
			$warm = worker_memory($node);
		}
	}
	ok($node->poll_query_until('postgres',
			"SELECT count(*) = $total FROM payment.payments WHERE description LIKE 'soak $label %'"),
		"$label: all $total payments stored");
	my $seconds = time() - $started;
	my $end = worker_memory($node);
	is(scalar(keys %$end), 2, "$label: two workers at the end");
	for my $pid (sort keys %$end)
	{
		ok(exists $warm->{$pid}, "$label: worker $pid ran the whole soak (not restarted)");
		next unless exists $warm->{$pid};
		my $own = sub { $_[0]{VmRSS} - $_[0]{RssShmem} };
		my $growth = $own->($end->{$pid}) - $own->($warm->{$pid});
		note sprintf('%s: worker %d VmRSS %.1f -> %.1f MiB, own (VmRSS - RssShmem) %.1f -> %.1f MiB, RssAnon %.1f -> %.1f MiB',
			$label, $pid, $warm->{$pid}{VmRSS} / $mib, $end->{$pid}{VmRSS} / $mib,
			$own->($warm->{$pid}) / $mib, $own->($end->{$pid}) / $mib,
			$warm->{$pid}{RssAnon} / $mib, $end->{$pid}{RssAnon} / $mib);
		cmp_ok($growth, '<', 5 * $mib, "$label: worker $pid memory grows by less than 5 MiB after warm-up");
	}
	if ($embedded)
	{
		my $half = int(@sizes / 2);
		my ($max1, $max2) = (0, 0);
		$max1 = $_ > $max1 ? $_ : $max1 for @sizes[ 0 .. $half - 1 ];
		$max2 = $_ > $max2 ? $_ : $max2 for @sizes[ $half .. $#sizes ];
		note sprintf('%s: queue table at most %.2f MiB in the first half, %.2f MiB in the second, %.2f MiB at the end',
			$label, $max1 / $mib, $max2 / $mib, $sizes[-1] / $mib);
		cmp_ok($max2, '<=', $max1 + $mib, "$label: the queue table's size stays bounded");
	}
	note sprintf('%s: %d payments in %.0f s (%.0f/s)', $label, $total, $seconds, $total / $seconds);
	return;
}

sub check_clean
{
	my ($node, $label, $total, $born) = @_;
	is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.payments'), $total,
		"$label: exactly $total payments stored, none twice");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM payment.dead_letters'), '0',
		"$label: no dead letters");
	is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $born,
		"$label: the postmaster never restarted");
	unlike(slurp_file($node->logfile), qr/terminated by signal|PANIC|out of memory/,
		"$label: no crash, no out-of-memory");
}

my %common = (
	'payment.workers' => 2,
	# a fixed pool: the same two workers are measured from warm-up to the end
	'payment.max_workers' => 2,
	shared_buffers => '64MB',
	log_statement => 'none',
	# the soak compresses months into minutes: autovacuum looks at the queue
	# every second, as the default minute is to a long run
	autovacuum_naptime => '1s');

# -- embedded queue
my $node = new_payment_node('soak', settings => \%common);
my $born = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
soak($node, 'embedded', $n, 1);
ok($node->poll_query_until('postgres', 'SELECT queue_depth = 0 AND in_flight = 0 FROM payment.stats'),
	'embedded: the queue ends empty');
check_clean($node, 'embedded', $n, $born);
$node->stop;

# -- SQS
my $peers = SqsPeers->new(
	keys => {
		AKIDSOAKPRODUCER => { secret => 'producer-' . SqsPeers::random_word(20), producer => 1 },
		AKIDSOAKSERVER => { secret => 'server-' . SqsPeers::random_word(20) },
	});
my $queue_url = $peers->create_queue('soak', 30);
my $sqs = $peers->start_node('soak_sqs', 'AKIDSOAKSERVER', %common, 'payment.wait_time' => 1);
$born = $sqs->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
soak($sqs, 'sqs', $n_sqs, 0);
my $c = $peers->queue_counts;
is($c->{visible} + $c->{in_flight} + $c->{delayed}, 0, 'sqs: the SQS queue ends empty');
check_clean($sqs, 'sqs', $n_sqs, $born);
$sqs->stop;
$peers->stop;
done_testing();
