/*-------------------------------------------------------------------------
 * retired_queue.h
 *	  The replaced SQS queue kept in payment.retired_queues across restarts
 *	  (retired_queue.c).  Each call runs its own transaction: call outside
 *	  any.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_RETIRED_QUEUE_H
#define PAYMENT_RETIRED_QUEUE_H

/* payment.queue_url was changed away from url: drain it, across restarts */
extern void retired_queue_record(const char *url);

/* url is empty (or in use again): stop draining it */
extern void retired_queue_forget(const char *url);

/* at a worker's start: the recorded queue, back into shared memory */
extern void retired_queue_load(void);

#endif							/* PAYMENT_RETIRED_QUEUE_H */
