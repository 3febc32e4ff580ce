/*-------------------------------------------------------------------------
 * backends.h
 *	  The queue backends queue.c chooses from and drains, and the shared
 *	  memory they keep.  Not for use outside src/queue: the front door and
 *	  the drain reach a backend through queue.h only.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_BACKENDS_H
#define PAYMENT_BACKENDS_H

#include "queue/queue.h"

/* the default backend, in the database (embedded.c) */
extern const QueueBackend embedded_queue;

/* Amazon SQS, when payment.queue_url is set (sqs.c) */
extern const QueueBackend sqs_queue;

/* an SQS queue payment.queue_url no longer names, drained until empty (sqs_retired.c) */
extern const QueueBackend sqs_retired_queue;

/* sqs_retired.c: the replaced queue's URL in shared memory */
extern Size sqs_retired_shmem_size(void);
extern void sqs_retired_shmem_init(void);

#endif							/* PAYMENT_BACKENDS_H */
