-- Dead letters go back on the queue when an operator says so.
SELECT id AS conflict_id FROM payment.dead_letters WHERE reason = 'conflict' \gset

-- nothing matches: nothing moves
SELECT redrive_dead_letters(ARRAY[-1]::bigint[]);
SELECT redrive_dead_letters(reason => 'no such reason');

-- once the stored payment is gone, the conflicting one can be stored
DELETE FROM payment.payments WHERE payment_id = '2d5a8218-3c6a-436e-b724-8dff12e7010d'
   AND user_id = '0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4';
SELECT redrive_dead_letters(ARRAY[:conflict_id]::bigint[]) AS redriven;
SELECT test.drain();
SELECT amount FROM payment.payments WHERE payment_id = '2d5a8218-3c6a-436e-b724-8dff12e7010d'
   AND user_id = '0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4';
SELECT count(*) AS conflicts_left FROM payment.dead_letters WHERE reason = 'conflict';

-- invalid messages come back as dead letters again, with a fresh receive count
SELECT count(*) AS invalid_before FROM payment.dead_letters WHERE reason = 'invalid';
SELECT redrive_dead_letters(reason => 'invalid') AS redriven;
SELECT test.drain();
SELECT count(*) AS invalid_after, max(receive_count) AS receive_count
  FROM payment.dead_letters WHERE reason = 'invalid';

-- a rolled-back redrive leaves the dead letters where they were
BEGIN;
SELECT redrive_dead_letters() > 0 AS redrove_all;
ROLLBACK;
SELECT count(*) > 0 AS dead_letters_kept FROM payment.dead_letters;

-- operators only
SELECT has_function_privilege('public', 'redrive_dead_letters(bigint[], text)', 'EXECUTE') AS public_may_redrive;
