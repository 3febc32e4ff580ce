# Shared by the benchmarks: a throwaway cluster with the library preloaded,
# run as the postgres OS user (initdb refuses root); the payload they submit,
# their rates, medians and samplers; fauxqs and the AWS SDK producer for the
# SQS ones.  Source, then call bench_start_cluster PORT [extra
# postgresql.conf lines] (bench_start_sqs_cluster for SQS).
set -euo pipefail
PGBIN=${PGBIN:-$(pg_config --bindir)}
export PATH="$PGBIN:$PATH"
BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# bench_payload [DESCRIPTION]: the SQL of the payment every benchmark
# submits, a jsonb document with a fresh payment id; the description is the
# reference example's unless given.
bench_payload()
{
	echo "jsonb_build_object('paymentId', gen_random_uuid()::text,
  'userId', '0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4', 'dateTimestamp', '1709553600',
  'description', '${1:-Regular payment made to Netflix from HSBC account}',
  'currency', 'GBP', 'amount', 7.99)"
}
BENCH_PAYLOAD=$(bench_payload)
# the same, stamped with the submitting statement's clock, for latencies
BENCH_SENT_PAYLOAD="$BENCH_PAYLOAD || jsonb_build_object('sentAt', clock_timestamp())"

bench_start_cluster()
{
	local port=$1; shift
	BENCH_DIR=$(mktemp -d /tmp/payment-bench.XXXXXX)
	export PGHOST=$BENCH_DIR PGPORT=$port PGDATABASE=postgres
	initdb -D "$BENCH_DIR/data" -A trust -U postgres >/dev/null
	cat >> "$BENCH_DIR/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$BENCH_DIR'
port = $port
shared_preload_libraries = 'payment'
payment.database = 'postgres'
max_connections = 50
shared_buffers = 256MB
max_wal_size = 4GB
CONF
	for line in "$@"; do echo "$line" >> "$BENCH_DIR/data/postgresql.conf"; done
	pg_ctl -D "$BENCH_DIR/data" -l "$BENCH_DIR/log" -w start >/dev/null
	trap bench_stop_cluster EXIT
	psql -qX -c 'CREATE EXTENSION payment' >/dev/null
}

# Commands run at exit before the cluster stops (daemons, held sessions),
# also when the script ends before it started one.
BENCH_CLEANUP=()
bench_on_exit()
{
	BENCH_CLEANUP+=("$1")
	trap bench_stop_cluster EXIT
}

bench_stop_cluster()
{
	local c
	for c in "${BENCH_CLEANUP[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
	[ -n "${BENCH_DIR:-}" ] || return 0
	bench_ask_end
	pg_ctl -D "$BENCH_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
	rm -rf "$BENCH_DIR"
}

# median of the numbers given as arguments
median()
{
	printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'
}

ratio()
{
	awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'
}

# bench_rate N START END: N per second from clock reading START to END (now),
# rounded to a whole number; 0 if no time passed
bench_rate()
{
	awk -v n="$1" -v s="$2" -v e="$3" 'BEGIN {printf "%.0f", (e > s ? n / (e - s) : 0)}'
}

# bench_tps SECONDS SCRIPT [CLIENTS]: transactions per second of a pgbench
# run of SCRIPT, CLIENTS clients (default 4) on 2 threads, as a whole number
bench_tps()
{
	pgbench -n -c "${3:-4}" -j 2 -T "$1" -f "$2" 2>/dev/null |
		awk '/^tps/ {print int($3); exit}'
}

# bench_percentiles TABLE: "p50 p99 count" of the submit -> stored latency,
# in ms, of the payments in TABLE submitted as BENCH_SENT_PAYLOAD
bench_percentiles()
{
	q "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2) || ' ' ||
	          round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2) || ' ' || count(*)
	     FROM (SELECT extract(epoch FROM stored_at - (body->>'sentAt')::timestamptz) * 1000 AS ms
	             FROM $1 WHERE body ? 'sentAt') s"
}

q()
{
	psql -qXAt -c "$1"
}

machine()
{
	echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(postgres --version)"
}

