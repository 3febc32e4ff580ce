# Prometheus: the real postgres_exporter (Debian's prometheus-postgres-exporter)
# runs monitoring/queries.yaml against a cluster with the extension, as a
# monitoring role that is not a superuser; /metrics on 127.0.0.1 gives the
# figures payment.stats gives, and the latency figures move as payments flow
# (a backlog queued 30 s ago raises the 99th percentile to about 30 s).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use HTTP::Tiny;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

use PaymentNode qw(new_payment_node reload_with free_port payment_sql enqueue_directly);

my $exporter = '/usr/bin/prometheus-postgres-exporter';
-x $exporter or die "$exporter is missing: run test/install-deps.sh as root";
my $queries = "$FindBin::RealBin/../../monitoring/queries.yaml";

my $node = new_payment_node('prometheus');

# the monitoring role of docs/monitoring.md
$node->safe_psql('postgres', q{
CREATE ROLE payment_monitor LOGIN;
GRANT pg_monitor TO payment_monitor;
GRANT USAGE ON SCHEMA payment TO payment_monitor;
GRANT SELECT ON payment.stats, payment.dead_letters TO payment_monitor;
GRANT EXECUTE ON FUNCTION payment.counters(), payment.metrics(),
      payment.queue_messages(uuid) TO payment_monitor;
});

my $port = free_port(19000);
my $log = $node->basedir . '/exporter.log';
local $ENV{DATA_SOURCE_NAME} = sprintf('host=%s port=%d user=payment_monitor dbname=postgres sslmode=disable',
	$node->host, $node->port);
my $h = IPC::Run::start([ $exporter, "--web.listen-address=127.0.0.1:$port",
		"--extend.query-path=$queries", '--disable-default-metrics', '--disable-settings-metrics' ],
	'<', \undef, '>>', $log, '2>>', $log);
END { $h->kill_kill if $h; }

my $http = HTTP::Tiny->new(timeout => 10);

# /metrics as { 'name{labels}' => value }
sub scrape
{
	my $r = $http->get("http://127.0.0.1:$port/metrics");
	return undef unless $r->{success};
	my %m;
	for (split /\n/, $r->{content})
	{
		next if /^#/;
		next unless /^(payment_\S+?)(\{[^}]*\})? (\S+)$/;
		my ($name, $labels, $value) = ($1, $2 // '', $3);
		# the labels the test names: reason only (datname, server are constant)
		my ($reason) = $labels =~ /reason="([^"]*)"/;
		$m{ $name . (defined $reason ? "{$reason}" : '') } = $value;
	}
	return \%m;
}

my $m;
for (1 .. 300)
{
	$m = scrape();
	last if $m && exists $m->{payment_queue_depth};
	select(undef, undef, undef, 0.1);
}
ok($m && exists $m->{payment_queue_depth}, 'the exporter serves payment_queue_depth')
  or diag(slurp_file($log));
is($m->{payment_stored_last_minute}, '0', 'nothing stored yet');
is($m->{payment_store_latency_p99_seconds}, 'NaN', 'no latency without a payment stored');

sub stats
{
	my $row = $node->safe_psql('postgres', q{
SELECT stored, submitted, duplicates, retried, redriven, queue_depth, workers, workers_busy,
       dead_lettered_invalid, dead_lettered_conflict, dead_lettered_max_receives, stored_last_minute,
       extract(epoch FROM latency_p50), extract(epoch FROM latency_p99)
  FROM payment.stats});
	my @v = split /\|/, $row;
	my %s;
	@s{qw(stored submitted duplicates retried redriven queue_depth workers busy invalid conflict
		  max_receives last_minute p50 p99)} = @v;
	return \%s;
}

sub wait_stored
{
	my ($n) = @_;
	$node->poll_query_until('postgres', "SELECT count(*) >= $n FROM payment.payments")
	  or die "$n payments not stored";
	$node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM payment.queue')
	  or die 'queue not drained';
}

