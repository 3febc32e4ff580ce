#!/usr/bin/env bash
# Benchmark of the SQS backend, in one run against one fauxqs emulator on
# 127.0.0.1 (no SigV4 proxy in between, for either side):
#  (a) drain rate of a backlog by the payment workers (receive, store in
#      payment.payments, delete) vs the AWS SDK's own serial receive+delete
#      loop, which stores nothing;
#  (b) submit_payment throughput via SQS (pgbench), workers paused;
#  (c) the drain of (a) again with a streaming asynchronous standby: each
#      delete then waits until the standby flushed the store's commit
#      (payment.standby_flush_timeout).
# Medians of several runs.  Usage (as the postgres OS user, after npm ci):
#   sqs.sh [--short]
source "$(dirname "$0")/lib.sh"

RUNS=3; BACKLOG=10000; SECONDS_PER_RUN=10
if [ "${1:-}" = "--short" ]; then
	RUNS=1; BACKLOG=2000; SECONDS_PER_RUN=3
fi
WORKERS=${WORKERS:-4}
CLIENTS=4
PG_PORT=56500
FAUXQS_PORT=56501

bench_start_fauxqs $FAUXQS_PORT
QUEUE=$(producer create --queue bench | json o.queueUrl)
bench_start_sqs_cluster $PG_PORT "$QUEUE" "payment.workers = $WORKERS" "payment.max_workers = $WORKERS"
WORK=$BENCH_DIR

# drain_rate: pause, fill, unpause, time until every payment is stored; the
# workers' messages per second in $drained (not a subshell: bench_ask_into
# keeps its session)
drain_rate()
{
	local start end all_stored
	q "TRUNCATE payment.payments"
	producer send --queue-url "$QUEUE" --valid $BACKLOG >/dev/null
	# paused workers must not have started: the rate would be inflated
	[ "$(q 'SELECT count(*) FROM payment.payments')" = 0 ] || { echo "workers not paused" >&2; exit 1; }
	start=$(now)
	bench_pause off
	# poll in separate transactions, so no snapshot holds back vacuum
	while :; do
		bench_ask_into all_stored "SELECT count(*) >= $BACKLOG FROM payment.payments"
		[ "$all_stored" = t ] && break
		bench_nap 0.02
	done
	end=$(now)
	bench_pause on
	drained=$(bench_rate $BACKLOG "$start" "$end")
	# the deletes follow the commits; let them finish before the next turn
	for _ in $(seq 100); do
		bench_sqs_empty "$QUEUE" && break
		sleep 0.1
	done
}

# (a) workers
worker_rates=(); sdk_rates=()
for i in $(seq $RUNS); do
	drain_rate; worker_rates+=("$drained")

	producer send --queue-url "$QUEUE" --valid $BACKLOG >/dev/null
	# serial ReceiveMessage (10, no wait) + DeleteMessageBatch until empty
	rate=$(bench_sdk_drain "$QUEUE" $BACKLOG)
	sdk_rates+=("$rate")
done
stored=$(q "SELECT count(*) FROM payment.payments")
[ "$stored" = "$BACKLOG" ] || { echo "expected $BACKLOG stored, found $stored" >&2; exit 1; }
w=$(median "${worker_rates[@]}"); s=$(median "${sdk_rates[@]}")

# (b) submit_payment via SQS: SendMessage per call, workers paused
echo "SELECT submit_payment($BENCH_PAYLOAD);" > "$WORK/submit.sql"
submit_tps=()
for i in $(seq $RUNS); do
	submit_tps+=("$(bench_tps $SECONDS_PER_RUN "$WORK/submit.sql" $CLIENTS)")
done
t=$(median "${submit_tps[@]}")
in_queue=$(producer count --queue-url "$QUEUE" | json o.visible)
producer drain --queue-url "$QUEUE" --loops 4 >/dev/null

# (c) the same drain with a streaming asynchronous standby
STANDBY=$BENCH_DIR/standby
pg_basebackup -D "$STANDBY" -R -X stream -c fast
echo "port = $((PG_PORT + 2))" >> "$STANDBY/postgresql.conf"
pg_ctl -D "$STANDBY" -l "$BENCH_DIR/standby.log" -w start >/dev/null
bench_on_exit "pg_ctl -D '$STANDBY' -m immediate -w stop"
[ "$(q "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = 'async'")" = 1 ] ||
	{ echo "the standby does not stream" >&2; exit 1; }
standby_rates=()
for i in $(seq $RUNS); do
	drain_rate; standby_rates+=("$drained")
done
stored=$(q "SELECT count(*) FROM payment.payments")
[ "$stored" = "$BACKLOG" ] || { echo "expected $BACKLOG stored with the standby, found $stored" >&2; exit 1; }
grep -q 'did not flush a payment commit' "$BENCH_DIR/log" && { echo "a delete timed out waiting for the standby" >&2; exit 1; }
ws=$(median "${standby_rates[@]}")

echo
echo "SQS backend against fauxqs 1.9.2 on 127.0.0.1 ($(machine))"
echo "backlog $BACKLOG messages, $RUNS run(s) each, medians; workers=$WORKERS, batch 10"
printf '%-58s %12s\n' "measure" "per second"
printf '%-58s %12s\n' "workers drain (receive + store + delete)" "$w"
printf '%-58s %12s\n' "SDK serial receive+delete loop (stores nothing)" "$s"
printf '%-58s %12s\n' "ratio workers / SDK (target >= 1.5)" "$(ratio "$w" "$s")"
printf '%-58s %12s\n' "submit_payment via SQS, pgbench $CLIENTS clients (tps)" "$t"
printf '%-58s %12s\n' "workers drain, streaming async standby (deletes wait)" "$ws"
printf '%-58s %12s\n' "ratio with standby / without" "$(ratio "$ws" "$w")"
echo "runs: workers ${worker_rates[*]}; SDK ${sdk_rates[*]}; submit ${submit_tps[*]}; with standby ${standby_rates[*]}; $in_queue submitted messages in the queue"
