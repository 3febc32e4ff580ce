#!/usr/bin/env bash
# Benchmark of the embedded queue, in one run on one server:
#  (a) submit_payment throughput (pgbench) vs a plain INSERT of the same jsonb
#      into a table with the same key;
#  (b) drain rate of a backlog by the workers vs one client doing batched
#      INSERT ... ON CONFLICT DO NOTHING of the same rows (same batch size);
#  (c) latency submit -> stored at a steady rate: p50 and p99.
# Usage (as the postgres OS user): embedded.sh [--short]
source "$(dirname "$0")/lib.sh"

RUNS=5; DRAIN_RUNS=3; SECONDS_PER_RUN=10; BACKLOG=100000; RATE=500; LATENCY_SECONDS=20
if [ "${1:-}" = "--short" ]; then
	RUNS=3; DRAIN_RUNS=3; SECONDS_PER_RUN=4; BACKLOG=10000; LATENCY_SECONDS=6
fi
BATCH=10
CLIENTS=4

bench_start_cluster 55501 "payment.batch_size = $BATCH"
WORK=$BENCH_DIR

q "CREATE TABLE plain (payment_id uuid, user_id uuid, body jsonb NOT NULL, PRIMARY KEY (payment_id, user_id))"
echo "SELECT submit_payment($BENCH_PAYLOAD);" > "$WORK/submit.sql"
echo "INSERT INTO plain SELECT (p->>'paymentId')::uuid, (p->>'userId')::uuid, p FROM (SELECT $BENCH_PAYLOAD AS p) s;" > "$WORK/plain.sql"

# (a) alternate the runs so that all see the same machine state.  Intake
# alone (workers paused, as the reference API Gateway -> SQS path is apart
# from its Lambda) and the whole system (workers storing on the same 2 cores).
submit_tps=(); busy_tps=(); plain_tps=()
for i in $(seq $RUNS); do
	plain_tps+=("$(bench_tps "$SECONDS_PER_RUN" "$WORK/plain.sql" $CLIENTS)")
	bench_pause on
	submit_tps+=("$(bench_tps "$SECONDS_PER_RUN" "$WORK/submit.sql" $CLIENTS)")
	bench_pause off
	wait_settled
	busy_tps+=("$(bench_tps "$SECONDS_PER_RUN" "$WORK/submit.sql" $CLIENTS)")
	wait_settled
done
a_submit=$(median "${submit_tps[@]}"); a_plain=$(median "${plain_tps[@]}"); a_busy=$(median "${busy_tps[@]}")

# (b) the same rows for both: a source table of payloads
q "CREATE TABLE source AS SELECT g AS seq, $BENCH_PAYLOAD AS body FROM generate_series(1, $BACKLOG) g"
q "ALTER TABLE source ADD PRIMARY KEY (seq)"
q "CREATE TABLE target (LIKE payment.payments INCLUDING ALL)"
q "CREATE SEQUENCE chunk"
cat > "$WORK/baseline.sql" <<SQL
WITH c AS (SELECT nextval('chunk') AS k)
INSERT INTO target (payment_id, user_id, amount, currency, description, date_timestamp, body, message_id)
SELECT (body->>'paymentId')::uuid, (body->>'userId')::uuid, (body->>'amount')::numeric,
       body->>'currency', body->>'description', body->>'dateTimestamp', body, seq::text
  FROM source, c WHERE seq > (c.k - 1) * $BATCH AND seq <= c.k * $BATCH
ON CONFLICT DO NOTHING;
SQL
drain_rate=(); base_rate=()
for i in $(seq $DRAIN_RUNS); do
	q "TRUNCATE target; ALTER SEQUENCE chunk RESTART"
	secs=$(pgbench -n -c 1 -t $((BACKLOG / BATCH)) -f "$WORK/baseline.sql" 2>/dev/null |
		awk '/^latency average/ {print $4 / 1000 * '"$((BACKLOG / BATCH))"'; exit}')
	base_rate+=("$(bench_rate $BACKLOG 0 "$secs")")

	q "TRUNCATE payment.payments"
	# one transaction, so the whole backlog becomes visible at its commit
	start=$(psql -qXAt <<SQL
BEGIN;
SELECT count(submit_payment(body)) FROM source \\g /dev/null
COMMIT;
SELECT extract(epoch FROM clock_timestamp());
SQL
)
	wait_settled
	end=$(q "SELECT extract(epoch FROM clock_timestamp())")
	stored=$(q "SELECT count(*) FROM payment.payments")
	[ "$stored" = "$BACKLOG" ] || { echo "drain stored $stored of $BACKLOG" >&2; exit 1; }
	drain_rate+=("$(bench_rate $BACKLOG "$start" "$end")")
done
b_drain=$(median "${drain_rate[@]}"); b_base=$(median "${base_rate[@]}")

# (c) steady rate; latency from the submitting statement's clock to stored_at.
# Start from a quiet server: the backlogs of (b) leave a checkpoint's worth
# of writes that would otherwise be measured instead.
q "TRUNCATE payment.payments"
q "CHECKPOINT"
echo "SELECT submit_payment($BENCH_SENT_PAYLOAD);" > "$WORK/latency.sql"
pgbench -n -c 2 -j 2 -R $RATE -T $LATENCY_SECONDS -f "$WORK/latency.sql" >/dev/null 2>&1
wait_settled
read -r p50 p99 n_lat <<<"$(bench_percentiles payment.payments)"

cat <<OUT
## Embedded queue benchmark ($(date -u +%Y-%m-%d), $(machine))
Medians of $RUNS runs ((b): $DRAIN_RUNS); payment.workers = 2, batch size $BATCH, $CLIENTS pgbench clients.

| measure | payment | baseline | ratio | target |
|---|---|---|---|---|
| (a) submits/s: submit_payment (workers paused) vs plain INSERT of the same jsonb | $a_submit | $a_plain | $(ratio "$a_submit" "$a_plain") | >= 0.7 |
| (a') submits/s while the workers store them on the same cores vs plain INSERT | $a_busy | $a_plain | $(ratio "$a_busy" "$a_plain") | |
| (b) drain of a $BACKLOG backlog, payments/s: workers vs one client's batched INSERT ... ON CONFLICT | $b_drain | $b_base | $(ratio "$b_drain" "$b_base") | >= 0.7 |
| (c) submit -> stored latency at $RATE/s ($n_lat payments), ms | p50 $p50, p99 $p99 | | | p99 < 50 |

Runs: (a) submit ${submit_tps[*]} / busy ${busy_tps[*]} / plain ${plain_tps[*]}; (b) drain ${drain_rate[*]} / baseline ${base_rate[*]}
OUT
