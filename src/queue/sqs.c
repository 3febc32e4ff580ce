/*-------------------------------------------------------------------------
 * sqs.c
 *	  The Amazon SQS queue backend, used when payment.queue_url is set.
 *
 * Owns: the payment.wait_time setting and the operations (SendMessage,
 * SendMessageBatch, ReceiveMessage, DeleteMessageBatch,
 * ChangeMessageVisibilityBatch, GetQueueAttributes) built on one signed request of
 * sqs_client.c, behind the QueueBackend interface.  A worker keeps requests
 * in flight while it stores: the next ReceiveMessage (one batch ahead) and
 * the DeleteMessageBatch of batches already committed.  Every operation
 * raises an ERROR when it fails; the workers catch it and back off, and the
 * entry points let it reach the client.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "common/digest.h"
#include "common/json_util.h"
#include "payment.h"
#include "queue/intake_keys.h"
#include "queue/sqs.h"
#include "queue/sqs_client.h"
#include "queue/standby_flush.h"

/* the message attribute naming the schema version a payment was accepted under */
#define SCHEMA_VERSION_ATTRIBUTE "PaymentSchemaVersion"
/* who sent the payment, under which request id: for a store without its key record */
#define REQUEST_ID_ATTRIBUTE "PaymentRequestId"
#define SUBMITTED_BY_ATTRIBUTE "PaymentSubmittedBy"

/* AWS's limits per batch request (SQS_MAX_BATCH entries: sqs.h) */
#define SQS_MAX_BATCH_BYTES (256 * 1024)
#define SQS_MAX_VISIBILITY (12 * 60 * 60)

int			payment_wait_time = 20;

/*
 * What SQS knows a received message by (QueueMessage.handle): its receipt
 * handle, which only the queue that gave it accepts.
 */
typedef struct SqsHandle
{
	char	   *receipt_handle;
	const char *queue_url;
} SqsHandle;

#define SQS_HANDLE(m) ((SqsHandle *) (m)->handle)

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

static void
append_string_attribute(StringInfo body, bool *first, const char *name, const char *value)
{
	appendStringInfo(body, "%s\"%s\":{\"DataType\":\"String\",\"StringValue\":",
					 *first ? "" : ",", name);
	escape_json(body, value);
	appendStringInfoChar(body, '}');
	*first = false;
}

/*
 * ,"MessageAttributes":{...}: the message's schema version and its call's
 * request id and caller, where known.  A FIFO queue (its name ends in
 * .fifo) also gets the payment's group (its user: one user's payments in
 * order) and deduplication id: a hash of the key and of the attempt (how
 * many times the key was dead-lettered), so that SQS drops a send repeated
 * within its five minutes, but not a fresh attempt after a dead letter.
 */
static void
append_message_attributes(SqsRequest *req, const QueuedPayment *payment)
{
	bool		first = true;
	size_t		url_len = strlen(req->queue_url);
	StringInfoData attributes;

	initStringInfo(&attributes);
	if (payment->schema_version >= 0)
	{
		appendStringInfo(&attributes,
						 "\"" SCHEMA_VERSION_ATTRIBUTE "\":"
						 "{\"DataType\":\"Number\",\"StringValue\":\"%d\"}",
						 payment->schema_version);
		first = false;
	}
	if (payment->request_id)
		append_string_attribute(&attributes, &first, REQUEST_ID_ATTRIBUTE, payment->request_id);
	if (payment->submitted_by)
		append_string_attribute(&attributes, &first, SUBMITTED_BY_ATTRIBUTE, payment->submitted_by);
	if (!first)
		appendStringInfo(&req->body, ",\"MessageAttributes\":{%s}", attributes.data);
	pfree(attributes.data);
	if (url_len > 5 && strcmp(req->queue_url + url_len - 5, ".fifo") == 0 &&
		payment->payment_id != (Datum) 0 && payment->user_id != (Datum) 0)
	{
		char	   *user = DatumGetCString(DirectFunctionCall1(uuid_out, payment->user_id));
		char	   *key = psprintf("%s/%s/%d",
								   DatumGetCString(DirectFunctionCall1(uuid_out, payment->payment_id)),
								   user, intake_keys_attempt(payment));
		char		dedup[65];

		digest_sha256_hex(key, strlen(key), dedup);
		appendStringInfoString(&req->body, ",\"MessageGroupId\":");
		escape_json(&req->body, user);
		appendStringInfo(&req->body, ",\"MessageDeduplicationId\":\"%s\"", dedup);
	}
}

