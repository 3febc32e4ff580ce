-- payment_status: the "secondary endpoint" the reference design asks for.
SELECT payment_status('00000000-0000-4000-8000-000000000000') AS unknown_payment;

SELECT payment_status('33333333-3333-4333-8333-333333333333') - 'changedAt' - 'messageId' AS stored;
SELECT (payment_status('33333333-3333-4333-8333-333333333333') ->> 'changedAt')::timestamptz
       = stored_at AS changed_at_is_stored_at
  FROM payment.payments WHERE payment_id = '33333333-3333-4333-8333-333333333333';

BEGIN;
SELECT submit_payment(test.payload('{"paymentId": "12121212-1212-4212-8212-121212121212"}')) ->> 'message';
SELECT payment_status('12121212-1212-4212-8212-121212121212') - 'changedAt' - 'messageId' AS queued;
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
SELECT payment_status('1414141a-1414-4414-8414-141414141414') ->> 'status' AS capitals,
       payment_status('15151515-1515-4515-8515-151515151515') ->> 'status' AS escaped;
ROLLBACK;

SELECT payment_status('55555555-5555-4555-8555-555555555555') - 'changedAt' - 'messageId' AS dead_lettered;
SELECT payment_status('88888888-8888-4888-8888-888888888888') ->> 'reason' AS max_receives_reason;

SELECT t.* FROM test.try($$SELECT payment_status(NULL)$$) t;
SELECT t.* FROM test.try($$SELECT payment_status('not a uuid')$$) t;
