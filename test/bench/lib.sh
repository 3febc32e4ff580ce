# Shared by the benchmarks: a throwaway cluster with the library preloaded,
# run as the postgres OS user (initdb refuses root).  Source, then call
# bench_start_cluster PORT [extra postgresql.conf lines].
set -euo pipefail
PGBIN=${PGBIN:-$(pg_config --bindir)}
export PATH="$PGBIN:$PATH"

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

bench_stop_cluster()
{
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

q()
{
	psql -qXAt -c "$1"
}

machine()
{
	echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(postgres --version)"
}

# Empty the embedded queue (workers paused), so that every run starts alike.
empty_queue()
{
	q "TRUNCATE payment.queue_retry, payment.queue_events_0, payment.queue_events_1,
	   payment.queue_events_2, payment.queue_batches_0, payment.queue_batches_1,
	   payment.queue_batches_2" >/dev/null
}

# Wait until the workers have settled every payment submitted since the
# server started: shared-memory counters, so that polling costs nothing.
wait_settled()
{
	while [ "$(q "SELECT stored + duplicates + dead_lettered >= submitted FROM payment.counters()")" != t ]; do
		sleep 0.01
	done
}
