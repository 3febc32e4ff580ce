/*-------------------------------------------------------------------------
 * sqs.c
 *	  The Amazon SQS queue backend, used when payment.queue_url is set.
 *
 * Owns: the payment.wait_time setting and the operations (SendMessage,
 * SendMessageBatch, ReceiveMessage, DeleteMessageBatch,
 * ChangeMessageVisibilityBatch) built on one signed request of
 * sqs_client.c, behind the QueueBackend interface.  Every operation raises
 * an ERROR when it fails; the workers catch it and back off, and the entry
 * points let it reach the client.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "common/digest.h"
#include "common/json_util.h"
#include "payment.h"
#include "queue/queue.h"
#include "queue/sqs.h"
#include "queue/sqs_client.h"

/* AWS's limits per batch request */
#define SQS_MAX_BATCH 10
#define SQS_MAX_BATCH_BYTES (256 * 1024)
#define SQS_MAX_VISIBILITY (12 * 60 * 60)

int			payment_wait_time = 20;

void
sqs_define_settings(void)
{
	DefineCustomIntVariable("payment.wait_time",
							gettext_noop("Seconds a worker's SQS receive waits for messages (long poll)."),
							NULL,
							&payment_wait_time,
							20, 0, 20,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
}

/* ------------------------------------------------------------------ */
/* operations */

static char *
sqs_send_message(const QueuedPayment *payment)
{
	const char *body = payment->body;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt = AllocSetContextCreate(caller, "SQS SendMessage",
											  ALLOCSET_DEFAULT_SIZES);
	StringInfoData req;
	JsonbContainer *answer;
	char	   *message_id;
	char	   *md5;
	char		expected[33];
	char	   *result;

	MemoryContextSwitchTo(cxt);
	sqs_start_request(&req);
	appendStringInfoString(&req, ",\"MessageBody\":");
	escape_json(&req, body);
	appendStringInfoChar(&req, '}');

	answer = sqs_call("SendMessage", &req, 0);
	message_id = json_get_string(answer, "MessageId");
	md5 = json_get_string(answer, "MD5OfMessageBody");
	digest_md5_hex(body, strlen(body), expected);
	if (message_id == NULL || md5 == NULL || pg_strcasecmp(md5, expected) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("SQS did not confirm the message body"),
				 errdetail("MessageId %s, MD5OfMessageBody %s, expected %s.",
						   message_id ? message_id : "(none)",
						   md5 ? md5 : "(none)", expected),
				 errhint("The message may have been enqueued damaged; the store dead-letters what it cannot read.")));

	MemoryContextSwitchTo(caller);
	result = pstrdup(message_id);
	MemoryContextDelete(cxt);
	return result;
}

/*
 * Send bodies[first..] until 10 entries or the batch size limit; returns
 * the index after the last one sent.
 */
static int
send_batch_chunk(const char **bodies, int first, int count, char **message_ids)
{
	StringInfoData req;
	JsonbContainer *answer;
	JsonbContainer *ok;
	JsonbContainer *failed;
	size_t		bytes = 0;
	int			end = first;
	int			nfailed;

	sqs_start_request(&req);
	appendStringInfoString(&req, ",\"Entries\":[");
	while (end < count && end - first < SQS_MAX_BATCH)
	{
		size_t		len = strlen(bodies[end]);

		/* a lone oversized body still goes, for SQS to name the problem */
		if (end > first && bytes + len > SQS_MAX_BATCH_BYTES)
			break;
		bytes += len;
		appendStringInfo(&req, "%s{\"Id\":\"%d\",\"MessageBody\":",
						 end > first ? "," : "", end);
		escape_json(&req, bodies[end]);
		appendStringInfoChar(&req, '}');
		end++;
	}
	appendStringInfoString(&req, "]}");

	answer = sqs_call("SendMessageBatch", &req, 0);

	failed = json_get_container(answer, "Failed");
	nfailed = json_array_size(failed);
	if (nfailed > 0)
	{
		StringInfoData detail;
		char	   *first_code = NULL;

		initStringInfo(&detail);
		for (int i = 0; i < nfailed; i++)
		{
			JsonbContainer *f = json_array_object(failed, i);
			char	   *id = json_get_string(f, "Id");
			char	   *code = json_get_string(f, "Code");
			char	   *msg = json_get_string(f, "Message");

			if (first_code == NULL)
				first_code = code;
			appendStringInfo(&detail, "%sentry %s: %s%s%s",
							 i > 0 ? "; " : "", id ? id : "?",
							 code ? code : "(no code)",
							 msg ? ": " : "", msg ? msg : "");
		}
		ereport(ERROR,
				(errcode(sqs_error_sqlstate(first_code, 400)),
				 errmsg("SQS rejected %d of the payments %d to %d", nfailed,
						first, end - 1),
				 errdetail("Entries are numbered from 0 in the order given: %s.",
						   detail.data),
				 errhint("Entries before %d and accepted entries of this batch were enqueued.",
						 first)));
	}

	ok = json_get_container(answer, "Successful");
	for (int i = 0; i < json_array_size(ok); i++)
	{
		JsonbContainer *s = json_array_object(ok, i);
		char	   *id = json_get_string(s, "Id");
		char	   *message_id = json_get_string(s, "MessageId");
		char	   *md5 = json_get_string(s, "MD5OfMessageBody");
		char		expected[33];
		int			index = id ? atoi(id) : -1;

		if (index < first || index >= end || message_id == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("SQS answered SendMessageBatch with an unknown entry \"%s\"",
							id ? id : "(none)")));
		digest_md5_hex(bodies[index], strlen(bodies[index]), expected);
		if (md5 == NULL || pg_strcasecmp(md5, expected) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("SQS did not confirm the body of entry %d", index),
					 errdetail("MessageId %s, MD5OfMessageBody %s, expected %s.",
							   message_id, md5 ? md5 : "(none)", expected)));
		message_ids[index] = message_id;
	}
	for (int i = first; i < end; i++)
		if (message_ids[i] == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("SQS answered SendMessageBatch without entry %d", i)));
	return end;
}

