#!/usr/bin/env bash
# test/bench/auth.sh: submit_payment throughput with payment.auth = 'role'
# versus 'jwt' (token cache on, and off), measured in one run with pgbench
# against one throwaway cluster (test/bench/lib.sh); prints medians.
#
#   test/bench/auth.sh [runs] [seconds] [clients]     (defaults 5 5 2)
#   test/bench/auth.sh --short                          (2 runs of 2 s: CI)
#
# Run as the postgres OS user from the repository root after `npm ci`, with
# the extension installed for the PostgreSQL in $PGBIN (default: pg_config's).
# Workers are off (the queue only grows) and synchronous_commit is off, so
# the numbers show the front door's CPU cost rather than WAL flushes.  Ports
# in 57000-57999, 127.0.0.1 only.
source "$(dirname "$0")/lib.sh"

if [ "${1:-}" = "--short" ]; then
	set -- 2 2 2
fi
runs=${1:-5}
secs=${2:-5}
clients=${3:-2}
port=$((57000 + RANDOM % 1000))
jport=$((57000 + RANDOM % 1000))
out=test/bench/out
mkdir -p "$out"

jwks_out=$(mktemp /tmp/payment-auth-jwks.XXXXXX)
node test/auth/jwks-server.mjs "$jport" >"$jwks_out" 2>&1 &
jwks_pid=$!
for _ in $(seq 50); do grep -q READY "$jwks_out" && break; sleep 0.1; done
read -r _ _ issuer audience <"$jwks_out"
# the user of every payload (bench_payload): the token must be hers
user=0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4
token=$(node --input-type=module -e "process.stdout.write(await (await fetch('http://127.0.0.1:$jport/mint?case=access&sub=$user')).text())")

bench_start_cluster "$port" "payment.workers = 0" "synchronous_commit = off" \
	"payment.jwt_issuer = '$issuer'" "payment.jwt_audience = '$audience'" \
	"payment.jwks_url = '$issuer/.well-known/jwks.json'"
trap 'bench_stop_cluster; kill $jwks_pid; rm -f "$jwks_out"' EXIT

body=$(bench_payload bench)
echo "SELECT submit_payment($body);" >"$BENCH_DIR/role.sql"
echo "SELECT submit_payment($body, 'Bearer $token');" >"$BENCH_DIR/jwt.sql"

# one pgbench run on an empty queue (a growing queue would favour whichever
# mode runs first): prints transactions per second
bench() {
	local mode=$1 script=$2 cache=$3
	q "ALTER SYSTEM SET payment.auth = '$mode'" >/dev/null
	q "ALTER SYSTEM SET payment.jwt_cache_size = $cache" >/dev/null
	q "SELECT pg_reload_conf()" >/dev/null
	empty_queue
	q "CHECKPOINT" >/dev/null
	pgbench -n -M prepared -c "$clients" -j "$clients" -T "$secs" -f "$script" 2>&1 |
		awk '/^tps/ {print $3}'
}

# a first jwt call proves the setup (a bad token would make pgbench abort)
psql -qXAt -c "SET payment.auth = 'jwt'" -c "SELECT submit_payment($body, 'Bearer $token')" >/dev/null

role=(); jwt=(); nocache=()
# the order rotates each round so that drift on the machine spreads evenly
for i in $(seq "$runs"); do
	for m in $(printf 'role\njwt\nnocache\n' | awk -v i="$i" '{a[NR]=$0} END {for (k = 0; k < NR; k++) print a[(k + i) % NR + 1]}'); do
		case $m in
			role) role+=("$(bench role "$BENCH_DIR/role.sql" 1024)") ;;
			jwt) jwt+=("$(bench jwt "$BENCH_DIR/jwt.sql" 1024)") ;;
			nocache) nocache+=("$(bench jwt "$BENCH_DIR/jwt.sql" 0)") ;;
		esac
	done
done

r=$(median "${role[@]}"); j=$(median "${jwt[@]}"); n=$(median "${nocache[@]}")
{
	echo "submit_payment throughput, pgbench -M prepared -c $clients -j $clients -T $secs, median of $runs runs"
	echo "($(machine); synchronous_commit = off, workers off)"
	printf '  %-34s %8.0f tps         (runs: %s)\n' "payment.auth = 'role'" "$r" "$(printf '%.0f ' "${role[@]}")"
	printf '  %-34s %8.0f tps  %sx  (runs: %s)\n' "payment.auth = 'jwt', token cache" "$j" "$(ratio "$j" "$r")" "$(printf '%.0f ' "${jwt[@]}")"
	printf '  %-34s %8.0f tps  %sx  (runs: %s)\n' "payment.auth = 'jwt', no cache" "$n" "$(ratio "$n" "$r")" "$(printf '%.0f ' "${nocache[@]}")"
} | tee "$out/auth-summary.txt"
