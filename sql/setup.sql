-- Helpers for the regression tests: a reference payload, a way to see an
-- error's SQLSTATE and detail, and waits for the background workers.
CREATE EXTENSION IF NOT EXISTS payment;
CREATE SCHEMA test;

-- The reference example payment, minus drop_key, plus patch.
CREATE FUNCTION test.payload(patch jsonb DEFAULT '{}', drop_key text DEFAULT NULL)
RETURNS jsonb LANGUAGE sql AS $$
  SELECT ('{"paymentId": "2d5a8218-3c6a-436e-b724-8dff12e7010d",
            "userId": "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4",
            "dateTimestamp": "1709553600",
            "description": "Regular payment made to Netflix from HSBC account",
            "currency": "GBP",
            "amount": 7.99}'::jsonb - coalesce(drop_key, '')) || patch
$$;

-- A fresh payment (new paymentId) for tests that must not collide.
CREATE FUNCTION test.fresh(patch jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql AS $$
  SELECT test.payload(jsonb_build_object('paymentId', gen_random_uuid()::text) || patch)
$$;

CREATE FUNCTION test.try(stmt text, OUT state text, OUT message text, OUT detail text)
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE stmt;
  state := '00000';
  message := 'ok';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                          detail = PG_EXCEPTION_DETAIL;
END $$;

-- Wait (at most a minute) until both workers serve this database.
CREATE PROCEDURE test.wait_for_workers()
LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..600 LOOP
    EXIT WHEN (SELECT count(*) FROM pg_stat_activity
                WHERE backend_type = 'payment worker'
                  AND datname = current_database()) = 2;
    PERFORM pg_sleep(0.1);
    PERFORM pg_stat_clear_snapshot();
  END LOOP;
END $$;

-- Wait (at most a minute) until the queue is empty; says whether it is.
CREATE FUNCTION test.drain() RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..1200 LOOP
    IF NOT EXISTS (SELECT 1 FROM payment.queue) THEN
      RETURN 'drained';
    END IF;
    PERFORM pg_sleep(0.05);
  END LOOP;
  RETURN 'still queued: ' || (SELECT count(*) FROM payment.queue);
END $$;

CALL test.wait_for_workers();
SELECT count(*) AS workers, min(backend_type) AS backend_type
  FROM pg_stat_activity
 WHERE backend_type = 'payment worker' AND datname = current_database();