# payments flow: 300 submitted, 2 unreadable messages dead-lettered as invalid
my $doc = payment_sql('prom', 'prometheus');
$node->safe_psql('postgres', qq{
SELECT submit_payments(jsonb_agg($doc)) FROM generate_series(1, 300) AS i});
$node->safe_psql('postgres', q{INSERT INTO payment.queue (body) VALUES ('not json'), ('{}')});
wait_stored(300);
$node->poll_query_until('postgres', 'SELECT count(*) = 2 FROM payment.dead_letters')
  or die 'no dead letters';

# the figures do not change now until a minute has passed: scrape and compare
my $s = stats();
$m = scrape();
is($m->{payment_stored_total}, $s->{stored}, "payment_stored_total = payment.stats.stored ($s->{stored})");
is($m->{payment_submitted_total}, $s->{submitted}, 'payment_submitted_total = submitted');
is($m->{payment_queue_depth}, '0', 'payment_queue_depth 0 once drained');
is($m->{payment_workers_running}, $s->{workers}, "payment_workers_running = workers ($s->{workers})");
is($m->{payment_workers_running}, '2', 'two workers');
is($m->{'payment_dead_lettered_total{invalid}'}, $s->{invalid},
	"payment_dead_lettered_total{reason=\"invalid\"} = dead_lettered_invalid ($s->{invalid})");
is($s->{invalid}, '2', 'two invalid');
is($m->{'payment_dead_lettered_total{conflict}'}, '0', 'no conflict');
is($m->{'payment_dead_lettered_total{max_receives}'}, '0', 'no max_receives');
is($m->{'payment_dead_letters_kept_rows{invalid}'}, '2', 'two invalid dead letters kept');
is($m->{payment_stored_last_minute}, $s->{last_minute}, "payment_stored_last_minute = stats ($s->{last_minute})");
cmp_ok($s->{last_minute}, '>=', 300, 'the 300 payments are the last minute\'s samples');
cmp_ok(abs($m->{payment_store_latency_p50_seconds} - $s->{p50}), '<', 1e-6,
	"payment_store_latency_p50_seconds = latency_p50 ($s->{p50} s)");
cmp_ok(abs($m->{payment_store_latency_p99_seconds} - $s->{p99}), '<', 1e-6,
	"payment_store_latency_p99_seconds = latency_p99 ($s->{p99} s)");
cmp_ok($s->{p99}, '>', 0, 'latency p99 > 0');
cmp_ok($s->{p99}, '<', 20, 'and below 20 s on an idle machine');
my $p99_before = $s->{p99};

# the queue's depth while the workers are paused
reload_with($node, 'payment.paused' => 'on');
sleep 1;
enqueue_directly($node, 200, 'prom2', 'paused');
$m = scrape();
is($m->{payment_queue_depth}, '200', 'payment_queue_depth shows the 200 queued while paused');
cmp_ok($m->{payment_queue_oldest_age_seconds}, '>', 0, 'and their age');

# a backlog queued 30 s ago: once stored, the 99th percentile shows it
$node->safe_psql('postgres', qq{
INSERT INTO payment.queue (payment_id, user_id, body, enqueued_at)
SELECT (d ->> 'paymentId')::uuid, (d ->> 'userId')::uuid, d::text, clock_timestamp() - interval '30 s'
  FROM generate_series(1, 300) AS i, LATERAL (SELECT @{[ payment_sql('prom3', 'late') ]} AS d) k});
reload_with($node, 'payment.paused' => 'off');
wait_stored(800);
$s = stats();
$m = scrape();
cmp_ok($m->{payment_store_latency_p99_seconds}, '>=', 30 * 0.875,
	"payment_store_latency_p99_seconds rose from $p99_before to $m->{payment_store_latency_p99_seconds} s");
cmp_ok($m->{payment_store_latency_p99_seconds}, '<', 60, 'and is below a minute');
cmp_ok(abs($m->{payment_store_latency_p99_seconds} - $s->{p99}), '<', 1e-6, 'as latency_p99 says');
is($m->{payment_stored_total}, $s->{stored}, "payment_stored_total moved to $s->{stored}");
cmp_ok($m->{payment_stored_last_minute}, '>=', 500, 'payment_stored_last_minute counts the 500 just stored');

$h->kill_kill;
undef $h;
$node->stop;
done_testing();