# Empty the embedded queue (workers paused), so that every run starts alike;
# with it the key records of what it held.
empty_queue()
{
	q "TRUNCATE payment.queue_retry, payment.queue_events_0, payment.queue_events_1,
	   payment.queue_events_2, payment.queue_batches_0, payment.queue_batches_1,
	   payment.queue_batches_2, payment.idempotency_keys" >/dev/null
}

# Payments submitted since the server started and not settled yet, from the
# shared-memory counters: polling it costs nothing (payment.stats reads the
# whole queue).
BENCH_PENDING_SQL="SELECT greatest(submitted - stored - duplicates - dead_lettered, 0) FROM payment.counters()"

# Wait until the workers have settled every payment submitted.
wait_settled()
{
	local pending
	while :; do
		bench_ask_into pending "$BENCH_PENDING_SQL"
		[ "$pending" = 0 ] && break
		bench_nap 0.01
	done
}

# Pause or resume the workers (payment.paused is a reload setting), then
# give them BENCH_PAUSE_WAIT (on) or BENCH_RESUME_WAIT (off) seconds to take
# it: no view shows when a worker has.
BENCH_PAUSE_WAIT=0.2
BENCH_RESUME_WAIT=0.2
bench_pause()
{
	local wait=$BENCH_PAUSE_WAIT
	[ "$1" = on ] || wait=$BENCH_RESUME_WAIT
	q "ALTER SYSTEM SET payment.paused = $1" && q "SELECT pg_reload_conf()" >/dev/null
	# no sleep process at all where none is wanted: resuming is timed
	[ "$wait" = 0 ] || sleep "$wait"
}

# bench_pgbench_count PGBENCH-ARGS...: prints the number of transactions processed; fails
# (with pgbench's output) if any transaction failed.
bench_pgbench_count()
{
	local out
	if ! out=$(pgbench -n "$@" 2>&1); then
		echo "$out" >&2
		return 1
	fi
	awk '/^number of failed transactions: [1-9]/ {bad = 1}
	     /^number of transactions actually processed:/ {n = $NF; sub(/\/.*/, "", n)}
	     END {if (bad || n == "") exit 1; print n}' <<<"$out" || { echo "$out" >&2; return 1; }
}

# Wait until every submitted payment is settled and payment.payments holds N
# rows; polls in separate transactions so that the poller holds no
# snapshot back.  Fails when neither the queue's depth nor the count has moved
# for 30 s (a payment lost or stuck), or when the count passes N (one stored
# twice).
bench_wait_stored()
{
	bench_wait_count "$1" payment.payments "$BENCH_PENDING_SQL"
}

# bench_wait_count N TABLE [PENDING-QUERY]: until TABLE holds N rows, counted
# only once PENDING-QUERY (the queue's depth) returns 0; fails as
# bench_wait_stored does, progress being a change of either number.
bench_wait_count()
{
	local n=$1 table=$2 pending=${3:-SELECT 0} depth got=-1 state last= since=$EPOCHSECONDS
	while :; do
		bench_ask_into depth "$pending"
		if [ "$depth" = 0 ]; then
			bench_ask_into got "SELECT count(*) FROM $table"
			[ "$got" -ge "$n" ] && break
		fi
		state="$depth/$got"
		if [ "$state" != "$last" ]; then
			last=$state; since=$EPOCHSECONDS
		elif [ $((EPOCHSECONDS - since)) -gt 30 ]; then
			echo "$table: $got of $n stored (queue depth $depth), no progress for 30 s" \
				"(payment.dead_letters: $(q "SELECT count(*) FROM payment.dead_letters"))" >&2
			return 1
		fi
		bench_nap 0.01
	done
	[ "$got" = "$n" ] || { echo "$table: $got stored, expected $n" >&2; return 1; }
}

now()
{
	date +%s.%N
}

# Samplers that run while a rate is measured start no process: on a 2-core VM
# each psql costs about 35 ms of CPU and each cat or awk about 5 ms, so a
# sampler forking them every 0.5 s used a fifth of a core, taken from
# whichever system was being measured.