/* the attribute's value, or -1 when absent or not a version number */
static int
parse_schema_version(const char *text)
{
	char	   *end;
	long		v;

	if (text == NULL)
		return -1;
	errno = 0;
	v = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || v < 0 || v > PG_INT32_MAX)
		return -1;
	return (int) v;
}

static char *
sqs_send_message(const QueuedPayment *payment)
{
	const char *body = payment->body;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt = AllocSetContextCreate(caller, "SQS SendMessage",
											  ALLOCSET_DEFAULT_SIZES);
	SqsRequest	req;
	JsonbContainer *answer;
	char	   *message_id;
	char	   *md5;
	char		expected[33];
	char	   *result;

	MemoryContextSwitchTo(cxt);
	sqs_start_request(&req, payment_queue_url);
	appendStringInfoString(&req.body, ",\"MessageBody\":");
	escape_json(&req.body, body);
	append_message_attributes(&req, payment);
	appendStringInfoChar(&req.body, '}');

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
 * Send payments[first..] until 10 entries or the batch size limit; returns
 * the index after the last one sent.
 */
static int
send_batch_chunk(const QueuedPayment *payments, int first, int count, char **message_ids)
{
	SqsRequest	req;
	JsonbContainer *answer;
	JsonbContainer *ok;
	JsonbContainer *failed;
	size_t		bytes = 0;
	int			end = first;
	int			nfailed;

	sqs_start_request(&req, payment_queue_url);
	appendStringInfoString(&req.body, ",\"Entries\":[");
	while (end < count && end - first < SQS_MAX_BATCH)
	{
		size_t		len = strlen(payments[end].body);

		/* a lone oversized body still goes, for SQS to name the problem */
		if (end > first && bytes + len > SQS_MAX_BATCH_BYTES)
			break;
		bytes += len;
		appendStringInfo(&req.body, "%s{\"Id\":\"%d\",\"MessageBody\":",
						 end > first ? "," : "", end);
		escape_json(&req.body, payments[end].body);
		append_message_attributes(&req, &payments[end]);
		appendStringInfoChar(&req.body, '}');
		end++;
	}
	appendStringInfoString(&req.body, "]}");

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
		digest_md5_hex(payments[index].body, strlen(payments[index].body), expected);
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

	for (int i = 0; i < count; i++)
		message_ids[i] = NULL;
	while (next < count)
	{
		int			first = next;

		MemoryContextSwitchTo(cxt);
		next = send_batch_chunk(payments, first, count, message_ids);
		MemoryContextSwitchTo(caller);
		for (int i = first; i < next; i++)
			message_ids[i] = pstrdup(message_ids[i]);
		MemoryContextReset(cxt);
	}
	MemoryContextDelete(cxt);
}

/* ------------------------------------------------------------------ */
/* receiving, with the next batch asked for in advance */

/*
 * While a backlog lasts, a worker asks for the next batch as soon as it has
 * one, so the round trip of that ReceiveMessage overlaps the store of the
 * current batch.  Those messages are received (SQS counts the receive and
 * starts their visibility timeout), so at most one batch is asked for in
 * advance, and only after a receive that found messages: an idle worker
 * holds none.  A prefetched batch that a worker cannot use in time (its
 * queue was replaced, or the worker spent half the visibility timeout
 * elsewhere, e.g. backing off) is released; one held by a worker that is
 * stopped (SIGTERM, kill -9) comes back after its visibility timeout, as a
 * batch being stored would, and its receive is counted.
 */
static SqsCall *prefetch = NULL;
static char *prefetch_url = NULL;
static int	prefetch_want = 0;
static TimestampTz prefetch_started = 0;

static SqsCall *
start_receive(const char *queue_url, int want)
{
	SqsRequest	req;

	sqs_start_request(&req, queue_url);
	appendStringInfo(&req.body,
					 ",\"MaxNumberOfMessages\":%d,\"WaitTimeSeconds\":%d,"
					 "\"VisibilityTimeout\":%d,"
					 "\"MessageSystemAttributeNames\":[\"ApproximateReceiveCount\",\"SentTimestamp\"],"
					 "\"MessageAttributeNames\":[\"" SCHEMA_VERSION_ATTRIBUTE "\",\""
					 REQUEST_ID_ATTRIBUTE "\",\"" SUBMITTED_BY_ATTRIBUTE "\"]}",
					 want, payment_wait_time,
					 Min(payment_visibility_timeout, SQS_MAX_VISIBILITY));
	return sqs_call_start("ReceiveMessage", &req, payment_wait_time * 1000);
}

/* a received message's string attribute, in cxt; NULL when absent */
static char *
string_attribute(JsonbContainer *m, const char *name, MemoryContext cxt)
{
	char	   *value = json_get_string(json_get_container(json_get_container(m, "MessageAttributes"),
														   name),
										"StringValue");

	return value ? MemoryContextStrdup(cxt, value) : NULL;
}

/* SQS's SentTimestamp (ms since the Unix epoch) as a TimestampTz; 0: none */
static TimestampTz
sent_timestamp(const char *sent)
{
	char	   *end;
	int64		ms;

	if (sent == NULL)
		return 0;
	errno = 0;
	ms = strtoi64(sent, &end, 10);
	if (errno != 0 || *end != '\0' || end == sent || ms <= 0)
		return 0;
	return (TimestampTz) (ms * 1000 -
						  (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY);
}

/*
 * The messages of queue_url's ReceiveMessage answer, in out_cxt; returns how
 * many.  *listed is how many the answer held, damaged ones included.
 */
static int
parse_received(JsonbContainer *answer, const char *queue_url, MemoryContext out_cxt,
			   QueueMessage **messages, int *listed)
{
	JsonbContainer *list = json_get_container(answer, "Messages");
	QueueMessage *out;
	SqsHandle  *handles;
	int			n = 0;

	*listed = json_array_size(list);
	out = MemoryContextAllocZero(out_cxt, sizeof(QueueMessage) * Max(1, *listed));
	handles = MemoryContextAllocZero(out_cxt, sizeof(SqsHandle) * Max(1, *listed));
	if (*listed > 0)
		queue_url = MemoryContextStrdup(out_cxt, queue_url);
	for (int i = 0; i < *listed; i++)
	{
		JsonbContainer *m = json_array_object(list, i);
		char	   *message_id = json_get_string(m, "MessageId");
		char	   *receipt = json_get_string(m, "ReceiptHandle");
		char	   *body = json_get_string(m, "Body");
		char	   *md5 = json_get_string(m, "MD5OfBody");
		char	   *count = json_get_string(json_get_container(m, "Attributes"),
											"ApproximateReceiveCount");
		int			receive_count = count ? atoi(count) : 1;
		/* milliseconds since the Unix epoch: the submit, for the latency */
		char	   *sent = json_get_string(json_get_container(m, "Attributes"),
										   "SentTimestamp");
		char	   *version = json_get_string(json_get_container(json_get_container(m, "MessageAttributes"),
															 SCHEMA_VERSION_ATTRIBUTE),
											  "StringValue");
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

		handles[n].receipt_handle = MemoryContextStrdup(out_cxt, receipt);
		handles[n].queue_url = queue_url;
		out[n].handle = &handles[n];
		out[n].message_id = MemoryContextStrdup(out_cxt, message_id);
		out[n].body = MemoryContextStrdup(out_cxt, body);
		out[n].receive_count = Max(receive_count, 1);
		out[n].outcome = STORE_PENDING;
		out[n].retry_delay = 0;
		out[n].error = NULL;
		/* another producer's message, or a garbled number: the active schema */
		out[n].schema_version = parse_schema_version(version);
		out[n].request_id = string_attribute(m, REQUEST_ID_ATTRIBUTE, out_cxt);
		out[n].submitted_by = string_attribute(m, SUBMITTED_BY_ATTRIBUTE, out_cxt);
		out[n].enqueued_at = sent_timestamp(sent);
		n++;
	}
	*messages = out;
	return n;
}

static void settle_all(QueueMessage *messages, int count, bool delete, MemoryContext cxt);

/*
 * Give up the batch asked for in advance: made visible again at once if it
 * has arrived, else the request is abandoned (whatever SQS had sent then
 * comes back after the visibility timeout).  Call in a context that may be
 * reset.
 */
static void
drop_prefetch(void)
{
	SqsCall    *call = prefetch;
	char	   *url = prefetch_url;

	prefetch = NULL;
	prefetch_url = NULL;
	if (call == NULL)
		return;
	if (!sqs_call_done(call))
		sqs_call_cancel(call);
	else
	{
		QueueMessage *messages;
		int			listed;
		int			n = parse_received(sqs_call_finish(call), url, CurrentMemoryContext,
									   &messages, &listed);

		for (int i = 0; i < n; i++)
		{
			messages[i].outcome = STORE_RETRY;
			messages[i].retry_delay = 0;
		}
		settle_all(messages, n, false, CurrentMemoryContext);
	}
	pfree(url);
}

static void reap_deletes(bool all);

/*
 * ReceiveMessage from queue_url: a long poll of payment.wait_time seconds
 * for at most max_messages, answered by the batch asked for in advance when
 * there is one.  The wait is SQS's, so an empty answer asks for no sleep.
 */
int
sqs_receive(const char *queue_url, QueueMessage **messages, int max_messages,
			double *idle_seconds)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt = AllocSetContextCreate(caller, "SQS ReceiveMessage",
											  ALLOCSET_DEFAULT_SIZES);
	int			want = Max(1, Min(max_messages, SQS_MAX_BATCH));
	char	   *url;
	SqsCall    *call = NULL;
	int			listed;
	int			n;

	MemoryContextSwitchTo(cxt);
	url = pstrdup(queue_url);
	reap_deletes(false);
	if (prefetch != NULL)
	{
		bool		usable = strcmp(prefetch_url, url) == 0 && prefetch_want == want &&
			!TimestampDifferenceExceeds(prefetch_started, GetCurrentTimestamp(),
										payment_visibility_timeout * 1000 / 2);

		if (usable)
		{
			call = prefetch;
			prefetch = NULL;
			pfree(prefetch_url);
			prefetch_url = NULL;
		}
		else
			drop_prefetch();
	}
	if (call == NULL)
		call = start_receive(url, want);
	n = parse_received(sqs_call_finish(call), url, caller, messages, &listed);

	/* a backlog: ask for the next batch now, to arrive while this one is stored */
	if (listed > 0)
	{
		prefetch = start_receive(url, want);
		prefetch_url = MemoryContextStrdup(TopMemoryContext, url);
		prefetch_want = want;
		prefetch_started = GetCurrentTimestamp();
	}

	MemoryContextSwitchTo(caller);
	MemoryContextDelete(cxt);
	if (n == 0)
		*idle_seconds = 0;
	return n;
}

/* the backend's claim: from the queue payment.queue_url names */
static int
sqs_receive_messages(QueueMessage **messages, int max_messages, double *idle_seconds)
{
	return sqs_receive(payment_queue_url, messages, max_messages, idle_seconds);
}

/* ------------------------------------------------------------------ */
/* settling */

/* the request settling up to 10 messages, all of one queue */
static void
build_settle_request(SqsRequest *req, QueueMessage **chunk, int n, bool delete)
{
	sqs_start_request(req, SQS_HANDLE(chunk[0])->queue_url);
	appendStringInfoString(&req->body, ",\"Entries\":[");
	for (int i = 0; i < n; i++)
	{
		appendStringInfo(&req->body, "%s{\"Id\":\"%d\",\"ReceiptHandle\":",
						 i > 0 ? "," : "", i);
		escape_json(&req->body, SQS_HANDLE(chunk[i])->receipt_handle);
		if (!delete)
			appendStringInfo(&req->body, ",\"VisibilityTimeout\":%d",
							 Max(0, Min(chunk[i]->retry_delay, SQS_MAX_VISIBILITY)));
		appendStringInfoChar(&req->body, '}');
	}
	appendStringInfoString(&req->body, "]}");
}

/*
 * Entries SQS refused are only warned about: such a message comes back
 * after its visibility timeout and the store recognises it.
 */
static void
warn_refused(const char *operation, JsonbContainer *answer,
			 char **message_ids, int n)
{
	JsonbContainer *failed = json_get_container(answer, "Failed");
	int			nfailed = json_array_size(failed);

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
						index >= 0 && index < n ? message_ids[index] : "?"),
				 errdetail("AWS error %s: %s", code ? code : "(none)",
						   msg ? msg : "(no message)"),
				 errhint("The message becomes visible again after its visibility timeout.")));
	}
}

