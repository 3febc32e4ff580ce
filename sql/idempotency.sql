-- The idempotent front door (1.2): a retry gets the first answer, a reused
-- key is refused at once, every accepted payment says who sent it under
-- which request id.

-- an error's SQLSTATE, message, detail, hint and first context line
CREATE FUNCTION test.refusal(stmt text, OUT state text, OUT message text, OUT detail text,
                             OUT hint text, OUT context text)
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE stmt;
  state := '00000';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                          detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT,
                          context = PG_EXCEPTION_CONTEXT;
  context := split_part(context, E'\n', 1);
END $$;

-- the same with the detail's message id and time masked
CREATE FUNCTION test.masked(detail text) RETURNS text LANGUAGE sql AS $$
  SELECT regexp_replace(regexp_replace(detail,
           '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<messageId>'),
           ' at .*\.$', ' at <acceptedAt>.')
$$;

CREATE FUNCTION test.is_uuid(t text) RETURNS boolean LANGUAGE sql AS $$
  SELECT t ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'
$$;

SELECT test.drain();
ALTER SYSTEM SET payment.paused = on;
SELECT pg_reload_conf();
-- the workers take the setting in at their next turn
SELECT pg_sleep(1);

---------------------------------------------------------------------------
-- replay before the store: the first answer, nothing enqueued
SELECT submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000001"}')) AS first \gset
SELECT :'first'::jsonb - 'messageId' - 'requestId' - 'submittedBy' AS first_answer,
       test.is_uuid(:'first'::jsonb ->> 'messageId') AS has_message_id,
       test.is_uuid(:'first'::jsonb ->> 'requestId') AS generated_request_id,
       :'first'::jsonb ->> 'submittedBy' = current_user AS submitted_by_me;
SELECT count(*) AS depth FROM payment.queue;
SELECT submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000001"}')) AS replay \gset
SELECT :'replay'::jsonb - 'messageId' - 'requestId' - 'submittedBy' AS replay_answer,
       :'replay'::jsonb -> 'messageId' = :'first'::jsonb -> 'messageId' AS same_message_id,
       :'replay'::jsonb -> 'requestId' = :'first'::jsonb -> 'requestId' AS first_request_id,
       :'replay'::jsonb -> 'submittedBy' = :'first'::jsonb -> 'submittedBy' AS first_submitter;
SELECT count(*) AS depth FROM payment.queue;

-- JSON-equal bodies are the same body: numbers by value, keys in any order
SELECT submit_payment('{"amount": 7.990, "currency": "GBP",
                        "userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4",
                        "description": "Regular payment made to Netflix from HSBC account",
                        "dateTimestamp": "1709553600",
                        "paymentId": "1d000000-0000-4000-8000-000000000001"}') -> 'messageId'
       = :'first'::jsonb -> 'messageId' AS trailing_zero_replays;
SELECT submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000001",
                                     "amount": 799e-2}')) ->> 'replayed' AS exponent_replays;
SELECT payment.body_digest('{"a": 7.990, "b": [1, {"y": 2, "x": 1}]}')
       = payment.body_digest('{"b":[1.0,{"x":1,"y":2.00}],"a":7.99}') AS digest_equal,
       payment.body_digest('{"a": 7.99}') = payment.body_digest('{"a": 7.991}') AS digest_of_other,
       payment.body_digest('not json') IS NULL AS digest_of_text;
SELECT count(*) AS depth FROM payment.queue;

-- conflict before the store: refused at once, naming the first acceptance
SELECT state, message, test.masked(detail) AS detail, hint,
       detail LIKE '%' || (:'first'::jsonb ->> 'messageId') || '%' AS detail_names_first
  FROM test.refusal($$SELECT submit_payment(test.payload(
         '{"paymentId": "1d000000-0000-4000-8000-000000000001", "amount": 8}'))$$);
SELECT count(*) AS depth FROM payment.queue;
SELECT payment_status('1d000000-0000-4000-8000-000000000001')
       - 'changedAt' - 'messageId' - 'requestId' - 'submittedBy' AS queued;

-- with a backlog, payment_status answers each state from its own record
SELECT submit_payments(jsonb_agg(test.fresh())) ->> 'count' AS backlog
  FROM generate_series(1, 500);
SELECT count(*) AS depth FROM payment.queue;
SELECT s ->> 'status' AS status,
       s -> 'messageId' = :'first'::jsonb -> 'messageId' AS first_message_id,
       s -> 'requestId' = :'first'::jsonb -> 'requestId' AS first_request_id,
       s ->> 'submittedBy' = current_user AS submitted_by_me
  FROM payment_status('1d000000-0000-4000-8000-000000000001') s;
