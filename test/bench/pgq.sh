#!/usr/bin/env bash
# Benchmark of issue 10: the embedded queue vs Skype's PgQ (Debian's
# postgresql-15-pgq3 + pgqd, ticker every 20 ms) and a plain INSERT, in one run
# on one cluster.  PgQ does the same job as our workers: producers call
# pgq.insert_event, one consumer stores every batch into a table like
# payment.payments (ON CONFLICT DO NOTHING) and finishes the batch in the same
# transaction.  Ours is driven only through public interfaces (submit_payment(s),
# payment.payments, payment.stats), so the script measures whatever queue the
# extension has.  Measures:
#  1. sustained throughput, stored payments/s (4 clients submitting while the
#     consumer side stores, timed until the last one is stored);
#  2. WAL bytes per stored payment;  3. consumer-side CPU per 1,000 payments;
#  4. drain of a backlog while a snapshot is held after N payments went
#     through, vs without a hold, and the dead rows left in the queue tables;
#  5. submit -> stored latency at 500/s (ours, PgQ, ours under a held snapshot);
#  6. batched intake: 100 payloads per transaction.
# Every payment of every measure is counted where it is stored: one missing
# fails the run.  Usage (as the postgres OS user): pgq.sh [--short]
source "$(dirname "$0")/lib.sh"

# a backlog of 20,000 (short: 10,000) drains in about a second: a few ms of
# noise (a rotation, a checkpoint) weigh less than on a smaller one
# Measure 1 has its own, larger number of shorter runs: this VM's rate drifts
# by tens of percent over minutes, and only runs taken back to back compare.
RUNS=5; SUSTAINED_RUNS=9; T=12; HOLD_N=20000; BACKLOG=20000; RATE=500; LAT_SECONDS=60; HOLD_LAT_SECONDS=300; BATCH_T=10
if [ "${1:-}" = "--short" ]; then
	RUNS=3; SUSTAINED_RUNS=3; T=3; HOLD_N=5000; BACKLOG=10000; LAT_SECONDS=10; HOLD_LAT_SECONDS=10; BATCH_T=2
fi
# the environment may set them: BENCH_RUNS, BENCH_SUSTAINED_RUNS, BENCH_T, BENCH_HOLD_N, BENCH_LAT_SECONDS,
# BENCH_HOLD_LAT_SECONDS
RUNS=${BENCH_RUNS:-$RUNS}; SUSTAINED_RUNS=${BENCH_SUSTAINED_RUNS:-$SUSTAINED_RUNS}; T=${BENCH_T:-$T}; HOLD_N=${BENCH_HOLD_N:-$HOLD_N}
LAT_SECONDS=${BENCH_LAT_SECONDS:-$LAT_SECONDS}; HOLD_LAT_SECONDS=${BENCH_HOLD_LAT_SECONDS:-$HOLD_LAT_SECONDS}
CLIENTS=4

if [ ! -f "$(pg_config --sharedir)/extension/pgq.control" ] || ! command -v pgqd >/dev/null; then
	echo "pgq.sh: PgQ is not installed for $(pg_config --bindir) (postgresql-15-pgq3, pgqd)" >&2
	exit 1
fi

# a failure inside $(...) (a payment lost while a rate is measured) fails the run
shopt -s inherit_errexit
trap 'exit 1' INT TERM
# a backlog goes in as one submit_payments call of BACKLOG payments
bench_start_cluster 55505 "payment.workers = 2" "payment.max_batch_payments = $BACKLOG"
BATCH=$(q "SHOW payment.batch_size")
WORK=$BENCH_DIR

# payment.payments' columns, and their values from a payload b but the message id
COLUMNS="payment_id, user_id, amount, currency, description, date_timestamp, body, message_id"
ROW="(b->>'paymentId')::uuid, (b->>'userId')::uuid, (b->>'amount')::numeric,
  b->>'currency', b->>'description', b->>'dateTimestamp', b"

# == PgQ: the extension, a queue ticked every 20 ms, a consumer and its table ==
psql -qX -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE EXTENSION pgq;
SELECT pgq.create_queue('payments');
-- pgqd calls pgq.ticker() every ticker_period; a tick is made only when
-- ticker_max_count events or ticker_max_lag have passed (default 3 s)
SELECT pgq.set_queue_config('payments', 'ticker_max_lag', '20 milliseconds');
SELECT pgq.register_consumer('payments', 'store');
CREATE TABLE pgq_payments (LIKE payment.payments INCLUDING ALL);
CREATE TABLE plain_payments (LIKE payment.payments INCLUDING ALL);

