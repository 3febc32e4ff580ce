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

-- A team's schema need not have the reference model's fields: the stored
-- columns are filled when the payload has them, and the whole payload is
-- always kept in body.
ALTER TABLE payment.payments
    ALTER COLUMN amount DROP NOT NULL,
    ALTER COLUMN currency DROP NOT NULL,
    ALTER COLUMN description DROP NOT NULL,
    ALTER COLUMN date_timestamp DROP NOT NULL;

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

-- == Dead letters ==

-- A message delivered again after it was dead-lettered is dead-lettered
-- once: the workers look its message_id up before writing.
CREATE INDEX dead_letters_message_id_idx ON payment.dead_letters (message_id);