SELECT payment_status('33333333-3333-4333-8333-333333333333') ->> 'status' AS stored_before,
       payment_status('00000000-0000-4000-8000-00000000abcd') ->> 'status' AS unknown,
       payment_status('55555555-5555-4555-8555-555555555555') ->> 'status' AS dead_lettered;

---------------------------------------------------------------------------
-- after the store
ALTER SYSTEM RESET payment.paused;
SELECT pg_reload_conf();
SELECT test.drain();
SELECT count(*) AS key_records_left FROM payment.idempotency_keys;
SELECT message_id = :'first'::jsonb ->> 'messageId' AS stored_first_message,
       request_id = :'first'::jsonb ->> 'requestId' AS stored_request_id,
       submitted_by = current_user AS stored_submitted_by, amount
  FROM payment.payments WHERE payment_id = '1d000000-0000-4000-8000-000000000001';
SELECT s - 'changedAt' - 'messageId' - 'requestId' - 'submittedBy' AS stored,
       s -> 'messageId' = :'first'::jsonb -> 'messageId' AS first_message_id,
       s -> 'requestId' = :'first'::jsonb -> 'requestId' AS first_request_id
  FROM payment_status('1d000000-0000-4000-8000-000000000001') s;

-- replay after the store: the first answer from the stored payment
SELECT submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000001"}')) AS replay \gset
SELECT :'replay'::jsonb - 'messageId' - 'requestId' - 'submittedBy' AS replay_answer,
       :'replay'::jsonb -> 'messageId' = :'first'::jsonb -> 'messageId' AS same_message_id,
       :'replay'::jsonb -> 'requestId' = :'first'::jsonb -> 'requestId' AS first_request_id;
SELECT submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000001",
                                     "amount": 7.9900}')) ->> 'replayed' AS json_equal_replays;
SELECT count(*) AS depth, (SELECT count(*) FROM payment.idempotency_keys) AS key_records
  FROM payment.queue;

-- conflict after the store
SELECT state, message, test.masked(detail) AS detail, hint,
       detail LIKE '%' || (:'first'::jsonb ->> 'messageId') || '%' AS detail_names_first
  FROM test.refusal($$SELECT submit_payment(test.payload(
         '{"paymentId": "1d000000-0000-4000-8000-000000000001", "description": "other"}'))$$);
SELECT count(*) AS depth FROM payment.queue;
SELECT count(*) AS stored, min(body ->> 'description') AS description
  FROM payment.payments WHERE payment_id = '1d000000-0000-4000-8000-000000000001';