-- One transaction per batch, as durable and idempotent as the workers' store.
-- Polls every 5 ms when there is no batch, as a worker waits for a wake-up.
CREATE PROCEDURE pgq_consume() LANGUAGE plpgsql AS \$\$
DECLARE
    batch bigint;
BEGIN
    LOOP
        batch := pgq.next_batch('payments', 'store');
        IF batch IS NULL THEN
            COMMIT;
            PERFORM pg_sleep(0.005);
            CONTINUE;
        END IF;
        INSERT INTO pgq_payments ($COLUMNS)
        SELECT $ROW, ev_id::text
          FROM pgq.get_batch_events(batch), LATERAL (SELECT ev_data::jsonb AS b) p
        ON CONFLICT DO NOTHING;
        PERFORM pgq.finish_batch(batch);
        COMMIT;
    END LOOP;
END
\$\$;
SQL

cat > "$WORK/pgqd.ini" <<INI
[pgqd]
logfile = $WORK/pgqd.log
pidfile = $WORK/pgqd.pid
base_connstr = host=$WORK port=$PGPORT user=postgres application_name=pgqd
initial_database = postgres
database_list = postgres
syslog = 0
ticker_period = 0.02
INI
pgqd -q -d "$WORK/pgqd.ini"
bench_on_exit "kill \$(cat '$WORK/pgqd.pid')"
for i in $(seq 200); do [ -s "$WORK/pgqd.pid" ] && break; sleep 0.05; done
PGQD_PID=$(cat "$WORK/pgqd.pid")

# The consumer runs only during PgQ's measures, so that its short
# transactions never hold back our queue's cleanup.
consumer_start()
{
	PGAPPNAME='pgq consumer' psql -qX -c 'CALL pgq_consume()' >/dev/null 2>&1 &
	CONSUMER_PSQL=$!
	for i in $(seq 500); do
		CONSUMER_PID=$(q "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgq consumer'")
		[ -n "$CONSUMER_PID" ] && return 0
		sleep 0.01
	done
	echo "pgq.sh: the consumer did not start" >&2
	return 1
}
consumer_stop()
{
	q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgq consumer'" >/dev/null
	wait "$CONSUMER_PSQL" 2>/dev/null || true
}
bench_on_exit "q \"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgq consumer'\""
bench_on_exit bench_hold_stop

# The three systems measured: ours (submit_payment, the workers), pgq
# (pgq.insert_event, the consumer) and plain (an INSERT, nothing to consume);
# the table each stores into, and a statement that queues N payloads in one
# transaction (ours and pgq).
declare -A STORED_IN=([ours]=payment.payments [pgq]=pgq_payments [plain]=plain_payments)
queue_sql()
{
	case $1 in
		ours) echo "SELECT submit_payments(jsonb_agg($BENCH_PAYLOAD)) FROM generate_series(1, $2)" ;;
		pgq) echo "SELECT count(pgq.insert_event('payments', 'payment', ($BENCH_PAYLOAD)::text)) FROM generate_series(1, $2)" ;;
	esac
}
# wait_stored SYSTEM N: until every payment queued is stored and SYSTEM's
# table holds N (bench_wait_count)
wait_stored()
{
	case $1 in
		ours) bench_wait_stored "$2" ;;
		pgq) bench_wait_count "$2" pgq_payments ;;
	esac
}
# PgQ's consumer runs only during PgQ's measures; our workers always run
# (measure 6 pauses them itself)
consume_start() { [ "$1" != pgq ] || consumer_start; }
consume_stop() { [ "$1" != pgq ] || consumer_stop; }

# pgqd's own connections to the bench database (ticker, maintenance)
pgqd_backends()
{
	q "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgqd'"
}

