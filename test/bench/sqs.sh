#!/usr/bin/env bash
# Benchmark of the SQS backend, in one run against one fauxqs emulator on
# 127.0.0.1 (no SigV4 proxy in between, for either side):
#  (a) drain rate of a backlog by the payment workers (receive, store in
#      payment.payments, delete) vs the AWS SDK's own serial receive+delete
#      loop, which stores nothing;
#  (b) submit_payment throughput via SQS (pgbench), workers paused.
# Medians of several runs.  Usage (as the postgres OS user, after npm ci):
#   sqs.sh [--short]
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

RUNS=3; BACKLOG=10000; SECONDS_PER_RUN=10
if [ "${1:-}" = "--short" ]; then
	RUNS=1; BACKLOG=2000; SECONDS_PER_RUN=3
fi
WORKERS=${WORKERS:-4}
CLIENTS=4
PG_PORT=56500
FAUXQS_PORT=56501
export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1

node --no-warnings "$ROOT/test/sqs/fauxqs-server.mjs" --port $FAUXQS_PORT >/dev/null &
FAUXQS_PID=$!
for _ in $(seq 100); do
	curl -sf "http://127.0.0.1:$FAUXQS_PORT/health" >/dev/null && break
	sleep 0.1
done
ENDPOINT=http://127.0.0.1:$FAUXQS_PORT
producer() { node --no-warnings "$ROOT/test/sqs/producer.mjs" "$@" --endpoint $ENDPOINT; }
# json EXPR: evaluate EXPR on the JSON object o read from stdin
json() { node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const o=JSON.parse(s);console.log($1)})"; }
QUEUE=$(producer create --queue bench | json o.queueUrl)

bench_start_cluster $PG_PORT \
	"payment.workers = $WORKERS" "payment.max_workers = $WORKERS" "payment.batch_size = 10" "payment.paused = on" \
	"payment.queue_url = '$QUEUE'" "payment.sqs_endpoint = '$ENDPOINT'" \
	"payment.aws_region = 'us-east-1'" "payment.wait_time = 1"
trap 'bench_stop_cluster; kill $FAUXQS_PID 2>/dev/null' EXIT
WORK=$BENCH_DIR

# a worker sees the reload after its current long poll (payment.wait_time)
pause()
{
	q "ALTER SYSTEM SET payment.paused = $1" && q "SELECT pg_reload_conf()" >/dev/null
	[ "$1" = on ] && sleep 1.5
	return 0
}

# (a) workers: pause, fill, unpause, time until every payment is stored
worker_rates=(); sdk_rates=()
for i in $(seq $RUNS); do
	q "TRUNCATE payment.payments"
	producer send --queue-url "$QUEUE" --valid $BACKLOG >/dev/null
	# paused workers must not have started: the rate would be inflated
	[ "$(q 'SELECT count(*) FROM payment.payments')" = 0 ] || { echo "workers not paused" >&2; exit 1; }
	start=$(now)
	pause off
	# poll in separate transactions, so no snapshot holds back vacuum
	while :; do
		bench_ask_into all_stored "SELECT count(*) >= $BACKLOG FROM payment.payments"
		[ "$all_stored" = t ] && break
		bench_nap 0.02
	done
	end=$(now)
	pause on
	worker_rates+=("$(awk -v n=$BACKLOG -v s="$start" -v e="$end" 'BEGIN {printf "%.0f", n / (e - s)}')")
	# the deletes follow the commits; let them finish before the SDK's turn
	for _ in $(seq 100); do
		[ "$(producer count --queue-url "$QUEUE" | json 'o.visible+o.in_flight')" = 0 ] && break
		sleep 0.1
	done

	producer send --queue-url "$QUEUE" --valid $BACKLOG >/dev/null
	# serial ReceiveMessage (10, no wait) + DeleteMessageBatch until empty
	drained=$(producer drain --queue-url "$QUEUE")
	[ "$(echo "$drained" | json o.deleted)" = "$BACKLOG" ] ||
		{ echo "SDK drained $(echo "$drained" | json o.deleted), not $BACKLOG" >&2; exit 1; }
	sdk_rates+=("$(echo "$drained" | json 'o.per_second.toFixed(0)')")
done
stored=$(q "SELECT count(*) FROM payment.payments")
[ "$stored" = "$BACKLOG" ] || { echo "expected $BACKLOG stored, found $stored" >&2; exit 1; }
w=$(median "${worker_rates[@]}"); s=$(median "${sdk_rates[@]}")

# (b) submit_payment via SQS: SendMessage per call, workers paused
echo "SELECT submit_payment(jsonb_build_object('paymentId', gen_random_uuid()::text,
  'userId', '0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4', 'dateTimestamp', '1709553600',
  'description', 'Regular payment made to Netflix from HSBC account',
  'currency', 'GBP', 'amount', 7.99));" > "$WORK/submit.sql"
submit_tps=()
for i in $(seq $RUNS); do
	submit_tps+=("$(pgbench -n -c $CLIENTS -j 2 -T $SECONDS_PER_RUN -f "$WORK/submit.sql" 2>/dev/null |
		awk '/^tps/ {print int($3); exit}')")
done
t=$(median "${submit_tps[@]}")
in_queue=$(producer count --queue-url "$QUEUE" | json o.visible)

echo
echo "SQS backend against fauxqs 1.9.2 on 127.0.0.1 ($(machine))"
echo "backlog $BACKLOG messages, $RUNS run(s) each, medians; workers=$WORKERS, batch 10"
printf '%-58s %12s\n' "measure" "per second"
printf '%-58s %12s\n' "workers drain (receive + store + delete)" "$w"
printf '%-58s %12s\n' "SDK serial receive+delete loop (stores nothing)" "$s"
printf '%-58s %12s\n' "ratio workers / SDK (target >= 1.5)" "$(ratio "$w" "$s")"
printf '%-58s %12s\n' "submit_payment via SQS, pgbench $CLIENTS clients (tps)" "$t"
echo "runs: workers ${worker_rates[*]}; SDK ${sdk_rates[*]}; submit ${submit_tps[*]}; $in_queue submitted messages in the queue"
