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

SELECT payment_status('55555555-5555-4555-8555-555555555555') - 'changedAt' - 'messageId' AS dead_lettered;
SELECT payment_status('88888888-8888-4888-8888-888888888888') ->> 'reason' AS max_receives_reason;

SELECT t.* FROM test.try($$SELECT payment_status(NULL)$$) t;
SELECT t.* FROM test.try($$SELECT payment_status('not a uuid')$$) t;
