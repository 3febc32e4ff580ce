-- payment--1.0--1.1.sql: what ALTER EXTENSION payment UPDATE adds to a 1.0
-- installation.  payment--1.0.sql is released and never edited; every change
-- to SQL objects from 1.0 on is made here.

\echo Use "ALTER EXTENSION payment UPDATE TO '1.1'" to load this file. \quit

-- == Payment schemas a team owns ==

-- Versions of the payment schema (JSON Schema draft-04).  At most one is
-- active; with none, the reference Payment model built into the library is
-- used, exactly as in 1.0.  Versions are kept for the record, never deleted
-- by the extension.
CREATE TABLE payment.schemas (
    version     integer     GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schema      jsonb       NOT NULL,
    comment     text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  name        NOT NULL,
    active      boolean     NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX schemas_one_active ON payment.schemas (active) WHERE active;
REVOKE ALL ON payment.schemas FROM PUBLIC;

-- Every change to payment.schemas, also one made by hand (re-activating an
-- older version, or none: the built-in reference model), reaches every
-- session's and worker's cached active version at commit.
CREATE FUNCTION payment.schemas_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'payment_schemas_changed'
LANGUAGE C SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION payment.schemas_changed() FROM PUBLIC;
CREATE TRIGGER schemas_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON payment.schemas
    FOR EACH STATEMENT EXECUTE FUNCTION payment.schemas_changed();

-- A team's schema need not have the reference model's fields: the stored
-- columns are filled when the payload has them, and the whole payload is
-- always kept in body.
ALTER TABLE payment.payments
    ALTER COLUMN amount DROP NOT NULL,
    ALTER COLUMN currency DROP NOT NULL,
    ALTER COLUMN description DROP NOT NULL,
    ALTER COLUMN date_timestamp DROP NOT NULL;

-- The schema version a message was accepted under, so that the workers check
-- it against that version and never dead-letter an accepted payment because
-- the schema changed since (NULL: another producer's, checked against the
-- active version).  Kept with a dead letter for its redrive.
ALTER TABLE payment.queue ADD COLUMN schema_version integer;
ALTER TABLE payment.dead_letters ADD COLUMN schema_version integer;

-- {"valid": bool, "errors": [{"path", "keyword", "message"}]} for any draft-04
-- schema and any JSON document.
CREATE FUNCTION validate_json(document jsonb, schema jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'payment_validate_json'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp;

-- Checks the schema, stores it as a new version and makes it the active
-- payment schema when the calling transaction commits.  SECURITY DEFINER so
-- that a role granted EXECUTE needs no privilege on payment.schemas.
CREATE FUNCTION set_payment_schema(schema jsonb, comment text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'payment_set_payment_schema'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- A dry run of a payload against the active payment schema.
CREATE FUNCTION validate_payment(payload jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'payment_validate_payment'
LANGUAGE C STABLE STRICT PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- The draft-04 schema of components.schemas.<model> of an OpenAPI 3.0 document.
CREATE FUNCTION payment_schema_from_openapi(document jsonb, model text DEFAULT 'Payment')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'payment_schema_from_openapi'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp;

REVOKE ALL ON FUNCTION validate_json(jsonb, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION set_payment_schema(jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION validate_payment(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION payment_schema_from_openapi(jsonb, text) FROM PUBLIC;

-- == The embedded queue ==

-- 1.0's queue inserted, updated and deleted a row per message, so every
-- delivered message left dead rows that a held snapshot (a report, pg_dump, a
-- session idle in transaction) kept, and every claim walked over them.  From
-- 1.1 messages are appended to insert-only event tables, three of them taking
-- turns (payment.queue_rotate_after), each emptied by TRUNCATE once every
-- message in it is settled; the workers claim them in batches bounded by
-- transaction snapshots (as PgQ does) and record each batch, not each
-- message, in an insert-only batch log rotated with them.  Only a message
-- that must be retried later gets a row of its own, in payment.queue_retry:
-- 1.0's table, renamed, so messages queued before the update are kept there
-- and delivered as they were.
ALTER TABLE payment.queue RENAME TO queue_retry;
ALTER INDEX payment.queue_payment_id_idx RENAME TO queue_retry_payment_id_idx;

CREATE TABLE payment.queue_events_0 (
    seq             bigint      NOT NULL DEFAULT nextval('payment.queue_seq_seq'),
    txid            xid8        NOT NULL DEFAULT pg_current_xact_id(),
    message_id      uuid        NOT NULL DEFAULT gen_random_uuid(),
    body            text        NOT NULL,
    enqueued_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    schema_version  integer
);
CREATE TABLE payment.queue_events_1 (LIKE payment.queue_events_0 INCLUDING DEFAULTS);
CREATE TABLE payment.queue_events_2 (LIKE payment.queue_events_0 INCLUDING DEFAULTS);
-- the workers read a range through the first index directly, by its name
CREATE INDEX queue_events_0_txid_seq_idx ON payment.queue_events_0 (txid, seq);
CREATE INDEX queue_events_1_txid_seq_idx ON payment.queue_events_1 (txid, seq);
CREATE INDEX queue_events_2_txid_seq_idx ON payment.queue_events_2 (txid, seq);
-- No payment_id or user_id column: every byte of an event is written twice
-- (table and WAL) while the submitter waits for its commit, and the keys are
-- in the body.  payment_status looks here only for a payment not yet stored,
-- reading the keys from the bodies; the tables hold only the messages of the
-- last few generations.

-- One row each time a batch is cut, claimed again, given back or settled;
-- the newest says its state.  A batch is the events committed between two
-- transaction snapshots (lo, hi], cut into chunks by (txid, seq) after
-- (after_txid, after_seq) up to (last_txid, last_seq): its first row (step 0)
-- holds that range.  Every row of a batch is in the batch table of the
-- generation where it was cut.  Not dumped: its snapshots are this cluster's,
-- and restored events are simply cut anew.
CREATE TABLE payment.queue_batches_0 (
    batch_id        bigint      NOT NULL,
    step            integer     NOT NULL,
    state           text        NOT NULL CHECK (state IN ('claimed', 'released', 'done')),
    attempt         integer     NOT NULL,
    lo              pg_snapshot,
    hi              pg_snapshot,
    after_txid      xid8,
    after_seq       bigint,
    last_txid       xid8,
    last_seq        bigint,
    more            boolean,
    visible_at      timestamptz NOT NULL,
    open_from       bigint      NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX queue_batches_0_batch_id_idx ON payment.queue_batches_0 (batch_id, step);
CREATE TABLE payment.queue_batches_1 (LIKE payment.queue_batches_0 INCLUDING ALL);
CREATE TABLE payment.queue_batches_2 (LIKE payment.queue_batches_0 INCLUDING ALL);
REVOKE ALL ON payment.queue_events_0, payment.queue_events_1, payment.queue_events_2,
    payment.queue_batches_0, payment.queue_batches_1, payment.queue_batches_2 FROM PUBLIC;

-- Rows restored by pg_restore carry the transaction ids of the dumped
-- cluster: they are stamped with the restoring transaction's, so the workers
-- see them as committed now.  The condition keeps the trigger off the
-- ordinary insert, whose txid is already the current one.
CREATE FUNCTION payment.restamp_event() RETURNS trigger
AS 'MODULE_PATHNAME', 'payment_restamp_event'
LANGUAGE C SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION payment.restamp_event() FROM PUBLIC;
CREATE TRIGGER restamp BEFORE INSERT ON payment.queue_events_0 FOR EACH ROW
    WHEN (NEW.txid <> pg_current_xact_id()) EXECUTE FUNCTION payment.restamp_event();
CREATE TRIGGER restamp BEFORE INSERT ON payment.queue_events_1 FOR EACH ROW
    WHEN (NEW.txid <> pg_current_xact_id()) EXECUTE FUNCTION payment.restamp_event();
CREATE TRIGGER restamp BEFORE INSERT ON payment.queue_events_2 FOR EACH ROW
    WHEN (NEW.txid <> pg_current_xact_id()) EXECUTE FUNCTION payment.restamp_event();

-- The messages not yet settled, with 1.0's columns: those of the event
-- tables (receive_count and visible_at are their batch's) and the retries.
-- With payment_id, only that payment's (a scan of the event tables, an index
-- lookup in payment.queue_retry).
CREATE FUNCTION payment.queue_messages(payment_id uuid DEFAULT NULL,
    OUT seq bigint, OUT message_id uuid, OUT payment_id uuid, OUT user_id uuid,
    OUT body text, OUT enqueued_at timestamptz, OUT visible_at timestamptz,
    OUT receive_count integer, OUT schema_version integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'payment_queue_messages'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION payment.queue_messages(uuid) FROM PUBLIC;

-- payment.queue keeps its 1.0 name, columns and use: read it, INSERT into it
-- (another producer, an operator), DELETE from it.  The two functions behind
-- it are SECURITY DEFINER so that a role granted the view needs no grant on
-- the tables behind it; neither is executable by PUBLIC.
CREATE VIEW payment.queue AS SELECT * FROM payment.queue_messages();
REVOKE ALL ON payment.queue FROM PUBLIC;
CREATE FUNCTION payment.queue_write() RETURNS trigger
AS 'MODULE_PATHNAME', 'payment_queue_write'
LANGUAGE C SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION payment.queue_write() FROM PUBLIC;
CREATE TRIGGER queue_write INSTEAD OF INSERT OR UPDATE OR DELETE ON payment.queue
    FOR EACH ROW EXECUTE FUNCTION payment.queue_write();

-- The workers' claim, in the caller's transaction: for diagnostics and for the
-- isolation tests of concurrent claims.  Claimed messages come back after
-- payment.visibility_timeout with one more receive counted, as a crashed
-- worker's batch does, so this is for operators only.
CREATE FUNCTION payment.claim_messages(max_messages integer DEFAULT 10,
    OUT seq bigint, OUT message_id text, OUT body text, OUT receive_count integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'payment_claim_messages'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION payment.claim_messages(integer) FROM PUBLIC;

-- == pg_dump keeps the data ==

-- pg_dump writes an extension's tables as CREATE EXTENSION only, without their
-- rows, unless they are registered here: a dump of a 1.0 database holds no
-- payment at all.  Every table holding user data is registered, whole.
SELECT pg_catalog.pg_extension_config_dump('payment.payments', '');
SELECT pg_catalog.pg_extension_config_dump('payment.dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('payment.queue_retry', '');
-- Of the event tables, only the messages not yet settled: the batch log that
-- tells them apart is not dumped.
SELECT pg_catalog.pg_extension_config_dump('payment.queue_events_0',
    'WHERE seq IN (SELECT seq FROM payment.queue_messages())');
SELECT pg_catalog.pg_extension_config_dump('payment.queue_events_1',
    'WHERE seq IN (SELECT seq FROM payment.queue_messages())');
SELECT pg_catalog.pg_extension_config_dump('payment.queue_events_2',
    'WHERE seq IN (SELECT seq FROM payment.queue_messages())');
SELECT pg_catalog.pg_extension_config_dump('payment.api_keys', '');
SELECT pg_catalog.pg_extension_config_dump('payment.reader_users', '');
SELECT pg_catalog.pg_extension_config_dump('payment.schemas', '');
-- Their identity sequences too: pg_dump does not carry an extension table's
-- identity position along with its rows, so a restored database would hand
-- out ids from 1 again and the next dead letter (queue message, schema
-- version) would collide with a restored one.
SELECT pg_catalog.pg_extension_config_dump('payment.dead_letters_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('payment.queue_seq_seq', '');
SELECT pg_catalog.pg_extension_config_dump('payment.schemas_version_seq', '');

-- == The elastic pool of workers ==

-- workers_busy (workers storing a batch now) and scale_events (dynamic
-- workers started or retired since server start) join the counters.  The
-- library fills 7 or 9 columns, whichever the installed version declares.
DROP VIEW payment.stats;
DROP FUNCTION payment.counters();
CREATE FUNCTION payment.counters(
    OUT submitted bigint, OUT stored bigint, OUT duplicates bigint,
    OUT conflicts bigint, OUT dead_lettered bigint, OUT retried bigint,
    OUT redriven bigint, OUT workers_busy bigint, OUT scale_events bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'payment_counters'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION payment.counters() FROM PUBLIC;

-- Every 1.0 column, in its order and meaning, except that workers now counts
-- only the workers serving this database; the new columns at the end.
-- payment.queue is read once (it is computed from the batch log).
CREATE VIEW payment.stats AS
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
       c.scale_events
FROM payment.counters() AS c,
     (SELECT count(*) AS queue_depth,
             count(*) FILTER (WHERE receive_count > 0) AS in_flight,
             clock_timestamp() - min(enqueued_at) AS oldest_queued_age
        FROM payment.queue) AS q;
REVOKE ALL ON payment.stats FROM PUBLIC;

-- Whether the payment workers serve this database; warns (55000) when they
-- do not, so that CREATE EXTENSION in such a database does not go unnoticed.
CREATE FUNCTION payment.check_database()
RETURNS boolean
AS 'MODULE_PATHNAME', 'payment_check_database'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION payment.check_database() FROM PUBLIC;
SELECT payment.check_database();

-- == Dead letters ==

-- A message delivered again after it was dead-lettered is dead-lettered
-- once: the workers look its message_id up before writing.
CREATE INDEX dead_letters_message_id_idx ON payment.dead_letters (message_id);

-- == The replaced SQS queue ==

-- A queue payment.queue_url named before it was changed, which the workers
-- drain until a receive finds it empty; kept here (by the workers) so that a
-- restart does not forget it.  State of this server's workers, not user
-- data: not dumped, so that a restore elsewhere does not drain old queues.
CREATE TABLE payment.retired_queues (
    queue_url   text        PRIMARY KEY,
    retired_at  timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON payment.retired_queues FROM PUBLIC;