---------------------------------------------------------------------------
-- submit_payments: replays counted, each answered with its first message id
ALTER SYSTEM SET payment.paused = on;
SELECT pg_reload_conf();
SELECT pg_sleep(1);
SELECT submit_payments(jsonb_build_array(
         test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000001"}'),
         test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000002"}'),
         test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000002", "amount": 7.990}'),
         test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000003"}'))) AS batch \gset
SELECT :'batch'::jsonb ->> 'count' AS count, :'batch'::jsonb ->> 'replayed' AS replayed,
       :'batch'::jsonb -> 'messageIds' -> 0 = :'first'::jsonb -> 'messageId' AS stored_one_first_id,
       :'batch'::jsonb -> 'messageIds' -> 1 = :'batch'::jsonb -> 'messageIds' -> 2 AS twice_one_id,
       :'batch'::jsonb -> 'messageIds' -> 1 <> :'batch'::jsonb -> 'messageIds' -> 3 AS others_differ,
       test.is_uuid(:'batch'::jsonb ->> 'requestId') AS request_id,
       :'batch'::jsonb ->> 'submittedBy' = current_user AS submitted_by_me;
SELECT count(*) AS depth FROM payment.queue;
SELECT payment_id, message_id::text = (:'batch'::jsonb -> 'messageIds' ->> 1) AS first_of_two
  FROM payment.queue ORDER BY payment_id;

-- the batch again: all replays
SELECT b ->> 'count' AS count, b ->> 'replayed' AS replayed,
       b -> 'messageIds' = :'batch'::jsonb -> 'messageIds' AS same_message_ids
  FROM submit_payments(jsonb_build_array(
         test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000001"}'),
         test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000002"}'),
         test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000002", "amount": 7.990}'),
         test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000003"}'))) b;

-- a conflict aborts the whole batch, naming its index
SELECT state, message, test.masked(detail) AS detail, hint, context
  FROM test.refusal($$SELECT submit_payments(jsonb_build_array(
         test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000004"}'),
         test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000002"}'),
         test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000003", "amount": 1}')))$$);
-- ... and a conflict within the batch itself
SELECT state, message, test.masked(detail) AS detail, context
  FROM test.refusal($$SELECT submit_payments(jsonb_build_array(
         test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000005"}'),
         test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000005", "amount": 1}')))$$);
SELECT count(*) AS depth FROM payment.queue;
SELECT payment_status('1d000000-0000-4000-8000-000000000004') ->> 'status' AS not_enqueued,
       payment_status('1d000000-0000-4000-8000-000000000005') ->> 'status' AS not_enqueued_either,
       (SELECT count(*) FROM payment.idempotency_keys
         WHERE payment_id IN ('1d000000-0000-4000-8000-000000000004',
                              '1d000000-0000-4000-8000-000000000005')) AS key_records;
ALTER SYSTEM RESET payment.paused;
SELECT pg_reload_conf();
SELECT test.drain();

---------------------------------------------------------------------------
-- request ids: x-request-id, else traceparent, when well formed; else generated
SET request.headers = '{"x-request-id": "abc-123"}';
SELECT submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000010"}'))
       ->> 'requestId' AS x_request_id;
SET request.headers = '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}';
SELECT submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000011"}'))
       ->> 'requestId' AS traceparent;
SET request.headers = '{"x-request-id": "Root=1-67891233-abcdef012345678912345678", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}';
SELECT submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000012"}'))
       ->> 'requestId' AS x_request_id_first;
SET request.headers = '{"x-request-id": "abc 123; drop", "traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}';
SELECT test.is_uuid(submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000013"}'))
       ->> 'requestId') AS malformed_replaced;
SET request.headers = '{"traceparent": "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}';
SELECT test.is_uuid(submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000014"}'))
       ->> 'requestId') AS upper_case_traceparent_replaced;
SELECT set_config('request.headers', jsonb_build_object('x-request-id', repeat('a', 129))::text, false) IS NOT NULL AS set;
SELECT test.is_uuid(submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000015"}'))
       ->> 'requestId') AS too_long_replaced;
SELECT set_config('request.headers', jsonb_build_object('x-request-id', repeat('a', 128))::text, false) IS NOT NULL AS set;
SELECT length(submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000016"}'))
       ->> 'requestId') AS longest_kept;
-- a replay answers the first request id, not the retry's
SET request.headers = '{"x-request-id": "retry-1"}';
SELECT submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000010"}'))
       ->> 'requestId' AS replay_request_id;
SELECT submit_payments(jsonb_build_array(
         test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000017"}'))) ->> 'requestId' AS batch_request_id;
RESET request.headers;
SELECT test.drain();
SELECT payment_id, request_id, submitted_by = current_user AS submitted_by_me
  FROM payment.payments
 WHERE payment_id IN ('1d000000-0000-4000-8000-000000000010', '1d000000-0000-4000-8000-000000000011',
                      '1d000000-0000-4000-8000-000000000012', '1d000000-0000-4000-8000-000000000017')
 ORDER BY payment_id;
SELECT payment_status('1d000000-0000-4000-8000-000000000010') ->> 'requestId' AS status_request_id;

---------------------------------------------------------------------------
-- submittedBy per authentication mode: role (the session's role, also after
-- SET ROLE) and api_key (the key's id); jwt (the user claim) needs a JWKS
-- endpoint and is tested by TAP
CREATE ROLE idem_caller;
GRANT USAGE ON SCHEMA payment, test TO idem_caller;
GRANT EXECUTE ON FUNCTION submit_payment(jsonb, text), payment_status(uuid, text) TO idem_caller;
SET ROLE idem_caller;
SELECT submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000020"}'))
       ->> 'submittedBy' AS role_mode;
RESET ROLE;
SELECT create_api_key('idem-key') AS api_key \gset
SET payment.auth = 'api_key';
SELECT submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000021"}'), :'api_key')
       ->> 'submittedBy' = (SELECT key_id FROM payment.api_keys WHERE name = 'idem-key') AS api_key_mode;
-- a replay under another caller answers who sent it first
SELECT submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000020"}'), :'api_key')
       ->> 'submittedBy' AS replay_submitted_by;
RESET payment.auth;
SELECT test.drain();
SELECT payment_id, submitted_by = 'idem_caller' AS by_role,
       submitted_by = (SELECT key_id FROM payment.api_keys WHERE name = 'idem-key') AS by_key
  FROM payment.payments
 WHERE payment_id IN ('1d000000-0000-4000-8000-000000000020', '1d000000-0000-4000-8000-000000000021')
 ORDER BY payment_id;
SET ROLE idem_caller;
SELECT payment_status('1d000000-0000-4000-8000-000000000020') ->> 'submittedBy' AS status_submitted_by;
RESET ROLE;
SELECT revoke_api_key('idem-key');
REVOKE ALL ON FUNCTION submit_payment(jsonb, text), payment_status(uuid, text) FROM idem_caller;
REVOKE ALL ON SCHEMA payment, test FROM idem_caller;
DROP ROLE idem_caller;

---------------------------------------------------------------------------
-- a dead-lettered payment's key: a new submission is a fresh attempt, and
-- the dead letter stays for the record
CREATE FUNCTION test.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.payment_id = '1d000000-0000-4000-8000-000000000030' THEN
    RAISE EXCEPTION 'simulated serialization failure' USING ERRCODE = 'serialization_failure';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse BEFORE INSERT ON payment.payments
  FOR EACH ROW EXECUTE FUNCTION test.refuse();
SET request.headers = '{"x-request-id": "dead-1"}';
SELECT submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000030"}')) AS doomed \gset
SELECT test.drain();
DROP TRIGGER refuse ON payment.payments;
SELECT reason, receive_count, request_id, submitted_by = current_user AS submitted_by_me,
       message_id = :'doomed'::jsonb ->> 'messageId' AS its_message
  FROM payment.dead_letters WHERE payment_id = '1d000000-0000-4000-8000-000000000030';
SELECT s - 'changedAt' - 'messageId' - 'submittedBy' AS dead_lettered,
       s ->> 'submittedBy' = current_user AS submitted_by_me
  FROM payment_status('1d000000-0000-4000-8000-000000000030') s;
SELECT count(*) AS key_records FROM payment.idempotency_keys
 WHERE payment_id = '1d000000-0000-4000-8000-000000000030';
SET request.headers = '{"x-request-id": "dead-2"}';
SELECT submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000030"}')) AS again \gset
RESET request.headers;
SELECT :'again'::jsonb - 'messageId' - 'submittedBy' AS fresh_attempt,
       :'again'::jsonb -> 'messageId' <> :'doomed'::jsonb -> 'messageId' AS new_message_id;
SELECT test.drain();
SELECT request_id, message_id = :'again'::jsonb ->> 'messageId' AS its_message
  FROM payment.payments WHERE payment_id = '1d000000-0000-4000-8000-000000000030';
SELECT count(*) AS dead_letters_kept FROM payment.dead_letters
 WHERE payment_id = '1d000000-0000-4000-8000-000000000030';
SELECT payment_status('1d000000-0000-4000-8000-000000000030') ->> 'status' AS status;
DELETE FROM payment.dead_letters WHERE payment_id = '1d000000-0000-4000-8000-000000000030';

---------------------------------------------------------------------------
-- another producer writing to payment.queue: its message gets a key record
-- from the body, so a submission of the same payment replays it
BEGIN;
INSERT INTO payment.queue (body)
VALUES (test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000040"}')::text);
SELECT submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000040"}')) AS via_queue \gset
SELECT :'via_queue'::jsonb ->> 'replayed' AS replayed,
       :'via_queue'::jsonb ->> 'messageId' = (SELECT message_id::text FROM payment.queue
                                               WHERE payment_id = '1d000000-0000-4000-8000-000000000040') AS queue_message,
       (SELECT count(*) FROM payment.queue) AS depth;
ROLLBACK;
-- ... its conflicting message for a stored payment takes no key record, so
-- a replay of the stored payment is answered while that message is queued
BEGIN;
INSERT INTO payment.queue (body)
VALUES (test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000001", "amount": 9}')::text);
SELECT submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000001"}'))
       -> 'messageId' = :'first'::jsonb -> 'messageId' AS replays_while_queued,
       (SELECT count(*) FROM payment.idempotency_keys) AS key_records;
ROLLBACK;
-- ... and is dead-lettered by the store, leaving no key record behind
INSERT INTO payment.queue (body)
VALUES (test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000001", "amount": 9}')::text);
SELECT test.drain();
SELECT reason, body::jsonb ->> 'amount' AS amount FROM payment.dead_letters
 WHERE payment_id = '1d000000-0000-4000-8000-000000000001';
SELECT submit_payment(test.payload('{"paymentId": "1d000000-0000-4000-8000-000000000001"}'))
       -> 'messageId' = :'first'::jsonb -> 'messageId' AS still_replays;
DELETE FROM payment.dead_letters WHERE payment_id = '1d000000-0000-4000-8000-000000000001';

SELECT count(*) AS key_records_left FROM payment.idempotency_keys;
