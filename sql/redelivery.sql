-- A message delivered again after it was settled (at-least-once delivery:
-- SQS redelivers when a delete fails or a worker dies before deleting) is
-- recognised: a stored payment is a duplicate, and a dead letter is written
-- once per message, not once per delivery.  The embedded queue has no
-- message_id key, so two rows with the same message_id stand for two
-- deliveries of one message.

-- the same poison message delivered twice, in one batch and then again
BEGIN;
INSERT INTO payment.queue (message_id, body) VALUES
  ('0b0e5a1c-0000-4000-8000-000000000001', 'not json, delivered twice {'),
  ('0b0e5a1c-0000-4000-8000-000000000001', 'not json, delivered twice {');
COMMIT;
SELECT test.drain();
INSERT INTO payment.queue (message_id, body)
VALUES ('0b0e5a1c-0000-4000-8000-000000000001', 'not json, delivered twice {');
SELECT test.drain();
SELECT message_id, reason, body FROM payment.dead_letters
 WHERE message_id = '0b0e5a1c-0000-4000-8000-000000000001';

-- a conflict delivered twice is one dead letter too
SELECT submit_payment(test.payload('{"paymentId": "0b0e5a1c-0000-4000-8000-0000000000aa"}')) ->> 'message';
SELECT test.drain();
INSERT INTO payment.queue (message_id, body) VALUES
  ('0b0e5a1c-0000-4000-8000-000000000002',
   test.payload('{"paymentId": "0b0e5a1c-0000-4000-8000-0000000000aa", "amount": 2}')::text);
SELECT test.drain();
INSERT INTO payment.queue (message_id, body) VALUES
  ('0b0e5a1c-0000-4000-8000-000000000002',
   test.payload('{"paymentId": "0b0e5a1c-0000-4000-8000-0000000000aa", "amount": 2}')::text);
SELECT test.drain();
SELECT message_id, reason FROM payment.dead_letters
 WHERE message_id = '0b0e5a1c-0000-4000-8000-000000000002';
SELECT amount FROM payment.payments WHERE payment_id = '0b0e5a1c-0000-4000-8000-0000000000aa';

-- another message with the same body is another dead letter
INSERT INTO payment.queue (message_id, body)
VALUES ('0b0e5a1c-0000-4000-8000-000000000003', 'not json, delivered twice {');
SELECT test.drain();
SELECT message_id, reason FROM payment.dead_letters
 WHERE body = 'not json, delivered twice {' ORDER BY message_id;

-- leave nothing behind for later tests
DELETE FROM payment.dead_letters WHERE message_id LIKE '0b0e5a1c-%';
DELETE FROM payment.payments WHERE payment_id = '0b0e5a1c-0000-4000-8000-0000000000aa';

-- payment.queue is a view from 1.1: an UPDATE is refused (0A000), a message
-- needs a body (23502), and the claim needs READ COMMITTED (0A000)
\set VERBOSITY sqlstate
INSERT INTO payment.queue (body, visible_at)
VALUES ('held for an hour', clock_timestamp() + interval '1 hour');
UPDATE payment.queue SET body = 'changed' WHERE body = 'held for an hour';
INSERT INTO payment.queue (payment_id) VALUES (NULL);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM payment.claim_messages(1);
ROLLBACK;
\set VERBOSITY default
DELETE FROM payment.queue WHERE body = 'held for an hour';
SELECT count(*) FROM payment.queue WHERE body = 'held for an hour';