static void
sqs_send_message_batch(const QueuedPayment *payments, int count, char **message_ids)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt = AllocSetContextCreate(caller, "SQS SendMessageBatch",
											  ALLOCSET_DEFAULT_SIZES);
	int			next = 0;
	const char **bodies = palloc(sizeof(char *) * Max(count, 1));

	for (int i = 0; i < count; i++)
	{
		bodies[i] = payments[i].body;
		message_ids[i] = NULL;
	}
	while (next < count)
	{
		int			first = next;

		MemoryContextSwitchTo(cxt);
		next = send_batch_chunk(bodies, first, count, message_ids);
		MemoryContextSwitchTo(caller);
		for (int i = first; i < next; i++)
			message_ids[i] = pstrdup(message_ids[i]);
		MemoryContextReset(cxt);
	}
	MemoryContextDelete(cxt);
}

/*
 * ReceiveMessage: a long poll of payment.wait_time seconds for at most
 * max_messages.  The wait is SQS's, so an empty answer asks for no sleep.
 */
static int
sqs_receive_messages(QueueMessage **messages, int max_messages, double *idle_seconds)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt = AllocSetContextCreate(caller, "SQS ReceiveMessage",
											  ALLOCSET_DEFAULT_SIZES);
	int			want = Max(1, Min(max_messages, SQS_MAX_BATCH));
	StringInfoData req;
	JsonbContainer *answer;
	JsonbContainer *list;
	QueueMessage *out;
	int			n = 0;

	MemoryContextSwitchTo(cxt);
	sqs_start_request(&req);
	appendStringInfo(&req,
					 ",\"MaxNumberOfMessages\":%d,\"WaitTimeSeconds\":%d,"
					 "\"VisibilityTimeout\":%d,"
					 "\"MessageSystemAttributeNames\":[\"ApproximateReceiveCount\"]}",
					 want, payment_wait_time,
					 Min(payment_visibility_timeout, SQS_MAX_VISIBILITY));

	answer = sqs_call("ReceiveMessage", &req, payment_wait_time * 1000);
	list = json_get_container(answer, "Messages");

	out = MemoryContextAllocZero(caller,
								 sizeof(QueueMessage) * Max(1, json_array_size(list)));
	for (int i = 0; i < json_array_size(list); i++)
	{
		JsonbContainer *m = json_array_object(list, i);
		char	   *message_id = json_get_string(m, "MessageId");
		char	   *receipt = json_get_string(m, "ReceiptHandle");
		char	   *body = json_get_string(m, "Body");
		char	   *md5 = json_get_string(m, "MD5OfBody");
		char	   *count = json_get_string(json_get_container(m, "Attributes"),
											"ApproximateReceiveCount");
		int			receive_count = count ? atoi(count) : 1;
		char		expected[33];

		if (message_id == NULL || receipt == NULL || body == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("SQS ReceiveMessage answered with an incomplete message")));

		/*
		 * A body damaged in transit is left to come back after the
		 * visibility timeout, until its receives are used up and the store
		 * dead-letters it as received.
		 */
		digest_md5_hex(body, strlen(body), expected);
		if (md5 != NULL && pg_strcasecmp(md5, expected) != 0 &&
			receive_count <= payment_max_receive_count)
		{
			ereport(WARNING,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("SQS message %s failed its MD5 check; leaving it on the queue",
							message_id)));
			continue;
		}

		out[n].seq = 0;
		out[n].message_id = MemoryContextStrdup(caller, message_id);
		out[n].receipt_handle = MemoryContextStrdup(caller, receipt);
		out[n].body = MemoryContextStrdup(caller, body);
		out[n].receive_count = Max(receive_count, 1);
		out[n].outcome = STORE_PENDING;
		out[n].retry_delay = 0;
		out[n].error = NULL;
		n++;
	}

	MemoryContextSwitchTo(caller);
	MemoryContextDelete(cxt);
	*messages = out;
	if (n == 0)
		*idle_seconds = 0;
	return n;
}

