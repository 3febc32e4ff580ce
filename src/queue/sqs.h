/*-------------------------------------------------------------------------
 * sqs.h
 *	  The Amazon SQS queue backend: settings, and the operations the entry
 *	  points and workers use when payment.queue_url is set.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_SQS_H
#define PAYMENT_SQS_H

#include "payment.h"

/* define settings; called from _PG_init */
extern void payment_sqs_init(void);

/* true when payment.queue_url is set */
extern bool payment_use_sqs(void);

/* SendMessage; returns the SQS MessageId once SQS accepted it (MD5 checked) */
extern char *sqs_send_message(const char *body);

/* SendMessageBatch, 10 per request; message_ids[i] receives each MessageId */
extern void sqs_send_message_batch(char **bodies, int count, char **message_ids);

/*
 * ReceiveMessage (long poll of payment.wait_time seconds) of at most
 * max_messages; returns how many, in *messages (palloc'd in the current
 * memory context).
 */
extern int	sqs_receive_messages(QueueMessage **messages, int max_messages);

/*
 * After the store committed: DeleteMessageBatch for stored, duplicate and
 * dead-lettered messages; ChangeMessageVisibilityBatch for retries.
 */
extern void sqs_settle(QueueMessage *messages, int count);

#endif							/* PAYMENT_SQS_H */
