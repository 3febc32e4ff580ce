#!/usr/bin/env bash
# The set-up command: installs every dependency, builds and installs the
# extension, starts a local PostgreSQL 15 cluster with
# shared_preload_libraries = 'payment', creates the extension, submits the
# reference example payment, waits until it is stored, shows it, and leaves
# the server running.  Run as root: bash test/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash test/install-deps.sh
make -s
make -s install >/dev/null

PGBIN=$(pg_config --bindir)
DATA=/var/lib/postgresql/payment-demo
PORT=${PAYMENT_DEMO_PORT:-5499}
SOCK=/var/run/postgresql
mkdir -p "$SOCK" && chown postgres "$SOCK"

if [ ! -d "$DATA" ]; then
	su postgres -c "$PGBIN/initdb -D '$DATA' -A peer -U postgres" >/dev/null
	cat >> "$DATA/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$SOCK'
shared_preload_libraries = 'payment'
payment.database = 'postgres'
# the pool grows to payment.max_workers (8), plus its launcher
max_worker_processes = 16
CONF
fi
# a server left running is restarted, so that it preloads the library just installed
if su postgres -c "$PGBIN/pg_ctl -D '$DATA' -w status" >/dev/null 2>&1; then
	su postgres -c "$PGBIN/pg_ctl -D '$DATA' -l '$DATA/server.log' -w restart" >/dev/null
else
	su postgres -c "$PGBIN/pg_ctl -D '$DATA' -l '$DATA/server.log' -w start" >/dev/null
fi

psql_demo() { su postgres -c "psql -X -h $SOCK -p $PORT -d postgres $*"; }
psql_demo "-qc 'CREATE EXTENSION IF NOT EXISTS payment'"
psql_demo "-c \"SELECT submit_payment('{
  \\\"paymentId\\\": \\\"2d5a8218-3c6a-436e-b724-8dff12e7010d\\\",
  \\\"userId\\\": \\\"0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4\\\",
  \\\"dateTimestamp\\\": \\\"1709553600\\\",
  \\\"description\\\": \\\"Regular payment made to Netflix from HSBC account\\\",
  \\\"currency\\\": \\\"GBP\\\",
  \\\"amount\\\": 7.99}')\""
for i in $(seq 100); do
	status=$(psql_demo "-qAtc \"SELECT payment_status('2d5a8218-3c6a-436e-b724-8dff12e7010d') ->> 'status'\"")
	[ "$status" = stored ] && break
	sleep 0.1
done
psql_demo "-c \"SELECT payment_status('2d5a8218-3c6a-436e-b724-8dff12e7010d')\""
psql_demo "-xc \"SELECT payment_id, user_id, amount, currency, description, date_timestamp, message_id, stored_at FROM payment.payments WHERE payment_id = '2d5a8218-3c6a-436e-b724-8dff12e7010d'\""
psql_demo "-xc 'SELECT * FROM payment.stats'"
echo
echo "The server is running.  Connect with:"
echo "  su postgres -c \"psql -h $SOCK -p $PORT -d postgres\""
