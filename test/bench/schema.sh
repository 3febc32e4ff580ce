#!/usr/bin/env bash
# Benchmark of the payment schemas, in one run on one server:
#  (a) submit_payment throughput (pgbench, workers paused: intake alone)
#      under a realistic strict team schema (enum, pattern, multipleOf,
#      additionalProperties false, a $ref, format uuid) vs the built-in
#      reference schema, runs alternated; target: strict >= 0.9x reference;
#  (b) validate_json documents/s on the strict payment schema and on the
#      reference one (one backend, compiled once per statement).
# Usage (as the postgres OS user): schema.sh [--short]
source "$(dirname "$0")/lib.sh"

RUNS=5; SECONDS_PER_RUN=10; DOCS=50000
if [ "${1:-}" = "--short" ]; then
	RUNS=3; SECONDS_PER_RUN=3; DOCS=10000
fi
CLIENTS=4

bench_start_cluster 55503 "payment.paused = on"
WORK=$BENCH_DIR
STRICT='{
  "$schema": "http://json-schema.org/draft-04/schema#",
  "type": "object",
  "required": ["paymentId", "userId", "amount", "currency", "dateTimestamp", "description"],
  "additionalProperties": false,
  "properties": {
    "paymentId": {"$ref": "#/definitions/uuid"},
    "userId": {"$ref": "#/definitions/uuid"},
    "amount": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1000000, "multipleOf": 0.01},
    "currency": {"enum": ["GBP", "EUR", "USD", "JPY", "CHF", "CAD", "AUD"]},
    "dateTimestamp": {"type": "string", "pattern": "^[0-9]{10}$"},
    "description": {"type": "string", "minLength": 1, "maxLength": 256}
  },
  "definitions": {"uuid": {"type": "string", "format": "uuid"}}
}'
REFERENCE='{"type": "object",
  "required": ["amount", "currency", "dateTimestamp", "description", "paymentId", "userId"],
  "properties": {"paymentId": {"type": "string", "format": "uuid"}, "userId": {"type": "string", "format": "uuid"},
    "dateTimestamp": {"type": "string"}, "description": {"type": "string", "maxLength": 256},
    "currency": {"type": "string"}, "amount": {"type": "number"}}}'

q "SELECT set_payment_schema('$STRICT', 'benchmark: strict')" >/dev/null
q "UPDATE payment.schemas SET active = false"
echo "SELECT submit_payment($BENCH_PAYLOAD);" > "$WORK/submit.sql"

use_schema()
{
	q "UPDATE payment.schemas SET active = $1"
	empty_queue
}

# (a) alternated, so that both see the same machine state
ref_tps=(); strict_tps=()
for i in $(seq $RUNS); do
	use_schema false
	ref_tps+=("$(bench_tps "$SECONDS_PER_RUN" "$WORK/submit.sql" $CLIENTS)")
	use_schema true
	strict_tps+=("$(bench_tps "$SECONDS_PER_RUN" "$WORK/submit.sql" $CLIENTS)")
done
a_ref=$(median "${ref_tps[@]}"); a_strict=$(median "${strict_tps[@]}")

# (b) documents/s through validate_json, one backend
q "CREATE TABLE docs AS SELECT $BENCH_PAYLOAD AS body FROM generate_series(1, $DOCS)"
q "CREATE FUNCTION docs_per_second(schema jsonb) RETURNS numeric LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz := clock_timestamp(); ok bigint;
BEGIN
  SELECT count(*) FILTER (WHERE (validate_json(body, schema) ->> 'valid')::bool) INTO ok FROM docs;
  IF ok <> $DOCS THEN RAISE EXCEPTION 'only % of % documents valid', ok, $DOCS; END IF;
  RETURN round($DOCS / extract(epoch FROM clock_timestamp() - t0));
END \$\$"
strict_dps=(); ref_dps=()
for i in $(seq $RUNS); do
	strict_dps+=("$(q "SELECT docs_per_second('$STRICT')")")
	ref_dps+=("$(q "SELECT docs_per_second('$REFERENCE')")")
done
b_strict=$(median "${strict_dps[@]}"); b_ref=$(median "${ref_dps[@]}")

echo
echo "payment schema benchmark ($(machine)); medians of $RUNS runs"
printf '%-58s %12s\n' "measure" "value"
printf '%-58s %12s\n' "submit_payment tps, reference schema ($CLIENTS clients, ${SECONDS_PER_RUN}s)" "$a_ref"
printf '%-58s %12s\n' "submit_payment tps, strict team schema" "$a_strict"
printf '%-58s %11sx\n' "strict / reference (target >= 0.9)" "$(ratio "$a_strict" "$a_ref")"
printf '%-58s %12s\n' "validate_json documents/s, strict payment schema" "$b_strict"
printf '%-58s %12s\n' "validate_json documents/s, reference schema" "$b_ref"
