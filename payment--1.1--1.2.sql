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

-- == An idempotent front door ==

-- The key record of every payment the front door accepted and the store has
-- not yet settled: submit_payment finds a retry here (the same body: the
-- first answer, replayed) or a reused key (another body: refused), and waits
-- for a transaction that is submitting the same key.  Once the payment is
-- stored, payment.payments is its record; a dead-lettered payment's row is
-- removed, so that submitting it again is a fresh attempt.  Small (the
-- backlog only): inserted and deleted once per payment, vacuumed by count.
CREATE TABLE payment.idempotency_keys (
    payment_id    uuid        NOT NULL,
    user_id       uuid        NOT NULL,
    -- NULL only inside the submitting transaction, until SQS has named the message
    message_id    text,
    -- SHA-256 of the body in a form that JSON-equal bodies share
    body_digest   bytea       NOT NULL,
    request_id    text,
    submitted_by  text,
    accepted_at   timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    PRIMARY KEY (payment_id, user_id)
)
WITH (autovacuum_vacuum_scale_factor = 0,
      autovacuum_vacuum_threshold = 1000,
      autovacuum_vacuum_insert_scale_factor = 0,
      autovacuum_vacuum_cost_delay = 0);
REVOKE ALL ON payment.idempotency_keys FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('payment.idempotency_keys', '');

-- Who sent a payment and under which request id, from the call to the stored
-- row or the dead letter (NULL for rows from before 1.2).  The embedded
-- queue's messages carry them in their key record, SQS messages also as
-- message attributes: the event tables stay as narrow as they were.
ALTER TABLE payment.payments ADD COLUMN request_id text, ADD COLUMN submitted_by text;
ALTER TABLE payment.dead_letters ADD COLUMN request_id text, ADD COLUMN submitted_by text;

-- The digest the key record keeps of a body (NULL for text that is not JSON).
CREATE FUNCTION payment.body_digest(body text)
RETURNS bytea
AS 'MODULE_PATHNAME', 'payment_body_digest'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION payment.body_digest(text) FROM PUBLIC;

-- Messages queued before the update get their key record, so that a retry
-- of one is answered as a replay and payment_status finds it by its key.
INSERT INTO payment.idempotency_keys
    (payment_id, user_id, message_id, body_digest, accepted_at)
SELECT DISTINCT ON (q.payment_id, q.user_id)
       q.payment_id, q.user_id, q.message_id::text, payment.body_digest(q.body), q.enqueued_at
  FROM payment.queue_messages() AS q
 WHERE q.payment_id IS NOT NULL AND q.user_id IS NOT NULL
   AND payment.body_digest(q.body) IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM payment.payments AS p
                    WHERE p.payment_id = q.payment_id AND p.user_id = q.user_id)
 ORDER BY q.payment_id, q.user_id, q.seq;

-- == Metrics ==

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
