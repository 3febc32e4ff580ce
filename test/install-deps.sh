#!/usr/bin/env bash
# Installs everything the build and the tests need (run as root on Debian 12):
# the server headers pinned to the installed PostgreSQL 15 server's version,
# libcurl, OpenSSL, IPC::Run for the TAP tests, PgQ for the benchmark,
# postgres_exporter for the Prometheus test, and the npm test peers from
# package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps.sh: run as root (it uses apt-get)" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq

server_version=$(dpkg-query -W -f='${Version}' postgresql-15 2>/dev/null || true)
if [ -z "$server_version" ]; then
	apt-get install -y -qq postgresql-15 >/dev/null
	server_version=$(dpkg-query -W -f='${Version}' postgresql-15)
fi

apt-get install -y -qq \
	"postgresql-server-dev-15=$server_version" \
	libcurl4-openssl-dev libssl-dev libipc-run-perl \
	make gcc rsync openssl curl >/dev/null

# PgQ, the baseline of test/bench/pgq.sh: Debian builds it for the PostgreSQL 15
# ABI and it depends on no particular server version, so it is not pinned
apt-get install -y -qq postgresql-15-pgq3 pgqd >/dev/null

# postgres_exporter, run by test/t/710_prometheus_exporter.pl against a test
# cluster (its own service is not needed: Debian's policy may start it)
apt-get install -y -qq prometheus-postgres-exporter >/dev/null

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	apt-get install -y -qq nodejs npm >/dev/null
fi
npm ci --no-audit --no-fund --loglevel=error
echo "dependencies installed (PostgreSQL $server_version, node $(node --version))"
