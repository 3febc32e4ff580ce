#!/usr/bin/env bash
# Benchmark of the elastic pool against SQS at real-world latency: fauxqs on
# 127.0.0.1 behind test/sqs/latency-proxy.mjs ($LATENCY ms a request, default
# 20, as in-region SQS calls take), in one run:
#  (a) time from a backlog appearing to the pool reaching payment.max_workers
#      (from payment.workers = 2 to 8; it grows in one step to the size the
#      depth needs: target < 2 s);
#  (b) drain rate of the elastic pool once grown, vs a fixed pool of 8
#      (payment.workers = payment.max_workers = 8), each storing every payment;
#  (c) vs the AWS SDK consuming with 8 concurrent receive+delete loops, which
#      stores nothing: whole-drain seconds of the backlog, growth included,
#      run by run (target: the SDK takes >= 1.5x as long in every run).
# Medians of several runs.  Usage (as the postgres OS user, after npm ci):
#   scale.sh [--short]
# LATENCY_LOG=<file> keeps the proxy's log of every receive and delete (see
# latency-proxy.mjs), with a {"op":"phase"} line before each part, for
# profile-inflight.mjs.
source "$(dirname "$0")/lib.sh"

RUNS=3; BACKLOG=20000
if [ "${1:-}" = "--short" ]; then
	# the whole drain of 20,000, growth included, is what (c) compares
	RUNS=2; BACKLOG=20000
fi
LATENCY=${LATENCY:-20}
MAX=8
PG_PORT=56510
FAUXQS_PORT=56511
LATENCY_PORT=56512
CONTROL_PORT=56513

bench_start_fauxqs $FAUXQS_PORT
bench_peer latency-proxy.mjs --port $LATENCY_PORT \
	--control-port $CONTROL_PORT --upstream "$BENCH_ENDPOINT" \
	--latency-ms "$LATENCY" ${LATENCY_LOG:+--log "$LATENCY_LOG"}
bench_wait_http "http://127.0.0.1:$CONTROL_PORT/__stats"
# the workers and the producer go through the latency proxy
BENCH_ENDPOINT=http://127.0.0.1:$LATENCY_PORT
latency() { curl -sf -X POST "http://127.0.0.1:$CONTROL_PORT/__latency?ms=$1" >/dev/null; }
QUEUE=$(producer create --queue bench | json o.queueUrl)

bench_start_sqs_cluster $PG_PORT "$QUEUE" \
	"payment.workers = 2" "payment.max_workers = $MAX" "max_worker_processes = 16" \
	"payment.scale_up_after = '1s'" "payment.scale_down_after = '3s'"

