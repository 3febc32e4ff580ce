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
