#!/usr/bin/env bash
# test/bench/auth.sh: submit_payment throughput with payment.auth = 'role'
# versus 'jwt' (token cache on, and off), measured in one run with pgbench
# against one throwaway cluster; prints medians of several runs.
#
#   test/bench/auth.sh [runs] [seconds] [clients]     (defaults 5 5 2)
#
# Run as a non-root user from the repository root, with the extension
# installed for the PostgreSQL that PG_CONFIG (default: pg_config) names and
# `npm ci` done.  Workers are off (the queue only grows) and
# synchronous_commit is off, so the numbers show the front door's CPU cost
# rather than WAL flushes.  Uses a port in 57000-57999 and 127.0.0.1 only.
set -euo pipefail

runs=${1:-5}
secs=${2:-5}
clients=${3:-2}
bindir=$("${PG_CONFIG:-pg_config}" --bindir)
work=$(mktemp -d /tmp/payment-auth-bench.XXXXXX)
port=$((57000 + RANDOM % 1000))
jport=$((57000 + RANDOM % 1000))
out=test/bench/out
mkdir -p "$out"

cleanup() {
	"$bindir/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
	[ -n "${jwks_pid:-}" ] && kill "$jwks_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

node test/auth/jwks-server.mjs "$jport" >"$work/jwks.out" 2>&1 &
jwks_pid=$!
for _ in $(seq 50); do grep -q READY "$work/jwks.out" 2>/dev/null && break; sleep 0.1; done
read -r _ _ issuer audience <"$work/jwks.out"
user=0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4
token=$(curl -sf "http://127.0.0.1:$jport/mint?case=access&sub=$user")

"$bindir/initdb" -D "$work/data" -A trust >/dev/null
cat >>"$work/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$work'
shared_preload_libraries = 'payment'
payment.workers = 0
synchronous_commit = off
payment.jwt_issuer = '$issuer'
payment.jwt_audience = '$audience'
payment.jwks_url = '$issuer/.well-known/jwks.json'
CONF
"$bindir/pg_ctl" -D "$work/data" -l "$work/log" -w start >/dev/null
psql() { "$bindir/psql" -X -q -h "$work" -p "$port" -d postgres "$@"; }
psql -c 'CREATE EXTENSION payment'

body="jsonb_build_object('paymentId', gen_random_uuid()::text, 'userId', '$user', 'dateTimestamp', '1709553600', 'description', 'bench', 'currency', 'GBP', 'amount', 7.99)"
echo "SELECT submit_payment($body);" >"$work/role.sql"
echo "SELECT submit_payment($body, 'Bearer $token');" >"$work/jwt.sql"

# one pgbench run on an empty queue (a growing queue would favour whichever
# mode runs first): prints transactions per second
bench() {
	local mode=$1 script=$2 cache=$3
	psql -c "ALTER SYSTEM SET payment.auth = '$mode'" \
		-c "ALTER SYSTEM SET payment.jwt_cache_size = $cache" -c 'SELECT pg_reload_conf()' \
		-c 'TRUNCATE payment.queue' -c 'CHECKPOINT' >/dev/null
	"$bindir/pgbench" -n -M prepared -h "$work" -p "$port" -c "$clients" -j "$clients" -T "$secs" \
		-f "$script" postgres 2>&1 | awk '/^tps/ {print $3}'
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

: >"$work/role.tps"; : >"$work/jwt.tps"; : >"$work/nocache.tps"
# a first jwt call proves the setup (a bad token would make pgbench abort)
psql -c "SET payment.auth = 'jwt'" -c "SELECT submit_payment($body, 'Bearer $token')" >/dev/null
# the order rotates each round so that drift on the machine spreads evenly
for i in $(seq "$runs"); do
	for m in $(printf 'role\njwt\nnocache\n' | awk -v i="$i" '{a[NR]=$0} END {for (k = 0; k < NR; k++) print a[(k + i) % NR + 1]}'); do
		case $m in
			role) bench role "$work/role.sql" 1024 >>"$work/role.tps" ;;
			jwt) bench jwt "$work/jwt.sql" 1024 >>"$work/jwt.tps" ;;
			nocache) bench jwt "$work/jwt.sql" 0 >>"$work/nocache.tps" ;;
		esac
	done
done

role=$(median <"$work/role.tps")
jwt=$(median <"$work/jwt.tps")
nocache=$(median <"$work/nocache.tps")
{
	echo "submit_payment throughput, pgbench -M prepared -c $clients -j $clients -T $secs, median of $runs runs ($(nproc) CPUs, synchronous_commit = off, workers off)"
	printf '  %-34s %10.0f tps  (runs: %s)\n' "payment.auth = 'role'" "$role" "$(tr '\n' ' ' <"$work/role.tps")"
	printf '  %-34s %10.0f tps  %.2fx  (runs: %s)\n' "payment.auth = 'jwt', token cache" "$jwt" \
		"$(awk "BEGIN {print $jwt / $role}")" "$(tr '\n' ' ' <"$work/jwt.tps")"
	printf '  %-34s %10.0f tps  %.2fx  (runs: %s)\n' "payment.auth = 'jwt', no cache" "$nocache" \
		"$(awk "BEGIN {print $nocache / $role}")" "$(tr '\n' ' ' <"$work/nocache.tps")"
} | tee "$out/auth-summary.txt"