workers() { q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'payment worker'"; }

# a backlog sent without latency (the producer is not what is measured)
fill()
{
	q "TRUNCATE payment.payments"
	latency 0
	producer send --queue-url "$QUEUE" --valid $BACKLOG >/dev/null
	latency "$LATENCY"
	[ "$(q 'SELECT count(*) FROM payment.payments')" = 0 ] || { echo "workers not paused" >&2; exit 1; }
}

# wait until the queue is empty and the pool is back at payment.workers
settle()
{
	local want=$1
	for _ in $(seq 300); do
		bench_sqs_empty "$QUEUE" && [ "$(workers)" = "$want" ] && return 0
		sleep 0.1
	done
	echo "queue not empty or pool not back at $want workers" >&2; exit 1
}

# drain the backlog; sets START END FULL_AT STORED_AT_FULL
drain()
{
	START=$(now); FULL_AT=""; STORED_AT_FULL=0
	bench_pause off
	while :; do
		local row n stored
		bench_ask_into row "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'payment worker'),
		                (SELECT count(*) FROM payment.payments)"
		n=${row%%|*}; stored=${row##*|}
		if [ -z "$FULL_AT" ] && [ "$n" -ge $MAX ]; then FULL_AT=$(now); STORED_AT_FULL=$stored; fi
		[ "$stored" -ge $BACKLOG ] && break
		bench_nap 0.05
	done
	END=$(now)
	bench_pause on
}

seconds_for() { awk -v n="$1" -v r="$2" 'BEGIN {printf "%.1f", n / r}'; }

phase() { [ -z "${LATENCY_LOG:-}" ] || echo "{\"op\":\"phase\",\"name\":\"$1\"}" >>"$LATENCY_LOG"; }

# (a), (b) the elastic pool
phase elastic
grow=(); elastic=(); elastic_all=()
for i in $(seq $RUNS); do
	settle 2
	fill
	drain
	[ -n "$FULL_AT" ] || { echo "the pool never reached $MAX workers" >&2; exit 1; }
	grow+=("$(awk -v s="$START" -v e="$FULL_AT" 'BEGIN {printf "%.1f", e - s}')")
	elastic+=("$(bench_rate $((BACKLOG - STORED_AT_FULL)) "$FULL_AT" "$END")")
	elastic_all+=("$(bench_rate $BACKLOG "$START" "$END")")
done
settle 2

# (b) a fixed pool of 8
phase fixed
q "ALTER SYSTEM SET payment.workers = $MAX" >/dev/null
bench_ask_end
pg_ctl -D "$BENCH_DIR/data" -l "$BENCH_DIR/log" -w restart >/dev/null
fixed=()
for i in $(seq $RUNS); do
	settle $MAX
	fill
	drain
	fixed+=("$(bench_rate $BACKLOG "$START" "$END")")
done
stored=$(q "SELECT count(*) FROM payment.payments")
[ "$stored" = "$BACKLOG" ] || { echo "expected $BACKLOG stored, found $stored" >&2; exit 1; }
settle $MAX

# (c) the SDK, 8 concurrent receive+delete loops through the same latency
phase sdk
sdk=()
for i in $(seq $RUNS); do
	latency 0
	producer send --queue-url "$QUEUE" --valid $BACKLOG >/dev/null
	latency "$LATENCY"
	rate=$(bench_sdk_drain "$QUEUE" $BACKLOG --loops $MAX)
	sdk+=("$rate")
done

whole=(); sdk_whole=(); whole_ratio=()
for i in $(seq 0 $((RUNS - 1))); do
	whole+=("$(seconds_for $BACKLOG "${elastic_all[$i]}")")
	sdk_whole+=("$(seconds_for $BACKLOG "${sdk[$i]}")")
	whole_ratio+=("$(ratio "${elastic_all[$i]}" "${sdk[$i]}")")
done
worst=$(printf '%s\n' "${whole_ratio[@]}" | sort -g | head -1)
slowest_grow=$(printf '%s\n' "${grow[@]}" | sort -g | tail -1)
g=$(median "${grow[@]}"); e=$(median "${elastic[@]}"); ea=$(median "${elastic_all[@]}")
f=$(median "${fixed[@]}"); s=$(median "${sdk[@]}")
echo
echo "Elastic pool against fauxqs 1.9.2 behind a ${LATENCY} ms latency proxy ($(machine))"
echo "backlog $BACKLOG messages, $RUNS run(s) each, medians; batch 10, payment.workers 2, payment.max_workers $MAX"
printf '%-66s %10s\n' "measure" "value"
printf '%-66s %10s\n' "(a) seconds from the backlog to $MAX workers (target < 2)" "$g"
printf '%-66s %10s\n' "    slowest run" "$slowest_grow"
printf '%-66s %10s\n' "(b) elastic pool once grown, payments stored/s" "$e"
printf '%-66s %10s\n' "    elastic pool over the whole drain, stored/s" "$ea"
printf '%-66s %10s\n' "    fixed pool of $MAX, stored/s" "$f"
printf '%-66s %10s\n' "    ratio elastic once grown / fixed (target >= 0.9)" "$(ratio "$e" "$f")"
printf '%-66s %10s\n' "(c) SDK, $MAX concurrent receive+delete loops (stores nothing), /s" "$s"
printf '%-66s %10s\n' "    ratio elastic once grown / SDK (target >= 1.5)" "$(ratio "$e" "$s")"
printf '%-66s %10s\n' "whole drain of $BACKLOG, growth included: elastic seconds (median)" "$(median "${whole[@]}")"
printf '%-66s %10s\n' "    SDK's $MAX loops, seconds (median)" "$(median "${sdk_whole[@]}")"
printf '%-66s %10s\n' "    SDK time / elastic time, worst run (target >= 1.5)" "$worst"
echo "runs: whole drain elastic ${whole[*]} s vs SDK ${sdk_whole[*]} s (ratios ${whole_ratio[*]});"
echo "runs: grow ${grow[*]}; elastic ${elastic[*]}; elastic whole ${elastic_all[*]}; fixed ${fixed[*]}; SDK ${sdk[*]}"