/*
 * DeleteMessageBatch requests sent after a commit and not yet answered.
 * They are answered while the worker waits for its next batch (any wait on
 * the HTTP client moves every transfer on), so a delete's round trip does
 * not hold up the next store; a delete that fails only means its messages
 * are delivered again, and the store counts them as duplicates.
 */
#define SQS_MAX_PENDING_DELETES 8

typedef struct PendingDelete
{
	SqsCall    *call;
	MemoryContext cxt;			/* holds message_ids */
	char	  **message_ids;	/* by entry, for warnings */
	int			n;
} PendingDelete;

static PendingDelete pending_deletes[SQS_MAX_PENDING_DELETES];
static int	npending_deletes = 0;

/* Wait for pending delete i and take it off the list. */
static void
reap_delete(int i)
{
	PendingDelete p = pending_deletes[i];
	MemoryContext caller = CurrentMemoryContext;

	memmove(&pending_deletes[i], &pending_deletes[i + 1],
			sizeof(PendingDelete) * (npending_deletes - i - 1));
	npending_deletes--;

	MemoryContextSwitchTo(p.cxt);
	PG_TRY();
	{
		warn_refused("DeleteMessageBatch", sqs_call_finish(p.call),
					 p.message_ids, p.n);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		/* a cancel is not the delete's failure */
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
		{
			MemoryContextDelete(p.cxt);
			PG_RE_THROW();
		}
		FlushErrorState();
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("SQS DeleteMessageBatch of %d stored messages failed", p.n),
				 errdetail_internal("%s", edata->message),
				 errhint("They are delivered again after their visibility timeout and stored as duplicates.")));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	MemoryContextDelete(p.cxt);
}

