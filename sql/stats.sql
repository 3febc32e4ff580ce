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
