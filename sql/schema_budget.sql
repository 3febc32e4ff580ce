-- Bounded work (issue 18): a document's validation has a budget of steps,
-- payment.max_validation_steps (54001 past it); a payment schema whose static
-- cost explodes is refused (54001) by set_payment_schema and by the trigger
-- on payment.schemas; ordinary schemas and payments are unaffected.

-- levels definitions, each an allOf of two $refs to the previous one:
-- 2^(levels + 1) node applications for any value
CREATE FUNCTION test.exponential(levels int) RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object('type', 'object', 'required', jsonb_build_array('paymentId', 'userId'),
    'allOf', jsonb_build_array(jsonb_build_object('$ref', '#/definitions/d' || levels)),
    'definitions', jsonb_object_agg('d' || i, CASE WHEN i = 0 THEN '{}'::jsonb
      ELSE jsonb_build_object('allOf', jsonb_build_array(
        jsonb_build_object('$ref', '#/definitions/d' || (i - 1)),
        jsonb_build_object('$ref', '#/definitions/d' || (i - 1)))) END))
  FROM generate_series(0, levels) i $$;

SHOW payment.max_validation_steps;

-- validate_json compiles any schema; the budget ends the exponential one
SELECT t.* FROM test.try($$SELECT validate_json('{}', test.exponential(30))$$) t;
SELECT validate_json('{}', test.exponential(10)) AS cheap_enough;

-- the budget is the document's work, whatever its shape
SET payment.max_validation_steps = 200;
SELECT t.* FROM test.try($$SELECT validate_json((SELECT jsonb_agg(i) FROM generate_series(1, 100) i), '{"items": {"type": "integer"}}')$$) t;
SELECT validate_json((SELECT jsonb_agg(i) FROM generate_series(1, 99) i), '{"items": {"type": "integer"}}') AS just_fits;
-- the reference payment takes a few dozen steps, at submit and at store
SET payment.max_validation_steps = 20;
SELECT t.* FROM test.try($$SELECT validate_payment(test.payload())$$) t;
SELECT t.* FROM test.try($$SELECT submit_payment(test.fresh())$$) t;
RESET payment.max_validation_steps;
SELECT validate_payment(test.payload()) AS reference_ok;
SELECT validate_json((SELECT jsonb_agg(i % 50000) FROM generate_series(1, 100000) i), '{"uniqueItems": true}') AS duplicate_found;
-- 0: no limit (statement_timeout and cancels still end a validation)
SET payment.max_validation_steps = 0;
SELECT validate_json('{}', test.exponential(20)) AS unlimited;
RESET payment.max_validation_steps;

-- a role granted validate_json cannot lift the budget
CREATE ROLE regress_budget_user;
GRANT USAGE ON SCHEMA test TO regress_budget_user;
GRANT EXECUTE ON FUNCTION validate_json(jsonb, jsonb) TO regress_budget_user;
SET ROLE regress_budget_user;
SELECT t.* FROM test.try($$SET payment.max_validation_steps = 0$$) t;
SELECT t.* FROM test.try($$SELECT validate_json('{}', test.exponential(30))$$) t;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION validate_json(jsonb, jsonb) FROM regress_budget_user;
REVOKE USAGE ON SCHEMA test FROM regress_budget_user;
DROP ROLE regress_budget_user;

-- a payment schema: its static cost (node applications one value can cause,
-- unfolded) must be at most 100,000; 2^16 passes, 2^17 does not
SELECT t.* FROM test.try($$SELECT set_payment_schema(test.exponential(30), 'exponential')$$) t;
SELECT t.* FROM test.try($$SELECT set_payment_schema(test.exponential(16), '2^17')$$) t;
SELECT set_payment_schema(test.exponential(15), '2^16') > 0 AS accepted;
SELECT validate_payment(test.payload()) AS under_2_16;
-- ... also when a version is changed or activated by hand (the trigger)
SELECT t.* FROM test.try($$UPDATE payment.schemas SET schema = test.exponential(30) WHERE active$$) t;
UPDATE payment.schemas SET active = false WHERE active;
SELECT t.* FROM test.try($$INSERT INTO payment.schemas (schema, created_by, active) VALUES (test.exponential(30), current_user, true)$$) t;
SELECT t.* FROM test.try($$INSERT INTO payment.schemas (schema, created_by, active) VALUES ('{"type": 5}', current_user, true)$$) t;
-- an inactive version is not checked until it is used
INSERT INTO payment.schemas (schema, created_by, comment) VALUES (test.exponential(30), current_user, 'inactive');
SELECT t.* FROM test.try($$UPDATE payment.schemas SET active = true WHERE comment = 'inactive'$$) t;
SELECT comment, active FROM payment.schemas WHERE comment IN ('2^16', 'inactive') ORDER BY version;
-- a stored version made too expensive behind the trigger's back is refused
-- when it is compiled for use, call after call (a version that failed to
-- compile used to leave an empty cache slot, and the next call crashed)
SELECT set_payment_schema('{"required": ["paymentId", "userId"]}', 'to be replaced') > 0 AS accepted;
SELECT validate_payment(test.payload()) ->> 'valid' AS compiled;
ALTER TABLE payment.schemas DISABLE TRIGGER schemas_changed;
UPDATE payment.schemas SET schema = test.exponential(30) WHERE active;
ALTER TABLE payment.schemas ENABLE TRIGGER schemas_changed;
SELECT t.* FROM test.try($$SELECT validate_payment(test.payload())$$) t;
SELECT t.* FROM test.try($$SELECT validate_payment(test.payload())$$) t;
SELECT t.* FROM test.try($$SELECT submit_payment(test.fresh())$$) t;
UPDATE payment.schemas SET active = false WHERE active;
-- a realistic team schema is far below the limit and validates as before
-- (schema_versions' strict schema, with an array of line items)
SELECT set_payment_schema(jsonb_set(jsonb_set(schema - '$schema',
         '{properties,lines}', '{"type": "array", "uniqueItems": true, "items": {"$ref": "#/definitions/line"}}'),
         '{definitions,line}', '{"type": "object", "required": ["sku", "price"],
             "properties": {"sku": {"type": "string", "pattern": "^SKU-[0-9]+$"},
                            "price": {"type": "number", "multipleOf": 0.01}}}'),
       'team schema with lines') > 0 AS accepted
  FROM test.strict;
SELECT validate_payment(test.payload('{"lines": [{"sku": "SKU-1", "price": 1.50}, {"sku": "SKU-2", "price": 2}]}')) AS team_ok;
SELECT validate_payment(test.payload('{"lines": [{"sku": "SKU-1", "price": 1.5}, {"sku": "SKU-1", "price": 1.50}], "currency": "XYZ"}')) AS team_refused;
UPDATE payment.schemas SET active = false WHERE active;
SELECT validate_payment(test.payload()) AS reference_again;
