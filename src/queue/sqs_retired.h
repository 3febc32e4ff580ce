/*-------------------------------------------------------------------------
 * sqs_retired.h
 *	  The replaced SQS queue (sqs_retired.c): the backend that drains it,
 *	  and the shared memory that keeps its URL.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_SQS_RETIRED_H
#define PAYMENT_SQS_RETIRED_H

#include "payment.h"
#include "queue/backend.h"

/* an SQS queue payment.queue_url no longer names, drained until empty */
extern const QueueBackend sqs_retired_queue;

/* the replaced queue's URL in shared memory */
extern const PaymentShmem sqs_retired_shmem;

#endif							/* PAYMENT_SQS_RETIRED_H */