/*
 * One DeleteMessageBatch or ChangeMessageVisibilityBatch for up to 10
 * messages.  Entries SQS refuses are only warned about: such a message
 * comes back after its visibility timeout and the store recognises it.
 */
static void
settle_chunk(const char *operation, QueueMessage **chunk, int n, bool delete)
{
	StringInfoData req;
	JsonbContainer *answer;
	JsonbContainer *failed;
	int			nfailed;

	sqs_start_request(&req);
	appendStringInfoString(&req, ",\"Entries\":[");
	for (int i = 0; i < n; i++)
	{
		appendStringInfo(&req, "%s{\"Id\":\"%d\",\"ReceiptHandle\":",
						 i > 0 ? "," : "", i);
		escape_json(&req, chunk[i]->receipt_handle);
		if (!delete)
			appendStringInfo(&req, ",\"VisibilityTimeout\":%d",
							 Max(0, Min(chunk[i]->retry_delay, SQS_MAX_VISIBILITY)));
		appendStringInfoChar(&req, '}');
	}
	appendStringInfoString(&req, "]}");

	answer = sqs_call(operation, &req, 0);
	failed = json_get_container(answer, "Failed");
	nfailed = json_array_size(failed);
	for (int i = 0; i < nfailed; i++)
	{
		JsonbContainer *f = json_array_object(failed, i);
		char	   *id = json_get_string(f, "Id");
		char	   *code = json_get_string(f, "Code");
		char	   *msg = json_get_string(f, "Message");
		int			index = id ? atoi(id) : -1;

		ereport(WARNING,
				(errcode(sqs_error_sqlstate(code, 400)),
				 errmsg("SQS %s refused message %s", operation,
						index >= 0 && index < n ? chunk[index]->message_id : "?"),
				 errdetail("AWS error %s: %s", code ? code : "(none)",
						   msg ? msg : "(no message)"),
				 errhint("The message becomes visible again after its visibility timeout.")));
	}
}

static void
settle_all(const char *operation, QueueMessage *messages, int count,
		   bool delete, MemoryContext cxt)
{
	QueueMessage *chunk[SQS_MAX_BATCH];
	int			n = 0;

	for (int i = 0; i < count; i++)
	{
		QueueMessage *m = &messages[i];
		bool		wanted;

		if (m->receipt_handle == NULL)
			continue;
		if (delete)
			wanted = m->outcome == STORE_STORED ||
				m->outcome == STORE_DUPLICATE ||
				m->outcome == STORE_DEAD_LETTERED;
		else
			wanted = m->outcome == STORE_RETRY;
		if (!wanted)
			continue;
		chunk[n++] = m;
		if (n == SQS_MAX_BATCH)
		{
			settle_chunk(operation, chunk, n, delete);
			MemoryContextReset(cxt);
			n = 0;
		}
	}
	if (n > 0)
		settle_chunk(operation, chunk, n, delete);
	MemoryContextReset(cxt);
}

/*
 * After the store committed: DeleteMessageBatch for stored, duplicate and
 * dead-lettered messages; ChangeMessageVisibilityBatch for retries.
 */
static void
sqs_settle(QueueMessage *messages, int count)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt = AllocSetContextCreate(caller, "SQS settle",
											  ALLOCSET_DEFAULT_SIZES);

	/* messages left STORE_PENDING simply reappear after the timeout */
	MemoryContextSwitchTo(cxt);
	settle_all("DeleteMessageBatch", messages, count, true, cxt);
	settle_all("ChangeMessageVisibilityBatch", messages, count, false, cxt);
	MemoryContextSwitchTo(caller);
	MemoryContextDelete(cxt);
}

const QueueBackend sqs_queue = {
	.name = "sqs",
	.enqueue = sqs_send_message,
	.enqueue_batch = sqs_send_message_batch,
	.transactional = false,
	.claim = sqs_receive_messages,
	.settle_with_store = NULL,
	.settle_after_commit = sqs_settle,
};
