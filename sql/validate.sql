-- The shipped schema accepts exactly what the reference Payment model accepts.
-- Every rejection is a class 22 SQLSTATE naming the JSON path and the rule.

-- accepted
SELECT submit_payment(test.payload()) ->> 'message' AS reference_example;
SELECT (submit_payment(test.payload()) ->> 'messageId')
       ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' AS message_id_is_uuid;
SELECT t.* FROM test.try($$SELECT submit_payment(test.fresh('{"amount": 7}'))$$) t;           -- integer is a number
SELECT t.* FROM test.try($$SELECT submit_payment(test.fresh('{"amount": -1.5e3}'))$$) t;      -- exponent, negative
SELECT t.* FROM test.try($$SELECT submit_payment(test.fresh('{"extra": {"nested": [1, 2]}, "note": null}'))$$) t;
SELECT t.* FROM test.try($$SELECT submit_payment(test.fresh(jsonb_build_object('description', repeat('x', 256))))$$) t;
SELECT t.* FROM test.try($$SELECT submit_payment(test.fresh(jsonb_build_object('description', repeat('é', 256))))$$) t;
SELECT t.* FROM test.try($$SELECT submit_payment(test.fresh('{"description": "", "currency": "", "dateTimestamp": ""}'))$$) t;
SELECT t.* FROM test.try($$SELECT submit_payment(test.fresh('{"userId": "0FA8CA85-D50D-44F9-8A00-5AD67A6D29E4"}'))$$) t;

-- required properties
SELECT k AS missing, t.*
  FROM unnest(ARRAY['paymentId', 'userId', 'dateTimestamp', 'description', 'currency', 'amount']) k,
       LATERAL test.try(format('SELECT submit_payment(test.payload(drop_key => %L))', k)) t;

-- types
SELECT p AS patch, t.*
  FROM unnest(ARRAY['{"paymentId": 12}', '{"userId": null}', '{"dateTimestamp": 1709553600}',
                    '{"description": ["a"]}', '{"currency": true}', '{"amount": "7.99"}',
                    '{"amount": null}', '{"amount": {"value": 7.99}}']) p,
       LATERAL test.try(format('SELECT submit_payment(test.payload(%L))', p)) t;

-- format uuid: the canonical 8-4-4-4-12 form only
SELECT p AS patch, t.*
  FROM unnest(ARRAY['{"paymentId": "not-a-uuid"}',
                    '{"paymentId": "{2d5a8218-3c6a-436e-b724-8dff12e7010d}"}',
                    '{"paymentId": "2d5a82183c6a436eb7248dff12e7010d"}',
                    '{"userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e"}',
                    '{"userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29eg"}']) p,
       LATERAL test.try(format('SELECT submit_payment(test.payload(%L))', p)) t;

-- maxLength counts characters
SELECT t.* FROM test.try($$SELECT submit_payment(test.payload(jsonb_build_object('description', repeat('x', 257))))$$) t;
SELECT t.* FROM test.try($$SELECT submit_payment(test.payload(jsonb_build_object('description', repeat('é', 257))))$$) t;

-- every problem is reported
SELECT t.* FROM test.try($$SELECT submit_payment('{"paymentId": 1, "amount": "x", "description": 5}')$$) t;

-- not an object, NULL, too large
SELECT t.* FROM test.try($$SELECT submit_payment('[]')$$) t;
SELECT t.* FROM test.try($$SELECT submit_payment('"a string"')$$) t;
SELECT t.* FROM test.try($$SELECT submit_payment('42')$$) t;
SELECT t.* FROM test.try($$SELECT submit_payment('null')$$) t;
SELECT t.* FROM test.try($$SELECT submit_payment(NULL)$$) t;
SET payment.max_payload_size = 200;
SELECT t.* FROM test.try($$SELECT submit_payment(test.fresh(jsonb_build_object('pad', repeat('p', 100))))$$) t;
RESET payment.max_payload_size;

-- nothing was enqueued for a rejected payload: only the accepted ones arrive
SELECT test.drain();
SELECT count(*) AS stored FROM payment.payments;
SELECT count(*) AS dead_letters FROM payment.dead_letters;
