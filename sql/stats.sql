-- payment.stats: what is going on.
SELECT test.drain();
SELECT submitted > 0 AS submitted,
       stored > 0 AS stored, duplicates > 0 AS duplicates, conflicts > 0 AS conflicts,
       dead_lettered > 0 AS dead_lettered, retried > 0 AS retried, redriven > 0 AS redriven,
       queue_depth, in_flight, oldest_queued_age, dead_letters = (SELECT count(*) FROM payment.dead_letters) AS dead_letters, workers
  FROM payment.stats;

-- a queued message shows as depth and age
BEGIN;
INSERT INTO payment.queue (body, enqueued_at) VALUES ('{}', clock_timestamp() - interval '1 hour');
SELECT queue_depth, oldest_queued_age >= interval '1 hour' AS old FROM payment.stats;
ROLLBACK;

SELECT attname FROM pg_attribute WHERE attrelid = 'payment.stats'::regclass AND attnum > 0 ORDER BY attnum;

-- a payment queued ten minutes ago and stored now: the last minute's
-- latency shows it; dead letters by reason add up to the total
INSERT INTO payment.queue (body, enqueued_at)
VALUES (test.fresh()::text, clock_timestamp() - interval '10 minutes');
SELECT test.drain();
SELECT stored_last_minute > 0 AS stored_recently, latency_p50 > interval '0' AS p50,
       latency_p99 >= latency_p50 AS p99_not_below_p50,
       dead_lettered_invalid > 0 AND dead_lettered_conflict > 0 AS reasons_seen,
       dead_lettered_invalid + dead_lettered_conflict + dead_lettered_max_receives
         = dead_lettered AS reasons_add_up,
       dead_lettered_conflict = conflicts AS conflicts_are_a_reason
  FROM payment.stats;
SELECT value >= 600 AND value < 660 AS max_is_ten_minutes
  FROM payment.metrics() WHERE metric = 'store_latency_max_seconds';
SELECT metric, label, value IS NOT NULL AS known FROM payment.metrics();
