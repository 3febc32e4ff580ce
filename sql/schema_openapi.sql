-- payment_schema_from_openapi: an OpenAPI 3.0 document's model as draft-04,
-- with $refs to other components rewritten to definitions and nullable honoured.
CREATE TABLE test.api AS SELECT '{
  "openapi": "3.0.3",
  "info": {"title": "Payments", "version": "1.0.0"},
  "paths": {},
  "components": {"schemas": {
    "Payment": {
      "type": "object",
      "required": ["paymentId", "userId", "amount", "currency"],
      "additionalProperties": false,
      "x-owner": "team-a",
      "properties": {
        "paymentId": {"$ref": "#/components/schemas/Uuid"},
        "userId": {"$ref": "#/components/schemas/Uuid"},
        "amount": {"$ref": "#/components/schemas/Money"},
        "currency": {"type": "string", "enum": ["GBP", "EUR"]},
        "note": {"type": "string", "nullable": true, "maxLength": 20, "example": "rent"},
        "payer": {"$ref": "#/components/schemas/Party"},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"], "nullable": true}}
      }
    },
    "Uuid": {"type": "string", "format": "uuid", "example": "2d5a8218-3c6a-436e-b724-8dff12e7010d"},
    "Money": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "multipleOf": 0.01, "readOnly": false},
    "Party": {"nullable": true, "allOf": [{"$ref": "#/components/schemas/Named"}],
              "discriminator": {"propertyName": "kind"}},
    "Named": {"type": "object", "required": ["name"],
              "properties": {"name": {"type": "string"}, "parent": {"$ref": "#/components/schemas/Named"}}},
    "Unused": {"type": "integer"}
  }}
}'::jsonb AS doc;

SELECT jsonb_pretty(payment_schema_from_openapi(doc)) FROM test.api;

SELECT r ->> 'valid' AS valid,
       (SELECT string_agg((e ->> 'path') || ' ' || (e ->> 'keyword'), ', ')
          FROM jsonb_array_elements(r -> 'errors') e) AS errors
  FROM test.api, LATERAL unnest(ARRAY[
    '{"paymentId": "2d5a8218-3c6a-436e-b724-8dff12e7010d", "userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4", "amount": 7.99, "currency": "GBP"}',
    '{"paymentId": "2d5a8218-3c6a-436e-b724-8dff12e7010d", "userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4", "amount": 7.99, "currency": "GBP", "note": null, "payer": null, "tags": ["a", null]}',
    '{"paymentId": "2d5a8218-3c6a-436e-b724-8dff12e7010d", "userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4", "amount": 7.99, "currency": "GBP", "payer": {"name": "x", "parent": {"name": 1}}}',
    '{"paymentId": "x", "userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4", "amount": 0, "currency": "USD", "other": 1}'
  ]::jsonb[]) d, LATERAL validate_json(d, payment_schema_from_openapi(doc)) r;

-- adopted as the payment schema in one statement
SELECT set_payment_schema(payment_schema_from_openapi(doc), 'from the API document') AS version FROM test.api;
SELECT t.* FROM test.try($$SELECT submit_payment('{"paymentId": "6d5a8218-3c6a-436e-b724-8dff12e70106", "userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4", "amount": 3.50, "currency": "EUR", "note": null}')$$) t;
SELECT t.* FROM test.try($$SELECT submit_payment(test.fresh())$$) t;
SELECT test.drain();
SELECT amount, currency, description FROM payment.payments WHERE payment_id = '6d5a8218-3c6a-436e-b724-8dff12e70106';
UPDATE payment.schemas SET active = false WHERE active;

-- what cannot be converted
SELECT m, t.* FROM test.api, unnest(ARRAY['Nope', 'Payment']) m,
       LATERAL test.try(format('SELECT payment_schema_from_openapi(%L, %L)',
                               CASE WHEN m = 'Nope' THEN doc
                                    ELSE jsonb_set(doc, '{components,schemas,Payment,properties,amount}',
                                                   '{"$ref": "other.yaml#/Money"}') END, m)) t;
SELECT t.* FROM test.try($$SELECT payment_schema_from_openapi('{"openapi": "3.0.3"}')$$) t;
