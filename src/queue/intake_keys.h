/*-------------------------------------------------------------------------
 * intake_keys.h
 *	  The key record of accepted payments (intake_keys.c): the front
 *	  door's idempotency, the store's settling of it.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_INTAKE_KEYS_H
#define PAYMENT_INTAKE_KEYS_H

#include "datatype/timestamp.h"

#include "queue/backend.h"

/* What the front door answers for one payment of a call. */
typedef struct KeyAnswer
{
	bool		replayed;		/* accepted before: enqueue nothing */
	/* a replay of an earlier payment of the same call (-1: none) */
	int			replay_of;
	char	   *message_id;		/* a replay's: the first acceptance's */
	char	   *request_id;
	char	   *submitted_by;
} KeyAnswer;

/* whether this database has the key record (extension 1.2) */
extern bool intake_keys_in_use(void);

/*
 * In the caller's transaction, before the payments are enqueued: record
 * each key, or find it recorded.  answers[i].replayed says which payments
 * were accepted before with a JSON-equal body; a payment whose key was
 * accepted with another body raises 23505 (*current: its index, for the
 * caller's error context).  A transaction submitting the same key is
 * waited for; 40001 where the caller's snapshot cannot see what it
 * committed.  message_ids of payments with none set are filled later
 * (intake_keys_name).
 */
extern void intake_keys_claim(const QueuedPayment *payments, int count,
							  KeyAnswer *answers, int *current);

/* After the enqueue of a backend that names its messages: record the names. */
extern void intake_keys_name(const QueuedPayment *payments, const KeyAnswer *answers,
							 char **message_ids, int count);

/*
 * Payments queued other than through the front door (redriven dead
 * letters, rows inserted into payment.queue): record the keys of those
 * whose body has both, where not recorded already, so that payment_status
 * finds them and a submission of them is answered as a replay.
 */
extern void intake_keys_note(const QueuedPayment *payments, char **message_ids, int count);

/*
 * Which attempt at the payment this is: how many times its key was
 * dead-lettered (a FIFO queue's deduplication id tells attempts apart).
 */
extern int	intake_keys_attempt(const QueuedPayment *payment);

/*
 * In the store's transaction: the messages' payments are settled (stored,
 * duplicates, dead-lettered); their key records go, and what they said of
 * the call (request id, caller) is copied into the messages.  Messages
 * whose keys are unknown (payment_id 0) or recorded by another message are
 * left alone.
 */
extern void intake_keys_settle(QueueMessage **messages, int count);

#endif							/* PAYMENT_INTAKE_KEYS_H */