# CPU time (utime + stime, in clock ticks) of the given pids, summed into the
# variable named $1; a pid that is gone counts 0.
bench_cpu_ticks_into()
{
	local -n ticks_=$1
	local pid line fields
	shift
	ticks_=0
	for pid in "$@"; do
		{ read -r line < "/proc/$pid/stat"; } 2>/dev/null || continue
		# fields after the ")" that closes the command: 12 = utime, 13 = stime
		read -ra fields <<<"${line##*) }"
		ticks_=$((ticks_ + fields[11] + fields[12]))
	done
}

bench_cpu_ticks()
{
	local ticks
	bench_cpu_ticks_into ticks "$@"
	echo "$ticks"
}

# pids of this cluster's processes of a kind ('payment worker'), into the
# array named $1, from the postmaster's children's process titles
# ("postgres: payment worker 1").
bench_pids_into()
{
	local -n pids_=$1
	local postmaster child title children=()
	pids_=()
	read -r postmaster < "$BENCH_DIR/data/postmaster.pid"
	# one line without a newline: read reports the end of the file
	read -ra children < "/proc/$postmaster/task/$postmaster/children" || true
	for child in "${children[@]}"; do
		# a child that has just ended has no cmdline any more
		title=
		{ IFS= read -r -d '' title < "/proc/$child/cmdline" || [ -n "$title" ]; } 2>/dev/null || continue
		[[ $title == "postgres: $2"* ]] && pids_+=("$child")
	done
	return 0
}

# sleep $1 seconds, as a read that times out on a fifo nobody writes
bench_nap()
{
	[ -p "$BENCH_DIR/nap.fifo" ] || mkfifo "$BENCH_DIR/nap.fifo"
	[ -n "${BENCH_NAP_FD:-}" ] || exec {BENCH_NAP_FD}<>"$BENCH_DIR/nap.fifo"
	read -rt "$1" -u "$BENCH_NAP_FD" _ || true
}

# A query asked while a rate is measured, through one psql session kept open
# (until bench_ask_end, which a server restart needs): the answer's lines into
# the variable named $1.  Each query is its own transaction, so the session holds
# no snapshot between polls.  An error ends the session and fails the call.
bench_ask_into()
{
	local -n answer_=$1
	local line
	if [ -z "${BENCH_ASK_PID:-}" ] || ! kill -0 "$BENCH_ASK_PID" 2>/dev/null; then
		coproc BENCH_ASK { exec psql -qXAt -v ON_ERROR_STOP=1 2>&1; }
	fi
	printf '%s;\n\\echo bench-ask-end\n' "$2" >&"${BENCH_ASK[1]}"
	answer_=
	while IFS= read -r line <&"${BENCH_ASK[0]}"; do
		[ "$line" = bench-ask-end ] && return 0
		answer_+=${answer_:+$'\n'}$line
	done
	echo "bench_ask_into: the session ended: $answer_" >&2
	return 1
}

bench_ask_end()
{
	[ -n "${BENCH_ASK_PID:-}" ] || return 0
	local pid=$BENCH_ASK_PID fd=${BENCH_ASK[1]:-}
	# psql ends at the end of its input
	[ -z "$fd" ] || exec {fd}>&-
	wait "$pid" 2>/dev/null || true
	BENCH_ASK_PID=
}

# A session holding a snapshot: REPEATABLE READ, one read, then idle in
# transaction until bench_hold_stop.  Fed from a fifo so that it stays open.
bench_hold_start()
{
	mkfifo "$BENCH_DIR/hold.fifo"
	psql -qXAt -v ON_ERROR_STOP=1 -o /dev/null < "$BENCH_DIR/hold.fifo" &
	BENCH_HOLD_PID=$!
	exec 7> "$BENCH_DIR/hold.fifo"
	echo "SET application_name = 'bench hold'; BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM ${1:-payment.payments};" >&7
	local i
	for i in $(seq 500); do
		[ "$(q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bench hold'
		          AND state = 'idle in transaction' AND backend_xmin IS NOT NULL")" = 1 ] && return 0
		sleep 0.01
	done
	echo "bench_hold_start: the holding session did not start" >&2
	return 1
}

