/*-------------------------------------------------------------------------
 * sqs.c
 *	  Amazon SQS backend.  STUB until issue 3: payment.queue_url is not yet
 *	  defined, so the embedded queue is always used.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "sqs.h"

void
payment_sqs_init(void)
{
}

bool
payment_use_sqs(void)
{
	return false;
}

char *
sqs_send_message(const char *body)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					errmsg("the SQS backend is not available")));
	return NULL;
}

void
sqs_send_message_batch(char **bodies, int count, char **message_ids)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					errmsg("the SQS backend is not available")));
}

int
sqs_receive_messages(QueueMessage **messages, int max_messages)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					errmsg("the SQS backend is not available")));
	return 0;
}

void
sqs_settle(QueueMessage *messages, int count)
{
}
