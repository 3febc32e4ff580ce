-- The store: idempotent, exact, and one bad message never fails its batch.

-- an identical duplicate is acknowledged and stores nothing (from 1.2 the
-- front door answers a retry itself, so the duplicate comes from another
-- producer writing to the queue, which no key check stands in front of)
SELECT duplicates AS duplicates_before FROM payment.stats \gset
INSERT INTO payment.queue (body) VALUES (test.payload()::text);
SELECT test.drain();
SELECT count(*) AS reference_rows FROM payment.payments
 WHERE payment_id = '2d5a8218-3c6a-436e-b724-8dff12e7010d';
SELECT duplicates - :duplicates_before AS new_duplicates FROM payment.stats;

-- the same key with a different body never overwrites: conflict
INSERT INTO payment.queue (body) VALUES (test.payload('{"amount": 1000000}')::text);
SELECT test.drain();
SELECT amount, body ->> 'amount' AS body_amount FROM payment.payments
 WHERE payment_id = '2d5a8218-3c6a-436e-b724-8dff12e7010d';
SELECT reason, error, receive_count, payment_id, body::jsonb ->> 'amount' AS amount
  FROM payment.dead_letters ORDER BY id;

-- the same paymentId for another user is another key
SELECT submit_payment(test.payload('{"userId": "99999999-9999-4999-8999-999999999999"}')) ->> 'message';
SELECT test.drain();
SELECT count(*) AS rows_for_payment FROM payment.payments
 WHERE payment_id = '2d5a8218-3c6a-436e-b724-8dff12e7010d';

-- amounts are exact
SELECT submit_payment(test.payload('{"paymentId": "33333333-3333-4333-8333-333333333333",
                                     "amount": 123456789012345678901234567890.123456789}')) ->> 'message';
SELECT test.drain();
SELECT amount, currency, description, date_timestamp, user_id
  FROM payment.payments WHERE payment_id = '33333333-3333-4333-8333-333333333333';
SELECT amount FROM payment.payments WHERE payment_id = '2d5a8218-3c6a-436e-b724-8dff12e7010d'
   AND user_id = '0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4';

-- bad messages from another producer, in one batch with good ones
BEGIN;
INSERT INTO payment.queue (body) VALUES
  ('this is not json'),
  (test.payload('{"paymentId": "44444444-4444-4444-8444-444444444444"}')::text),
  ('{"paymentId": "55555555-5555-4555-8555-555555555555", "amount": "lots"}'),
  ('{"paymentId": "66666666-6666-4666-8666-666666666666", "description": "nul \u0000 inside"}'),
  (test.payload('{"paymentId": "77777777-7777-4777-8777-777777777777"}')::text);
COMMIT;
SELECT test.drain();
SELECT payment_id FROM payment.payments
 WHERE payment_id IN ('44444444-4444-4444-8444-444444444444', '77777777-7777-4777-8777-777777777777')
 ORDER BY 1;
SELECT reason, left(error, 60) AS error, payment_id
  FROM payment.dead_letters WHERE reason = 'invalid' ORDER BY error COLLATE "C";

-- a message already received max_receive_count times is dead-lettered
INSERT INTO payment.queue (body, receive_count)
VALUES (test.payload('{"paymentId": "88888888-8888-4888-8888-888888888888"}')::text, 3);
SELECT test.drain();
SELECT reason, error, receive_count, payment_id FROM payment.dead_letters WHERE reason = 'max_receives';

-- transient failures retry with backoff and succeed when the cause goes away
CREATE FUNCTION test.flaky() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.payment_id = '99999999-0000-4000-8000-000000000000' AND
     (SELECT count(*) FROM pg_class WHERE relname = 'flaky_until_dropped') > 0 THEN
    RAISE EXCEPTION 'simulated serialization failure' USING ERRCODE = 'serialization_failure';
  END IF;
  RETURN NEW;
END $$;
CREATE TABLE test.flaky_until_dropped ();
CREATE TRIGGER flaky BEFORE INSERT ON payment.payments
  FOR EACH ROW EXECUTE FUNCTION test.flaky();
SELECT submit_payment(test.payload('{"paymentId": "99999999-0000-4000-8000-000000000000"}')) ->> 'message';
DO $$ BEGIN
  FOR i IN 1..600 LOOP
    EXIT WHEN (SELECT receive_count FROM payment.queue
                WHERE payment_id = '99999999-0000-4000-8000-000000000000') >= 2;
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT receive_count >= 2 AS retried
  FROM payment.queue WHERE payment_id = '99999999-0000-4000-8000-000000000000';
DROP TABLE test.flaky_until_dropped;
SELECT test.drain();
SELECT count(*) AS stored_after_retry FROM payment.payments
 WHERE payment_id = '99999999-0000-4000-8000-000000000000';

-- ... and end as dead letters when the cause stays
CREATE TABLE test.flaky_until_dropped ();
SELECT submit_payment(test.payload('{"paymentId": "99999999-0000-4000-8000-000000000000",
                                     "userId": "99999999-0000-4000-8000-000000000001"}')) ->> 'message';
SELECT test.drain();
SELECT reason, error, receive_count FROM payment.dead_letters
 WHERE user_id = '99999999-0000-4000-8000-000000000001';
DROP TRIGGER flaky ON payment.payments;
DROP TABLE test.flaky_until_dropped;

-- one batch holding a payment twice and once with another body: stored once,
-- then a duplicate, then a conflict (the batch is written by one INSERT; from
-- 1.2 submit_payments refuses such a batch, another producer may still write it)
SELECT duplicates AS duplicates_before FROM payment.stats \gset
INSERT INTO payment.queue (body) VALUES
  (test.payload('{"paymentId": "abababab-abab-4bab-8bab-abababababab"}')::text),
  (test.payload('{"paymentId": "abababab-abab-4bab-8bab-abababababab"}')::text),
  (test.payload('{"paymentId": "abababab-abab-4bab-8bab-abababababab", "amount": 5}')::text);
SELECT test.drain();
SELECT count(*) AS stored, min(amount) AS amount FROM payment.payments
 WHERE payment_id = 'abababab-abab-4bab-8bab-abababababab';
SELECT duplicates - :duplicates_before AS new_duplicates FROM payment.stats;
SELECT reason, body::jsonb ->> 'amount' AS amount FROM payment.dead_letters
 WHERE payment_id = 'abababab-abab-4bab-8bab-abababababab';
DELETE FROM payment.dead_letters WHERE payment_id = 'abababab-abab-4bab-8bab-abababababab';
DELETE FROM payment.payments WHERE payment_id = 'abababab-abab-4bab-8bab-abababababab';