bench_hold_stop()
{
	[ -n "${BENCH_HOLD_PID:-}" ] || return 0
	echo "COMMIT;" >&7
	exec 7>&-
	wait "$BENCH_HOLD_PID" || true
	rm -f "$BENCH_DIR/hold.fifo"
	BENCH_HOLD_PID=
}

# Dead rows in the tables of schema $1 whose names start with $2, as the
# statistics system sees them after the backends' next flush.
bench_dead_rows()
{
	sleep 1.5
	psql -qXAt <<SQL
SELECT pg_stat_clear_snapshot() \\g /dev/null
SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE schemaname = '$1' AND relname LIKE '$2%';
SQL
}

# == SQS: the fauxqs emulator and the AWS SDK producer of test/sqs (npm ci) ==

# bench_wait_http URL: until URL answers, 10 s at most
bench_wait_http()
{
	local i
	for i in $(seq 100); do
		curl -sf "$1" >/dev/null && return 0
		sleep 0.1
	done
	echo "bench_wait_http: $1 did not answer" >&2
	return 1
}

# bench_peer SCRIPT ARGS...: test/sqs/SCRIPT run by node in the background,
# stopped at exit
bench_peer()
{
	local script=$1; shift
	node --no-warnings "$BENCH_ROOT/test/sqs/$script" "$@" >/dev/null &
	bench_on_exit "kill $!"
}

# bench_start_fauxqs PORT: the emulator on 127.0.0.1:PORT, with the SDK's
# credentials and region in the environment; BENCH_ENDPOINT is its URL, where
# producer and the workers send their requests (a script may put a proxy
# in front of it and point BENCH_ENDPOINT there)
bench_start_fauxqs()
{
	export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
	bench_peer fauxqs-server.mjs --port "$1"
	bench_wait_http "http://127.0.0.1:$1/health"
	BENCH_ENDPOINT=http://127.0.0.1:$1
}

# producer COMMAND ARGS...: test/sqs/producer.mjs against BENCH_ENDPOINT
producer()
{
	node --no-warnings "$BENCH_ROOT/test/sqs/producer.mjs" "$@" --endpoint "$BENCH_ENDPOINT"
}

# json EXPR: evaluate EXPR on the JSON object o read from stdin
json()
{
	node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const o=JSON.parse(s);console.log($1)})"
}

# true when no message of queue $1 is visible or in flight
bench_sqs_empty()
{
	[ "$(producer count --queue-url "$1" | json 'o.visible+o.in_flight')" = 0 ]
}

# bench_start_sqs_cluster PORT QUEUE-URL [more postgresql.conf lines]:
# bench_start_cluster with the workers on that queue at BENCH_ENDPOINT,
# paused, batches of 10, long polls of 1 s.  A worker takes a pause only
# after its current long poll (payment.wait_time): bench_pause on waits 1.5 s;
# resuming is timed, and waits for nothing.
bench_start_sqs_cluster()
{
	local port=$1 queue=$2; shift 2
	bench_start_cluster "$port" "$@" "payment.batch_size = 10" "payment.paused = on" \
		"payment.queue_url = '$queue'" "payment.sqs_endpoint = '$BENCH_ENDPOINT'" \
		"payment.aws_region = 'us-east-1'" "payment.wait_time = 1"
	BENCH_PAUSE_WAIT=1.5
	BENCH_RESUME_WAIT=0
}

# bench_sdk_drain QUEUE-URL N [producer drain options]: the AWS SDK's own
# receive+delete loop empties the queue; prints its messages per second,
# fails unless it deleted N
bench_sdk_drain()
{
	local drained deleted
	drained=$(producer drain --queue-url "$1" "${@:3}")
	deleted=$(echo "$drained" | json o.deleted)
	[ "$deleted" = "$2" ] || { echo "SDK drained $deleted, not $2" >&2; return 1; }
	echo "$drained" | json 'o.per_second.toFixed(0)'
}
