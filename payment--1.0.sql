-- payment--1.0.sql: schema objects and thin declarations of the C entry points.
-- Data lives in schema payment; the front-door functions live in the schema the
-- extension is created in (public by default) so that they work with the default
-- search_path.  Every function pins search_path; nothing is granted to PUBLIC.

\echo Use "CREATE EXTENSION payment" to load this file. \quit

CREATE SCHEMA payment;
REVOKE ALL ON SCHEMA payment FROM PUBLIC;

-- Stored payments, one row per (payment_id, user_id): the DynamoDB table's keys.
CREATE TABLE payment.payments (
    payment_id      uuid        NOT NULL,
    user_id         uuid        NOT NULL,
    amount          numeric     NOT NULL,
    currency        text        NOT NULL,
    description     text        NOT NULL,
    date_timestamp  text        NOT NULL,
    body            jsonb       NOT NULL,
    message_id      text        NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (payment_id, user_id)
);
CREATE INDEX payments_user_id_idx ON payment.payments (user_id);

-- The embedded queue: WAL-logged, so an acknowledged submission survives a crash.
-- A claim makes a row invisible until visible_at (the visibility timeout) and
-- counts the receive; the store deletes it in the transaction that stores it.
CREATE TABLE payment.queue (
    seq             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id      uuid        NOT NULL DEFAULT gen_random_uuid(),
    payment_id      uuid,
    user_id         uuid,
    body            text        NOT NULL,
    enqueued_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    visible_at      timestamptz NOT NULL DEFAULT now(),
    receive_count   integer     NOT NULL DEFAULT 0
)
-- every message is inserted, updated once per receive and deleted: vacuum by
-- the count of dead rows, not by the (always small) size of the table
WITH (autovacuum_vacuum_scale_factor = 0,
      autovacuum_vacuum_threshold = 1000,
      autovacuum_vacuum_insert_scale_factor = 0,
      autovacuum_vacuum_cost_delay = 0);
CREATE INDEX queue_payment_id_idx ON payment.queue (payment_id);

-- Whoever adds messages (submit_payment, redrive, an operator by hand), the
-- workers are woken when that transaction commits.
CREATE FUNCTION payment.wake_workers_at_commit() RETURNS trigger
AS 'MODULE_PATHNAME', 'payment_wake_workers_at_commit'
LANGUAGE C SET search_path = pg_catalog, pg_temp;
CREATE TRIGGER queue_wake AFTER INSERT ON payment.queue
  FOR EACH STATEMENT EXECUTE FUNCTION payment.wake_workers_at_commit();