echo "SELECT submit_payment($BENCH_PAYLOAD);" > "$WORK/ours.sql"
echo "SELECT pgq.insert_event('payments', 'payment', ($BENCH_PAYLOAD)::text);" > "$WORK/pgq.sql"
echo "INSERT INTO plain_payments ($COLUMNS) SELECT $ROW, gen_random_uuid()::text FROM (SELECT $BENCH_PAYLOAD AS b) s;" > "$WORK/plain.sql"
lsn() { q "SELECT pg_current_wal_lsn()"; }
wal_per() { q "SELECT round(pg_wal_lsn_diff('$2', '$1') / $3)"; }
# CPU ms per 1,000 payments from clock ticks
cpu_per() { awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.0f", t / hz * 1000 * 1000 / n}'; }

# Samples the CPU ticks of the payment workers every 0.5 s, so that a
# worker the elastic pool retires within the window still counts (up to its
# last sample); a last sample is taken at the end of the window.  It starts no
# process (see lib.sh): PgQ's side is read only before and after its window.
sample_workers_once()
{
	local pids pid ticks
	bench_pids_into pids 'payment worker'
	for pid in "${pids[@]}"; do
		bench_cpu_ticks_into ticks "$pid"
		echo "$pid $ticks"
	done
}
sample_workers()
{
	while :; do
		sample_workers_once
		bench_nap 0.5
	done
}
# ticks used in the window: last sample minus the first per pid (0 for a
# worker started within the window)
sampled_ticks()
{
	awk 'NR == FNR {first[$1] = $2; next} {last[$1] = $2; if (!($1 in first)) first[$1] = 0}
	     END {for (p in last) t += last[p] - first[p]; print t + 0}' "$1" "$2"
}

# == 1-3. sustained throughput, WAL, CPU; alternating runs ==
ours_rate=(); pgq_rate=(); plain_rate=(); ours_wal=(); pgq_wal=(); plain_wal=(); ours_cpu=(); pgq_cpu=()
# One run of measures 1-3 for SYSTEM: $CLIENTS clients submitting for $T s,
# timed until the last payment is stored (plain: until the last INSERT);
# appends to SYSTEM_rate, SYSTEM_wal and (ours, pgq) SYSTEM_cpu.  Our
# workers' CPU is sampled through the window (the pool may retire one);
# PgQ's side (consumer, pgqd and its backends) is read before and after.
sustained()
{
	local sys=$1 n l0 l1 t0 t1 c0 c1 side sampler ticks
	local -n rates_=${sys}_rate wals_=${sys}_wal
	q "TRUNCATE ${STORED_IN[$sys]}"
	case $sys in
		ours)
			sample_workers_once > "$WORK/cpu0"
			sample_workers > "$WORK/cpu1" & sampler=$! ;;
		pgq)
			consumer_start
			side="$CONSUMER_PID $PGQD_PID $(pgqd_backends)"
			c0=$(bench_cpu_ticks $side) ;;
	esac
	l0=$(lsn); t0=$(now)
	n=$(bench_pgbench_count -c $CLIENTS -j 2 -T $T -f "$WORK/$sys.sql")
	wait_stored "$sys" "$n"
	t1=$(now); l1=$(lsn)
	case $sys in
		ours)
			kill $sampler; wait $sampler 2>/dev/null || true
			sample_workers_once >> "$WORK/cpu1"
			ticks=$(sampled_ticks "$WORK/cpu0" "$WORK/cpu1") ;;
		pgq)
			c1=$(bench_cpu_ticks $side)
			consumer_stop
			ticks=$((c1 - c0)) ;;
		plain)
			[ "$(q "SELECT count(*) FROM plain_payments")" = "$n" ] || { echo "plain: rows lost" >&2; exit 1; } ;;
	esac
	rates_+=("$(bench_rate "$n" "$t0" "$t1")"); wals_+=("$(wal_per "$l0" "$l1" "$n")")
	if [ -n "${ticks:-}" ]; then
		local -n cpus_=${sys}_cpu
		cpus_+=("$(cpu_per "$ticks" "$n")")
	fi
}
# The order turns from run to run (ours, PgQ, plain; PgQ, plain, ours; ...),
# so that none is always first after the previous run's leftovers (its
# autovacuum, its dirty buffers).  This VM's rate drifts by tens of percent
# over minutes: besides the ratio of the medians, the median of each run's
# own ratios (its three measures taken back to back) is reported.
SYSTEMS=(ours pgq plain)
for run in $(seq $SUSTAINED_RUNS); do
	for k in 0 1 2; do
		sustained "${SYSTEMS[$(((run - 1 + k) % 3))]}"
	done
done
paired()
{
	local i r=()
	local -n num=$1 den=$2
	for i in "${!num[@]}"; do r+=("$(ratio "${num[$i]}" "${den[$i]}")"); done
	median "${r[@]}"
}
p_pgq=$(paired ours_rate pgq_rate); p_plain=$(paired ours_rate plain_rate)
m_ours=$(median "${ours_rate[@]}"); m_pgq=$(median "${pgq_rate[@]}"); m_plain=$(median "${plain_rate[@]}")
w_ours=$(median "${ours_wal[@]}"); w_pgq=$(median "${pgq_wal[@]}"); w_plain=$(median "${plain_wal[@]}")
u_ours=$(median "${ours_cpu[@]}"); u_pgq=$(median "${pgq_cpu[@]}")

