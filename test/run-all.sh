#!/usr/bin/env bash
# The test command: installs every dependency, builds and installs the
# extension, then runs, as the postgres OS user on a copy it owns, the
# pg_regress suite, the isolation specs (test/isolation), every TAP test (test/t/*.pl, including the SQS and auth
# integration tests against real peers) and the benchmarks in short form.
# Run as root: bash test/run-all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bash test/install-deps.sh
make -s clean >/dev/null
make -s
make -s install >/dev/null

work=$(mktemp -d /tmp/payment-tests.XXXXXX)
rsync -a --exclude .git --exclude results --exclude tmp_check "$root/" "$work/"
chown -R postgres "$work"
trap 'rm -rf "$work"' EXIT

status=0
su postgres -c "cd '$work' && make -s installcheck" || status=$?
if [ $status -ne 0 ]; then
	for d in "$work/regression.diffs" "$work/output_iso/regression.diffs"; do
		[ -f "$d" ] && cat "$d"
	done
	for f in "$work"/tmp_check/log/regress_log_*; do
		[ -f "$f" ] && { echo "==== $f"; tail -n 60 "$f"; }
	done
	exit $status
fi

if [ "${PAYMENT_SKIP_BENCH:-}" != "1" ]; then
	for bench in "$work"/test/bench/*.sh; do
		case "$bench" in */lib.sh) continue ;; esac
		su postgres -c "cd '$work' && bash '$bench' --short"
	done
fi
echo "all payment tests passed"
