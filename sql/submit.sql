-- submit_payment: one signature, the queue joins the caller's transaction,
-- and submit_payments takes an array all-or-nothing.
SELECT pg_get_function_identity_arguments(oid) AS signature, prorettype::regtype,
       prosecdef AS security_definer, proconfig
  FROM pg_proc WHERE proname = 'submit_payment';

-- a rollback enqueues nothing
BEGIN;
SELECT submit_payment(test.payload('{"paymentId": "11111111-1111-4111-8111-111111111111"}')) ->> 'message';
SELECT payment_status('11111111-1111-4111-8111-111111111111') ->> 'status' AS inside_transaction;
ROLLBACK;
SELECT test.drain();
SELECT payment_status('11111111-1111-4111-8111-111111111111') ->> 'status' AS after_rollback;
SELECT count(*) FROM payment.payments WHERE payment_id = '11111111-1111-4111-8111-111111111111';

-- a commit wakes the workers
BEGIN;
SELECT submit_payment(test.payload('{"paymentId": "22222222-2222-4222-8222-222222222222"}')) ->> 'message';
COMMIT;
SELECT test.drain();
SELECT payment_status('22222222-2222-4222-8222-222222222222') ->> 'status' AS after_commit;

-- several at once
SELECT r ->> 'message' AS message, r ->> 'count' AS count, jsonb_array_length(r -> 'messageIds') AS ids
  FROM submit_payments(jsonb_build_array(test.fresh(), test.fresh(), test.fresh())) r;
SELECT t.* FROM test.try($$SELECT submit_payments(jsonb_build_array(test.fresh(), test.fresh('{"amount": "1"}')))$$) t;
SELECT t.* FROM test.try($$SELECT submit_payments('{"not": "an array"}')$$) t;
SELECT submit_payments('[]') ->> 'count' AS empty_array;
SELECT test.drain();
SELECT count(*) AS stored FROM payment.payments;

-- nothing in schema payment is reachable by PUBLIC
CREATE ROLE payment_stranger;
SET ROLE payment_stranger;
SELECT count(*) FROM payment.payments;
INSERT INTO payment.queue (body) VALUES ('{}');
SELECT submit_payment('{}');
SELECT payment_status('2d5a8218-3c6a-436e-b724-8dff12e7010d');
RESET ROLE;
DROP ROLE payment_stranger;