# == 4. a backlog drained with and without a held snapshot ==
q "TRUNCATE payment.payments, pgq_payments"
q "VACUUM"
q "CHECKPOINT"
# Runs the statement that fills a backlog and prints the server's clock right
# after its commit: the consumers start at that commit, and a drain of 20,000
# takes well under a second, so the tens of ms psql takes to exit would count.
backlog_committed_at()
{
	psql -qXAt -c "$1" -c "SELECT extract(epoch FROM clock_timestamp())" | tail -n 1
}
# drain rate of a $BACKLOG backlog of SYSTEM (ours, pgq), queued in one
# transaction so that it becomes visible at once
backlog_rate()
{
	local sys=$1 before t0 t1
	consume_start "$sys"
	before=$(q "SELECT count(*) FROM ${STORED_IN[$sys]}")
	t0=$(backlog_committed_at "$(queue_sql "$sys" $BACKLOG)")
	wait_stored "$sys" $((before + BACKLOG))
	t1=$(now)
	bench_rate $BACKLOG "$t0" "$t1"
	consume_stop "$sys"
}
ours_free=(); pgq_free=(); ours_held=(); pgq_held=()
for run in $(seq $RUNS); do
	r=$(backlog_rate ours); ours_free+=("$r")
	r=$(backlog_rate pgq); pgq_free+=("$r")
done
# the dead rows the runs above left are vacuumed: count what the hold leaves
q "VACUUM"
dead_ours0=$(bench_dead_rows payment queue); dead_pgq0=$(bench_dead_rows pgq '')
bench_hold_start
# HOLD_N payments through each queue while the snapshot is held
for sys in ours pgq; do
	consume_start $sys
	n=$(bench_pgbench_count -c $CLIENTS -j 2 -t $((HOLD_N / CLIENTS)) -f "$WORK/$sys.sql")
	wait_stored $sys $((RUNS * BACKLOG + n))
	consume_stop $sys
done
for run in $(seq $RUNS); do
	r=$(backlog_rate ours); ours_held+=("$r")
	r=$(backlog_rate pgq); pgq_held+=("$r")
done
dead_ours1=$(bench_dead_rows payment queue); dead_pgq1=$(bench_dead_rows pgq '')
bench_hold_stop
h_ours_free=$(median "${ours_free[@]}"); h_pgq_free=$(median "${pgq_free[@]}")
h_ours_held=$(median "${ours_held[@]}"); h_pgq_held=$(median "${pgq_held[@]}")

# == 5. latency at RATE/s, from the submitting statement's clock to stored ==
echo "SELECT submit_payment($BENCH_SENT_PAYLOAD);" > "$WORK/ours_lat.sql"
echo "SELECT pgq.insert_event('payments', 'payment', ($BENCH_SENT_PAYLOAD)::text);" > "$WORK/pgq_lat.sql"
# latency SYSTEM SECONDS: "p50 p99 count" at RATE/s
# (TRUNCATE comes first, out of any hold: the holding session locks the table)
latency()
{
	local sys=$1 n
	consume_start "$sys"
	n=$(bench_pgbench_count -c 2 -j 2 -R $RATE -T "$2" -f "$WORK/${sys}_lat.sql")
	wait_stored "$sys" "$n"
	consume_stop "$sys"
	bench_percentiles "${STORED_IN[$sys]}"
}
q "TRUNCATE payment.payments, pgq_payments"
q "VACUUM"
q "CHECKPOINT"
r=$(latency ours $LAT_SECONDS)
read -r l_ours50 l_ours99 l_ours_n <<<"$r"
r=$(latency pgq $LAT_SECONDS)
read -r l_pgq50 l_pgq99 l_pgq_n <<<"$r"
q "TRUNCATE payment.payments"
q "VACUUM"
bench_hold_start
r=$(latency ours $HOLD_LAT_SECONDS)
read -r l_held50 l_held99 l_held_n <<<"$r"
bench_hold_stop

