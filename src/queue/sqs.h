/*-------------------------------------------------------------------------
 * sqs.h
 *	  The Amazon SQS queue backend (sqs.c): its settings, and what the
 *	  replaced queue's backend (sqs_retired.c) shares of it.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_SQS_H
#define PAYMENT_SQS_H

#include "queue/backend.h"

/* the Amazon SQS backend, used when payment.queue_url is set */
extern const QueueBackend sqs_queue;

/* AWS's limit of entries per batch request, and so of messages per receive */
#define SQS_MAX_BATCH 10

extern int	payment_wait_time;

extern void sqs_define_settings(void);

/*
 * For the replaced queue (sqs_retired.c), drained as the configured one is:
 * a receive from queue_url (the backend's claim, for another queue), and
 * the backend's settle, which sends each message's request to the queue
 * that gave it.
 */
extern int	sqs_receive(const char *queue_url, QueueMessage **messages, int max_messages,
						double *idle_seconds);
extern void sqs_settle(QueueMessage *messages, int count);

#endif							/* PAYMENT_SQS_H */
