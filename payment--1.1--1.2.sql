-- payment--1.1--1.2.sql: what ALTER EXTENSION payment UPDATE adds to a 1.1
-- installation.  payment--1.0.sql and payment--1.0--1.1.sql are released and
-- never edited; every change to SQL objects from 1.1 on is made here.  Every
-- name is schema-qualified: the script runs with the installing session's
-- search_path after the extension's schema.

\echo Use "ALTER EXTENSION payment UPDATE TO '1.2'" to load this file. \quit

-- == Least privilege for the workers ==

-- Grants the role the workers connect as (payment.worker_role) what they
-- need and nothing more: the queue's tables, the store and the dead letters,
-- and a row-level security policy of payment.payments for that role alone.
-- Superuser only; idempotent.  Grants and policy are kept by later updates.
CREATE FUNCTION payment.grant_worker_privileges(role name)
RETURNS void
AS 'MODULE_PATHNAME', 'payment_grant_worker_privileges'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION payment.grant_worker_privileges(name) FROM PUBLIC;

-- == Issue 21: metrics ==

-- What the server counts in shared memory, in a long shape for scraping
-- (monitoring/queries.yaml): counters since server start, dead letters by
-- reason (label), workers busy, and the submit-to-stored latency of the
-- last minute.  Reads no table; every value resets at server restart; NULL
-- values when the library is not preloaded (latency: no payment stored in
-- the last minute).
CREATE FUNCTION payment.metrics(
    OUT metric text, OUT label text, OUT value double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'payment_metrics'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION payment.metrics() FROM PUBLIC;

-- Every 1.1 column, in its order and meaning; appended: dead letters by
-- reason since server start, the payments stored in the last minute and
-- their submit-to-stored latency (median and 99th percentile, within
-- 12.5%; NULL when none was stored in the last minute).
CREATE OR REPLACE VIEW payment.stats AS
SELECT c.submitted,
       c.stored,
       c.duplicates,
       c.conflicts,
       c.dead_lettered,
       c.retried,
       c.redriven,
       q.queue_depth,
       q.in_flight,
       q.oldest_queued_age,
       (SELECT count(*) FROM payment.dead_letters) AS dead_letters,
       (SELECT count(*) FROM pg_catalog.pg_stat_activity
         WHERE backend_type = 'payment worker'
           AND datname = pg_catalog.current_database()) AS workers,
       c.workers_busy,
       c.scale_events,
       m.dead_lettered_invalid,
       m.dead_lettered_conflict,
       m.dead_lettered_max_receives,
       m.stored_last_minute,
       m.latency_p50,
       m.latency_p99
FROM payment.counters() AS c,
     (SELECT count(*) AS queue_depth,
             count(*) FILTER (WHERE receive_count > 0) AS in_flight,
             clock_timestamp() - min(enqueued_at) AS oldest_queued_age
        FROM payment.queue) AS q,
     (SELECT max(value) FILTER (WHERE metric = 'dead_lettered_total'
                                  AND label = 'invalid')::bigint AS dead_lettered_invalid,
             max(value) FILTER (WHERE metric = 'dead_lettered_total'
                                  AND label = 'conflict')::bigint AS dead_lettered_conflict,
             max(value) FILTER (WHERE metric = 'dead_lettered_total'
                                  AND label = 'max_receives')::bigint AS dead_lettered_max_receives,
             max(value) FILTER (WHERE metric = 'stored_last_minute')::bigint AS stored_last_minute,
             pg_catalog.make_interval(secs => max(value) FILTER (
                 WHERE metric = 'store_latency_p50_seconds')) AS latency_p50,
             pg_catalog.make_interval(secs => max(value) FILTER (
                 WHERE metric = 'store_latency_p99_seconds')) AS latency_p99
        FROM payment.metrics()) AS m;
