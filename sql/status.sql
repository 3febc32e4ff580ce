-- payment_status: the "secondary endpoint" the reference design asks for.
SELECT payment_status('00000000-0000-4000-8000-000000000000') AS unknown_payment;

SELECT payment_status('33333333-3333-4333-8333-333333333333') - 'changedAt' - 'messageId'
       - 'requestId' - 'submittedBy' AS stored;
-- from 1.2: who sent it, under which request id (generated: none was given)
SELECT s ->> 'submittedBy' = current_user AS submitted_by_me,
       s ->> 'requestId' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS generated_request_id,
       s ->> 'requestId' = p.request_id AND s ->> 'submittedBy' = p.submitted_by AS as_stored
  FROM payment_status('33333333-3333-4333-8333-333333333333') s,
       payment.payments p WHERE p.payment_id = '33333333-3333-4333-8333-333333333333';
SELECT (payment_status('33333333-3333-4333-8333-333333333333') ->> 'changedAt')::timestamptz
       = stored_at AS changed_at_is_stored_at
  FROM payment.payments WHERE payment_id = '33333333-3333-4333-8333-333333333333';

BEGIN;
SELECT submit_payment(test.payload('{"paymentId": "12121212-1212-4212-8212-121212121212"}')) ->> 'message';
SELECT payment_status('12121212-1212-4212-8212-121212121212') - 'changedAt' - 'messageId'
       - 'requestId' - 'submittedBy' AS queued;
SELECT payment_status('12121212-1212-4212-8212-121212121212') ->> 'submittedBy' = current_user AS queued_by_me;
ROLLBACK;

-- The event tables keep no key columns: payment.queue and payment_status read
-- the keys from the body, also where it spells them in capitals or escapes.
BEGIN;
SELECT submit_payment(test.payload('{"paymentId": "13131313-1313-4313-8313-131313131313"}')) IS NOT NULL AS submitted;
SELECT payment_id, user_id IS NOT NULL AS has_user_id
  FROM payment.queue WHERE payment_id = '13131313-1313-4313-8313-131313131313';
INSERT INTO payment.queue (body) VALUES
    ('{"paymentId": "1414141A-1414-4414-8414-141414141414", "userId": "not a uuid"}'),
    ('{"paymentId": "\u00315151515-1515-4515-8515-151515151515"}');
SELECT payment_id, user_id FROM payment.queue WHERE body LIKE '%1414141A%' OR body LIKE '%u0031%' ORDER BY seq;
-- from 1.2 payment_status finds a queued message by its key record, which a
-- body without a valid userId does not get (the store dead-letters it)
SELECT payment_status('1414141a-1414-4414-8414-141414141414') ->> 'status' AS capitals,
       payment_status('15151515-1515-4515-8515-151515151515') ->> 'status' AS escaped;
INSERT INTO payment.queue (body) VALUES
    ('{"paymentId": "1616161A-1616-4616-8616-161616161616", "userId": "0FA8CA85-D50D-44F9-8A00-5AD67A6D29E4"}'),
    ('{"\u0070aymentId": "\u00317171717-1717-4717-8717-171717171717", "userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4"}');
SELECT payment_status('1616161a-1616-4616-8616-161616161616') ->> 'status' AS capitals,
       payment_status('17171717-1717-4717-8717-171717171717') ->> 'status' AS escaped;
ROLLBACK;

SELECT payment_status('55555555-5555-4555-8555-555555555555') - 'changedAt' - 'messageId' AS dead_lettered;
SELECT payment_status('88888888-8888-4888-8888-888888888888') ->> 'reason' AS max_receives_reason;

SELECT t.* FROM test.try($$SELECT payment_status(NULL)$$) t;
SELECT t.* FROM test.try($$SELECT payment_status('not a uuid')$$) t;
