#!/usr/bin/env bash
# test/bench/idempotency.sh: what the key check at the front door costs and
# saves, in one run against one throwaway cluster (test/bench/lib.sh),
# medians of pgbench runs:
#   - submit_payment of fresh payments (a key recorded, a message enqueued)
#     against a replay of a queued payment and of a stored one (the first
#     answer found, nothing written);
#   - payment_status of a payment that is not stored, with a backlog of
#     BACKLOG payments queued and the workers paused (an index lookup each).
#
#   test/bench/idempotency.sh [runs] [seconds] [clients] [backlog]   (defaults 5 5 2 200000)
#   test/bench/idempotency.sh --short                     (3 runs of 2 s, 20,000 queued: CI)
#
# Run as the postgres OS user from the repository root, with the extension
# installed for the PostgreSQL in $PGBIN.  Ports in 58000-58999.
source "$(dirname "$0")/lib.sh"

if [ "${1:-}" = "--short" ]; then
	set -- 3 2 2 20000
fi
runs=${1:-5}
secs=${2:-5}
clients=${3:-2}
backlog=${4:-200000}
port=$((58000 + RANDOM % 1000))
out=test/bench/out
mkdir -p "$out"

bench_start_cluster "$port"
user=0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4
queued_id=11111111-1111-4111-8111-111111111111
stored_id=22222222-2222-4222-8222-222222222222
payload() {
	echo "jsonb_build_object('paymentId', '$1', 'userId', '$user', 'dateTimestamp', '1709553600',
  'description', 'Regular payment made to Netflix from HSBC account', 'currency', 'GBP', 'amount', 7.99)"
}

# the stored payment first, then the workers paused and the queued one left queued
q "SELECT submit_payment($(payload $stored_id))" >/dev/null
bench_wait_stored 1
bench_pause on
q "SELECT submit_payment($(payload $queued_id))" >/dev/null

echo "SELECT submit_payment($BENCH_PAYLOAD);" >"$BENCH_DIR/first.sql"
echo "SELECT submit_payment($(payload $queued_id));" >"$BENCH_DIR/replay_queued.sql"
echo "SELECT submit_payment($(payload $stored_id));" >"$BENCH_DIR/replay_stored.sql"
# every replay must be one: the answer says so, or the run fails
echo "SELECT 1 / coalesce((submit_payment($(payload $queued_id)) ->> 'replayed')::boolean::int, 0);" >"$BENCH_DIR/check.sql"
bench_pgbench_count -t 10 -f "$BENCH_DIR/check.sql" >/dev/null

run() {
	pgbench -n -M prepared -c "$clients" -j "$clients" -T "$secs" -f "$1" 2>/dev/null |
		awk '/^tps/ {print int($3); exit}'
}
first=(); queued=(); stored=()
for i in $(seq "$runs"); do
	for m in $(printf 'first\nqueued\nstored\n' | awk -v i="$i" '{a[NR]=$0} END {for (k = 0; k < NR; k++) print a[(k + i) % NR + 1]}'); do
		case $m in
			first) first+=("$(run "$BENCH_DIR/first.sql")") ;;
			queued) queued+=("$(run "$BENCH_DIR/replay_queued.sql")") ;;
			stored) stored+=("$(run "$BENCH_DIR/replay_stored.sql")") ;;
		esac
	done
done
depth_before=$(q "SELECT count(*) FROM payment.idempotency_keys WHERE payment_id = '$queued_id'")

# a backlog, then payment_status of ids not stored: the queued one and unknown ones
empty_queue
for _ in $(seq $((backlog / 1000))); do
	q "SELECT submit_payments(jsonb_agg($BENCH_PAYLOAD)) FROM generate_series(1, 1000)" >/dev/null
done
queued_now=$(q "SELECT count(*) FROM payment.idempotency_keys")
echo "SELECT payment_status(gen_random_uuid());" >"$BENCH_DIR/status.sql"
status_ms=()
for i in $(seq "$runs"); do
	status_ms+=("$(pgbench -n -M prepared -c 1 -j 1 -T "$secs" -f "$BENCH_DIR/status.sql" 2>/dev/null |
		awk '/^latency average/ {print $4; exit}')")
done

f=$(median "${first[@]}"); rq=$(median "${queued[@]}"); rs=$(median "${stored[@]}")
s=$(median "${status_ms[@]}")
{
	echo "submit_payment and its replays, pgbench -M prepared -c $clients -j $clients -T $secs, median of $runs runs"
	echo "($(machine); workers paused)"
	printf '  %-36s %8.0f tps         (runs: %s)\n' "first submission (key recorded)" "$f" "$(printf '%s ' "${first[@]}")"
	printf '  %-36s %8.0f tps  %sx  (runs: %s)\n' "replay of a queued payment" "$rq" "$(ratio "$rq" "$f")" "$(printf '%s ' "${queued[@]}")"
	printf '  %-36s %8.0f tps  %sx  (runs: %s)\n' "replay of a stored payment" "$rs" "$(ratio "$rs" "$f")" "$(printf '%s ' "${stored[@]}")"
	printf '  %-36s %8s ms per call, %s payments queued (runs: %s)\n' "payment_status of an unknown id" "$s" "$queued_now" "$(printf '%s ' "${status_ms[@]}")"
	echo "  key records of the replayed payment after the replays: $depth_before"
} | tee "$out/idempotency-summary.txt"