/* Collect the answered deletes, or all of them (waiting) when all is set. */
static void
reap_deletes(bool all)
{
	int			i = 0;

	while (i < npending_deletes)
	{
		if (all || sqs_call_done(pending_deletes[i].call))
			reap_delete(i);
		else
			i++;
	}
}

/* Send the DeleteMessageBatch for up to 10 committed messages; do not wait. */
static void
start_delete(QueueMessage **chunk, int n)
{
	MemoryContext cxt;
	MemoryContext caller = CurrentMemoryContext;
	SqsRequest	req;
	PendingDelete *p;

	/* bounded: past that, wait for the oldest */
	if (npending_deletes == SQS_MAX_PENDING_DELETES)
		reap_delete(0);

	cxt = AllocSetContextCreate(TopMemoryContext, "SQS pending delete",
								ALLOCSET_SMALL_SIZES);
	p = &pending_deletes[npending_deletes];
	p->cxt = cxt;
	p->n = n;
	p->message_ids = MemoryContextAlloc(cxt, sizeof(char *) * n);
	for (int i = 0; i < n; i++)
		p->message_ids[i] = MemoryContextStrdup(cxt, chunk[i]->message_id);
	PG_TRY();
	{
		build_settle_request(&req, chunk, n, true);
		p->call = sqs_call_start("DeleteMessageBatch", &req, 0);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	npending_deletes++;
}

/* One ChangeMessageVisibilityBatch for up to 10 messages, waited for. */
static void
change_visibility(QueueMessage **chunk, int n)
{
	SqsRequest	req;
	char	   *ids[SQS_MAX_BATCH];

	for (int i = 0; i < n; i++)
		ids[i] = chunk[i]->message_id;
	build_settle_request(&req, chunk, n, false);
	warn_refused("ChangeMessageVisibilityBatch",
				 sqs_call("ChangeMessageVisibilityBatch", &req, 0), ids, n);
}

static void
settle_chunk(QueueMessage **chunk, int n, bool delete, MemoryContext cxt)
{
	if (delete)
		start_delete(chunk, n);
	else
		change_visibility(chunk, n);
	MemoryContextReset(cxt);
}

/*
 * The messages to delete (or to delay), up to 10 a request; a request goes
 * to the queue that gave its messages, as the receipt handles are its.
 */
static void
settle_all(QueueMessage *messages, int count, bool delete, MemoryContext cxt)
{
	QueueMessage *chunk[SQS_MAX_BATCH];
	int			n = 0;

	for (int i = 0; i < count; i++)
	{
		QueueMessage *m = &messages[i];
		bool		wanted;

		if (m->handle == NULL)
			continue;
		if (delete)
			wanted = m->outcome == STORE_STORED ||
				m->outcome == STORE_DUPLICATE ||
				m->outcome == STORE_DEAD_LETTERED;
		else
			wanted = m->outcome == STORE_RETRY;
		if (!wanted)
			continue;
		if (n > 0 && strcmp(SQS_HANDLE(chunk[0])->queue_url, SQS_HANDLE(m)->queue_url) != 0)
		{
			settle_chunk(chunk, n, delete, cxt);
			n = 0;
		}
		chunk[n++] = m;
		if (n == SQS_MAX_BATCH)
		{
			settle_chunk(chunk, n, delete, cxt);
			n = 0;
		}
	}
	if (n > 0)
		settle_chunk(chunk, n, delete, cxt);
	MemoryContextReset(cxt);
}

/*
 * After the store committed: DeleteMessageBatch for stored, duplicate and
 * dead-lettered messages, sent now and answered later (see
 * pending_deletes), once the streaming standbys have flushed the commit
 * (standby_flush.c), so that a failover to any of them loses no payment;
 * if they do not within payment.standby_flush_timeout, the messages stay
 * and come back.  ChangeMessageVisibilityBatch for retries.
 */
void
sqs_settle(QueueMessage *messages, int count)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt = AllocSetContextCreate(caller, "SQS settle",
											  ALLOCSET_DEFAULT_SIZES);

	/* messages left STORE_PENDING simply reappear after the timeout */
	MemoryContextSwitchTo(cxt);
	reap_deletes(false);
	if (standby_flush_wait(standby_flush_target(),
						   "The stored messages are not deleted from SQS: they are delivered again after their visibility timeout and stored as duplicates."))
		settle_all(messages, count, true, cxt);
	settle_all(messages, count, false, cxt);
	MemoryContextSwitchTo(caller);
	MemoryContextDelete(cxt);
}

