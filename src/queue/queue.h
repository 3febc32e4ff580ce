/*-------------------------------------------------------------------------
 * queue.h
 *	  What the front door and the drain ask of the queue, whichever holds
 *	  the messages (the embedded table or Amazon SQS): the backend in use
 *	  and what a backend is (backend.h), where a worker claims next, a
 *	  worker's start, reload and leaving, the tables of this database
 *	  (layout.h), the key record of accepted payments (intake_keys.h),
 *	  dead-letter reason names and redrive (queue.c).
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_QUEUE_H
#define PAYMENT_QUEUE_H

#include "datatype/timestamp.h"

#include "payment.h"
#include "queue/backend.h"
#include "queue/intake_keys.h"
#include "queue/layout.h"

extern const char *dead_letter_reason_name(DeadLetterReason reason);

/* the backend in use: SQS when payment.queue_url is set */
extern const QueueBackend *queue_backend(void);

/*
 * Where a worker claims from next.  A round of claims starts with
 * queue_first_source and goes on while queue_next_source, told what the
 * last claim handled and its idle time, gives another source.  Every so
 * often (and at once after a reload that left something new) the round
 * first looks at the leftovers: one that had messages ends the round, an
 * empty one passes on to the next; the backend in use comes last.
 */
typedef struct QueueSource
{
	const QueueBackend *backend;	/* claim, store and settle through it */
	bool		in_use;			/* the queue configured now, not a leftover */
	/* queue.c's own */
	int			next;			/* the backend to ask for leftovers next */
	double		leftover_idle;	/* the shortest idle time of the empty ones */
	TimestampTz started;
} QueueSource;

extern void queue_first_source(QueueSource *source);
extern bool queue_next_source(QueueSource *source, int handled, double idle_seconds);

/* a worker's start in its database, once the extension is there (the backends' start) */
extern void queue_start(void);

/*
 * A worker's SIGHUP: reads the configuration file again (ProcessConfigFile),
 * and has each backend note what a change left to drain.
 */
extern void queue_reload_settings(void);

/*
 * A worker that leaves: every backend gives back what it holds (give_back);
 * a failure only delays those messages, and is a warning.
 */
extern void queue_give_back(void);

/* define the queue backends' settings; called from _PG_init */
extern void queue_define_settings(void);

/* the queue layer's struct in shared memory (see PaymentShmem) */
extern const PaymentShmem *queue_shmem(void);

/*
 * Move dead letters (those with the given ids and/or reason; all when both
 * are NULL) back onto the queue in use.  Returns how many were moved.
 */
extern uint64 queue_redrive(Datum ids, bool ids_null, Datum reason, bool reason_null);

#endif							/* PAYMENT_QUEUE_H */
