/*-------------------------------------------------------------------------
 * event_log.h
 *	  The embedded queue's insert-only event tables and batch log (from
 *	  extension 1.1 on): appending messages, cutting and claiming batches,
 *	  settling them, and emptying the tables by TRUNCATE when settled.
 *	  Used by embedded.c only.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_EVENT_LOG_H
#define PAYMENT_EVENT_LOG_H

#include "queue/backend.h"
#include "utils/tuplestore.h"

/*
 * What the embedded queue knows a claimed message by (QueueMessage.handle):
 * an event of a batch, or a message with a row of its own (batch_id 0).
 */
typedef struct EmbeddedHandle
{
	int64		seq;			/* the message's number */
	uint64		txid;			/* an event: its transaction */
	int64		batch_id;		/* an event: its batch; 0 for a row of its own */
	int			batch_gen;		/* ... the generation holding the batch's rows */
	int			batch_step;		/* ... the batch log row of this claim */
} EmbeddedHandle;

#define EMBEDDED_HANDLE(m) ((EmbeddedHandle *) (m)->handle)

/* payment.queue_rotate_after, seconds */
extern int	queue_rotate_after;

extern void event_log_define_settings(void);

/*
 * Append messages to the current event table, in the caller's transaction
 * and SPI connection; message_ids[i] gets each id, in the caller's context.
 * message_id (for a single message; else each payment's own, where set) and
 * enqueued_at may be NULL (generated).
 */
extern void event_log_append(const QueuedPayment *payments, int count,
							 char **message_ids, MemoryContext caller,
							 const char *message_id, Datum enqueued_at);

/*
 * Claim one batch of at most max_messages (a chunk cut anew, or a batch
 * whose claim expired), in the caller's transaction and SPI connection;
 * serialised with other claimers by a transaction-level lock.  Returns the
 * number of messages, allocated in result_context.  *next_visible_in (in:
 * a cap) says when a claimed batch's lease runs out, so an idle worker
 * wakes for it.
 */
extern int	event_log_claim(QueueMessage **messages, int max_messages,
							MemoryContext result_context, bool look_for_expired,
							double *next_visible_in);

/* In the store's transaction: the batch is settled; retried messages get a row of their own. */
extern void event_log_settle(QueueMessage *messages, int count);

/* In a transaction of its own: give the batch back at once, this receive not counted. */
extern void event_log_release(QueueMessage *messages, int count);

/* In a transaction of its own: empty the event tables whose messages are all settled. */
extern void event_log_rotate(void);

/*
 * Put the unsettled messages into store (desc: payment.queue's columns):
 * all, or those of payment_id.  In the caller's SPI connection.
 */
extern void event_log_list(Tuplestorestate *store, TupleDesc desc, Datum payment_id, bool all);

#endif							/* PAYMENT_EVENT_LOG_H */