/*
 * GetQueueAttributes ApproximateNumberOfMessages: the visible messages.  A
 * receive may answer fewer than 10 messages while many wait (SQS samples
 * its servers), so the pool asks this too.
 */
static int64
sqs_depth(void)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt = AllocSetContextCreate(caller, "SQS GetQueueAttributes",
											  ALLOCSET_DEFAULT_SIZES);
	SqsRequest	req;
	JsonbContainer *answer;
	char	   *visible;
	int64		depth;

	MemoryContextSwitchTo(cxt);
	sqs_start_request(&req, payment_queue_url);
	appendStringInfoString(&req.body, ",\"AttributeNames\":[\"ApproximateNumberOfMessages\"]}");
	answer = sqs_call("GetQueueAttributes", &req, 0);
	visible = json_get_string(json_get_container(answer, "Attributes"),
							  "ApproximateNumberOfMessages");
	if (visible == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("SQS GetQueueAttributes answered without ApproximateNumberOfMessages")));
	depth = strtoi64(visible, NULL, 10);
	MemoryContextSwitchTo(caller);
	MemoryContextDelete(cxt);
	return depth;
}

/* A worker leaves: the batch asked for in advance goes back, the deletes are answered. */
static void
sqs_give_back(void)
{
	reap_deletes(true);
	drop_prefetch();
}

const QueueBackend sqs_queue = {
	.name = "sqs",
	.enqueue = sqs_send_message,
	.enqueue_batch = sqs_send_message_batch,
	.transactional = false,
	.names_messages = true,
	.claim = sqs_receive_messages,
	.max_claim = SQS_MAX_BATCH,
	.depth = sqs_depth,
	.settle_with_store = NULL,
	.settle_after_commit = sqs_settle,
	.durable_store = true,
	.give_back = sqs_give_back,
};