# == 6. batched intake: 100 payloads per transaction, consumers stopped ==
echo "$(queue_sql ours 100);" > "$WORK/ours_100.sql"
echo "$(queue_sql pgq 100);" > "$WORK/pgq_100.sql"
q "TRUNCATE payment.payments, pgq_payments"
ours_100=(); pgq_100=()
declare -A total_100=([ours]=0 [pgq]=0)
# one run for SYSTEM: intake alone (our workers paused; PgQ's consumer is
# stopped between measures), timed; then all of it stored
batched()
{
	local sys=$1 n t0 t1
	local -n rates_=${sys}_100
	[ "$sys" != ours ] || bench_pause on
	t0=$(now)
	n=$(bench_pgbench_count -c $CLIENTS -j 2 -T $BATCH_T -f "$WORK/${sys}_100.sql")
	t1=$(now)
	rates_+=("$(bench_rate $((n * 100)) "$t0" "$t1")"); total_100[$sys]=$((total_100[$sys] + n * 100))
	if [ "$sys" = ours ]; then bench_pause off; fi
	consume_start "$sys"
	wait_stored "$sys" "${total_100[$sys]}"
	consume_stop "$sys"
}
for run in $(seq $RUNS); do
	batched ours
	batched pgq
done
b_ours=$(median "${ours_100[@]}"); b_pgq=$(median "${pgq_100[@]}")

cat <<OUT
## PgQ benchmark, issue 10 ($(date -u +%Y-%m-%d), $(machine), PgQ $(q "SELECT pgq.version()"))
One cluster, fsync on, payment.workers = 2, batch size $BATCH; PgQ: one consumer (plpgsql, a transaction per
batch), pgqd ticking every 20 ms. Medians of $SUSTAINED_RUNS alternating runs for 1-3, $RUNS for 4 and 6. Every payment counted where it is stored.

| measure | payment | PgQ | plain | ratio | target |
|---|---|---|---|---|---|
| 1. sustained, $CLIENTS clients for ${T}s, stored/s until the last is stored | $m_ours | $m_pgq | $m_plain | $(ratio "$m_ours" "$m_pgq") PgQ, $(ratio "$m_ours" "$m_plain") plain | >= 1.0 PgQ, >= 0.9 plain |
| 1'. the same, median of each run's own ratios | | | | $p_pgq PgQ, $p_plain plain | |
| 2. WAL bytes per stored payment | $w_ours | $w_pgq | $w_plain | $(ratio "$w_ours" "$w_pgq") PgQ, $(ratio "$w_ours" "$w_plain") plain | |
| 3. consumer-side CPU ms per 1,000 payments (workers; consumer + pgqd) | $u_ours | $u_pgq | | $(ratio "$u_ours" "$u_pgq") | |
| 4. drain of a $BACKLOG backlog, /s, no snapshot held | $h_ours_free | $h_pgq_free | | $(ratio "$h_ours_free" "$h_pgq_free") | |
| 4'. the same with a snapshot held after $HOLD_N payments went through | $h_ours_held | $h_pgq_held | | $(ratio "$h_ours_held" "$h_ours_free") ours held/free, $(ratio "$h_pgq_held" "$h_pgq_free") PgQ | >= 0.8 |
| 4''. dead rows, hold start -> end: payment.queue* tables; all of schema pgq | $dead_ours0 -> $dead_ours1 | $dead_pgq0 -> $dead_pgq1 | | | no growth |
| 5. latency at $RATE/s for ${LAT_SECONDS}s, ms | p50 $l_ours50, p99 $l_ours99 | p50 $l_pgq50, p99 $l_pgq99 | | | p99 < 10 |
| 5'. ours with a snapshot held for the whole ${HOLD_LAT_SECONDS}s run, ms | p50 $l_held50, p99 $l_held99 | | | | p99 < 20 |
| 6. batched intake, 100 per transaction, payloads/s | $b_ours | $b_pgq | | $(ratio "$b_ours" "$b_pgq") | >= 1.0 |

Runs: 1. payment ${ours_rate[*]} / PgQ ${pgq_rate[*]} / plain ${plain_rate[*]}; 2. WAL payment ${ours_wal[*]} / PgQ ${pgq_wal[*]} / plain ${plain_wal[*]};
3. CPU payment ${ours_cpu[*]} / PgQ ${pgq_cpu[*]}; 4. free payment ${ours_free[*]} / PgQ ${pgq_free[*]}, held payment ${ours_held[*]} / PgQ ${pgq_held[*]};
5. payments measured: payment $l_ours_n, PgQ $l_pgq_n, held $l_held_n; 6. payment ${ours_100[*]} / PgQ ${pgq_100[*]}
Took ${SECONDS}s.
OUT