-- Messages that could not be stored, with the reason; never lost.
CREATE TABLE payment.dead_letters (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id       text,
    payment_id       uuid,
    user_id          uuid,
    body             text        NOT NULL,
    reason           text        NOT NULL,
    error            text,
    receive_count    integer     NOT NULL DEFAULT 0,
    dead_lettered_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX dead_letters_payment_id_idx ON payment.dead_letters (payment_id);
CREATE INDEX dead_letters_reason_idx ON payment.dead_letters (reason);

-- Front door (the reference design's PUT /submit).  SECURITY DEFINER so that a
-- client role granted EXECUTE can enqueue without any table privilege.
CREATE FUNCTION submit_payment(payload jsonb, credential text DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'submit_payment'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- Several payments (a JSON array) in one call; all or none are accepted.
CREATE FUNCTION submit_payments(payloads jsonb, credential text DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'submit_payments'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- The "secondary endpoint": where is my payment?
CREATE FUNCTION payment_status(payment_id uuid, credential text DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'payment_status'
LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- Operators: put dead letters back on the queue (all, by id, and/or by reason).
CREATE FUNCTION redrive_dead_letters(ids bigint[] DEFAULT NULL, reason text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'redrive_dead_letters'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION payment.counters(
    OUT submitted bigint, OUT stored bigint, OUT duplicates bigint,
    OUT conflicts bigint, OUT dead_lettered bigint, OUT retried bigint,
    OUT redriven bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'payment_counters'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

-- What is going on.  Counters count since the server started (NULL when the
-- library is not preloaded); the rest is read from the tables.
CREATE VIEW payment.stats AS
SELECT c.submitted,
       c.stored,
       c.duplicates,
       c.conflicts,
       c.dead_lettered,
       c.retried,
       c.redriven,
       (SELECT count(*) FROM payment.queue) AS queue_depth,
       (SELECT count(*) FROM payment.queue WHERE receive_count > 0) AS in_flight,
       (SELECT clock_timestamp() - min(enqueued_at) FROM payment.queue) AS oldest_queued_age,
       (SELECT count(*) FROM payment.dead_letters) AS dead_letters,
       (SELECT count(*) FROM pg_catalog.pg_stat_activity
         WHERE backend_type = 'payment worker') AS workers
FROM payment.counters() AS c;

REVOKE ALL ON ALL TABLES IN SCHEMA payment FROM PUBLIC;
REVOKE ALL ON FUNCTION submit_payment(jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION submit_payments(jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION payment_status(uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION redrive_dead_letters(bigint[], text) FROM PUBLIC;
REVOKE ALL ON FUNCTION payment.counters() FROM PUBLIC;
REVOKE ALL ON FUNCTION payment.wake_workers_at_commit() FROM PUBLIC;

-- == Authentication (issue 4): objects below this line ==

-- API keys (x-api-key).  Only the SHA-256 of each key is kept; key_id is the
-- key's public part, used to find the row.  Limits: rate_limit calls per
-- second with bursts of burst_limit (token bucket), quota_limit calls per
-- quota_period; NULL means unlimited.  Revoked keys stay for the record.
CREATE TABLE payment.api_keys (
    name            text        PRIMARY KEY,
    key_id          text        NOT NULL UNIQUE,
    key_hash        bytea       NOT NULL CHECK (length(key_hash) = 32),
    rate_limit      float8      CHECK (rate_limit > 0),
    burst_limit     integer     CHECK (burst_limit > 0),
    quota_limit     integer     CHECK (quota_limit >= 0),
    quota_period    interval    CHECK (quota_period >= interval '1 second'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    CHECK ((quota_limit IS NULL) = (quota_period IS NULL))
);
REVOKE ALL ON payment.api_keys FROM PUBLIC;

-- Returns the new key; it is shown only this once.
CREATE FUNCTION create_api_key(name text, rate_limit float8 DEFAULT NULL,
                               burst_limit int DEFAULT NULL,
                               quota_limit int DEFAULT NULL,
                               quota_period interval DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'create_api_key'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION revoke_api_key(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'revoke_api_key'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

REVOKE ALL ON FUNCTION create_api_key(text, float8, int, int, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION revoke_api_key(text) FROM PUBLIC;

-- Row-level security for roles an administrator lets read payments directly
-- (reports, support staff): such a role sees the payments of the users mapped
-- to it here, and nothing else.  Grant it USAGE on schema payment and SELECT on
-- payment.payments and payment.reader_users.  The superuser, the table owner
-- and the entry points (SECURITY DEFINER, owned by the superuser) are not
-- affected.
CREATE TABLE payment.reader_users (
    role_name   name NOT NULL,
    user_id     uuid NOT NULL,
    PRIMARY KEY (role_name, user_id)
);
REVOKE ALL ON payment.reader_users FROM PUBLIC;

ALTER TABLE payment.reader_users ENABLE ROW LEVEL SECURITY;
CREATE POLICY reader_users_own ON payment.reader_users FOR SELECT
    USING (role_name = current_user);

ALTER TABLE payment.payments ENABLE ROW LEVEL SECURITY;
CREATE POLICY payments_mapped_users ON payment.payments FOR SELECT
    USING (user_id IN (SELECT r.user_id FROM payment.reader_users r
                        WHERE r.role_name = current_user));

-- == end of authentication section ==




-- == Amazon SQS (issue 3): objects below this line ==

-- == end of Amazon SQS section ==
