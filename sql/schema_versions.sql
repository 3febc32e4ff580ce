-- set_payment_schema: versions in payment.schemas, the active one used by
-- submit_payment, validate_payment and the workers; rollback; privileges.

-- without any version: the built-in reference model (version 0), as in 1.0
SELECT count(*) AS versions FROM payment.schemas;
SELECT validate_payment(test.payload()) AS reference_ok;
SELECT validate_payment(test.payload('{"amount": "7.99", "paymentId": "nope"}', 'currency'));

-- refusals: NULL, invalid draft-04, keys not required
SELECT t.* FROM test.try($$SELECT set_payment_schema(NULL)$$) t;
SELECT t.* FROM test.try($$SELECT set_payment_schema('{"type": "object", "required": ["paymentId", "userId"], "properties": {"amount": {"minimum": "0"}}}')$$) t;
SELECT t.* FROM test.try($$SELECT set_payment_schema('{"type": "object", "required": ["paymentId"]}')$$) t;
SELECT t.* FROM test.try($$SELECT set_payment_schema('{"type": "object", "properties": {"userId": {}}}')$$) t;

-- only superusers and roles granted EXECUTE
CREATE ROLE regress_schema_client;
GRANT USAGE ON SCHEMA test TO regress_schema_client;
SET ROLE regress_schema_client;
SELECT t.* FROM test.try($$SELECT set_payment_schema('{"required": ["paymentId", "userId"]}')$$) t;
SELECT t.* FROM test.try($$SELECT validate_payment('{}')$$) t;
RESET ROLE;

-- a strict team schema: ISO currencies, positive cents, a timestamp pattern,
-- a $ref, nothing unknown
CREATE TABLE test.strict AS SELECT '{
  "$schema": "http://json-schema.org/draft-04/schema#",
  "type": "object",
  "required": ["paymentId", "userId", "amount", "currency", "dateTimestamp"],
  "additionalProperties": false,
  "properties": {
    "paymentId": {"$ref": "#/definitions/uuid"},
    "userId": {"$ref": "#/definitions/uuid"},
    "amount": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "multipleOf": 0.01},
    "currency": {"enum": ["GBP", "EUR", "USD"]},
    "dateTimestamp": {"type": "string", "pattern": "^[0-9]{10}$"},
    "description": {"type": "string", "maxLength": 64}
  },
  "definitions": {"uuid": {"type": "string", "format": "uuid"}}
}'::jsonb AS schema;

-- a rollback changes nothing
BEGIN;
SELECT set_payment_schema(schema, 'rolled back') AS version FROM test.strict;
SELECT validate_payment(test.payload('{"currency": "XYZ"}')) ->> 'valid' AS strict_inside_transaction;
ROLLBACK;
SELECT count(*) AS versions FROM payment.schemas;
SELECT validate_payment(test.payload('{"currency": "XYZ"}')) ->> 'valid' AS reference_again;

-- committed: active at once (the identity skipped the rolled-back number)
SELECT set_payment_schema(schema, 'strict team schema') AS version FROM test.strict;
SELECT version, active, comment, created_by = current_user AS by_me, created_at <= now() AS dated
  FROM payment.schemas ORDER BY version;
SELECT validate_payment(test.payload()) ->> 'valid' AS reference_example_is_strict_ok;
SELECT validate_payment(test.payload('{"currency": "XYZ", "amount": 0, "dateTimestamp": "2024", "extra": 1}'));
SELECT t.* FROM test.try($$SELECT submit_payment(test.fresh('{"amount": 1.001, "currency": "gbp"}'))$$) t;
SELECT t.* FROM test.try($$SELECT submit_payment(test.payload('{"paymentId": "4d5a8218-3c6a-436e-b724-8dff12e70104", "amount": 12.50, "currency": "EUR"}'))$$) t;
SELECT test.drain();
SELECT payment_status('4d5a8218-3c6a-436e-b724-8dff12e70104') ->> 'status' AS strict_payment;

-- a team schema without the reference columns: stored as NULL, body kept
SELECT set_payment_schema('{
  "type": "object",
  "required": ["paymentId", "userId", "total"],
  "properties": {"paymentId": {"type": "string"}, "userId": {"type": "string"},
                 "total": {"type": "integer", "minimum": 1}}
}', 'totals only') AS version;
SELECT version, active FROM payment.schemas ORDER BY version;
-- the keys are uuids whatever the schema says
SELECT t.* FROM test.try($$SELECT submit_payment('{"paymentId": "not-a-uuid", "userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4", "total": 5}')$$) t;
SELECT t.* FROM test.try($$SELECT submit_payment('{"paymentId": 5, "userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4", "total": 5}')$$) t;
SELECT t.* FROM test.try($$SELECT submit_payment('{"paymentId": "5d5a8218-3c6a-436e-b724-8dff12e70105", "userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4", "total": 5, "currency": 3}')$$) t;
SELECT test.drain();
SELECT amount, currency, description, date_timestamp, body ->> 'total' AS total, body ->> 'currency' AS body_currency
  FROM payment.payments WHERE payment_id = '5d5a8218-3c6a-436e-b724-8dff12e70105';

-- back to an older version by hand: the trigger tells every backend
UPDATE payment.schemas SET active = false WHERE active;
UPDATE payment.schemas SET active = true WHERE comment = 'strict team schema';
SELECT validate_payment(test.payload('{"currency": "XYZ"}')) -> 'errors' AS strict_again;
-- and to the built-in reference model
UPDATE payment.schemas SET active = false WHERE active;
SELECT validate_payment(test.payload('{"currency": "XYZ"}')) ->> 'valid' AS reference_model;
SELECT count(*) AS dead_letters FROM payment.dead_letters
 WHERE payment_id IN ('4d5a8218-3c6a-436e-b724-8dff12e70104', '5d5a8218-3c6a-436e-b724-8dff12e70105');

-- a schema that says nothing about the keys: they are checked all the same
-- (set by a role granted EXECUTE: created_by is that role, not the definer)
GRANT EXECUTE ON FUNCTION set_payment_schema(jsonb, text) TO regress_schema_client;
SET ROLE regress_schema_client;
SELECT set_payment_schema('{"required": ["paymentId", "userId"]}', 'keys only') AS version;
RESET ROLE;
SELECT created_by FROM payment.schemas WHERE comment = 'keys only';
SELECT validate_payment('{"paymentId": 5, "userId": {"a": 1}}');
SELECT validate_payment('{"paymentId": "2d5a8218-3c6a-436e-b724-8dff12e7010D", "userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e"}');
SELECT validate_payment('[1]');
-- a version's row changed by hand is compiled again
UPDATE payment.schemas SET schema = '{"required": ["paymentId", "userId", "total"]}' WHERE active;
SELECT validate_payment('{"paymentId": "2d5a8218-3c6a-436e-b724-8dff12e7010d", "userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4"}');
UPDATE payment.schemas SET active = false WHERE active;

REVOKE EXECUTE ON FUNCTION set_payment_schema(jsonb, text) FROM regress_schema_client;
REVOKE USAGE ON SCHEMA test FROM regress_schema_client;
DROP ROLE regress_schema_client;
