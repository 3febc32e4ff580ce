/*-------------------------------------------------------------------------
 * api.c
 *	  SQL-callable entry points: submit_payment (the reference design's
 *	  PUT /submit), submit_payments, payment_status (the "secondary
 *	  endpoint"), redrive_dead_letters and the counters behind payment.stats.
 *
 *	  Order of work at the front door: authenticate, throttle (each payment
 *	  of a batch is a call), bound the payload's size before it is rendered,
 *	  validate, authorize the payload's user, then hand the payment to the
 *	  queue backend.  Before all of it, a standby refuses (a read-only
 *	  replica takes no payments); after it, the transaction that enqueued
 *	  into a transactional queue is made to commit durably, as its OK says
 *	  the payment is kept.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "replication/syncrep.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "frontdoor/auth.h"
#include "payment.h"
#include "schema/payload_size.h"
#include "schema/payment_schema.h"
#include "queue/queue.h"

PG_FUNCTION_INFO_V1(submit_payment);
PG_FUNCTION_INFO_V1(submit_payments);
PG_FUNCTION_INFO_V1(payment_status);
PG_FUNCTION_INFO_V1(redrive_dead_letters);
PG_FUNCTION_INFO_V1(payment_counters);
PG_FUNCTION_INFO_V1(payment_wake_workers_at_commit);
PG_FUNCTION_INFO_V1(payment_check_database);

static char *
optional_text(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/*
 * The entry points that write refuse on a standby at once, before any
 * other work: in recovery nothing can be queued, and the caller is to be
 * told where to go rather than which internal statement failed.
 */
static void
refuse_on_standby(void)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot submit payments on a standby server"),
				 errdetail("The server is in recovery: it is a read-only replica."),
				 errhint("Submit payments to the primary server.")));
}

/*
 * "OK" means the payment is kept.  A transactional queue's message commits
 * with the caller's transaction, so with synchronous_commit = off a crash
 * right after the OK could lose it: for the rest of this transaction the
 * commit is made durable, locally when no synchronous standby is named,
 * and on the synchronous standbys too when some are (as "on" waits).  A
 * level the caller chose at local or above is kept.  (SQS has the message
 * once SendMessage returns: nothing to raise.)
 */
static void
commit_durably(const QueueBackend *backend)
{
	if (!backend->transactional || synchronous_commit != SYNCHRONOUS_COMMIT_OFF)
		return;
	(void) set_config_option("synchronous_commit",
							 SyncRepStandbyNames != NULL && SyncRepStandbyNames[0] != '\0' ?
							 "on" : "local",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
							 true, 0, false);
}

/*
 * Count accepted submissions for payment.stats: a transactional queue's at
 * commit (a rollback submitted nothing), another's at once.
 */
static void
count_submitted(const QueueBackend *backend, int count)
{
	payment_warn_if_unserved();
	if (backend->transactional)
		payment_note_enqueued(count);
	else if (payment_shared != NULL)
		payment_count(&payment_shared->counters.submitted, count);
}

/*
 * Validate one payload for the caller and return it as the queue takes it.
 * Raises 54000 for a payload nested too deep, class 22 for one too large or
 * the schema refuses, and 42501 for another user's.
 */
static QueuedPayment
accept_payload(Jsonb *payload, const PaymentCaller *caller)
{
	QueuedPayment queued;
	PaymentFields fields;
	char	   *body;
	char	   *user_id;

	payment_defence_check(payload);
	/*
	 * Rendering is not bounded by the jsonb's size: bound the text first.
	 * The rendered text's length is checked again below (strlen, cheap):
	 * the store refuses a body over the limit, so the two must never differ.
	 */
	payment_check_payload_size(&payload->root, VARSIZE(payload) - VARHDRSZ);
	body = JsonbToCString(NULL, &payload->root, VARSIZE(payload));
	/* recorded with the message: the store checks it against the same version */
	queued.schema_version = payment_schema_active_version();
	payment_check_payload(payload, strlen(body), queued.schema_version);
	payment_extract_fields(payload, &fields);
	user_id = payment_try_get_string(payload, "userId");
	payment_authorize_user(caller, user_id, payment_try_get_string(payload, "paymentId"));
	queued.body = body;
	queued.payment_id = fields.payment_id;
	queued.user_id = fields.user_id;
	return queued;
}

static Datum
jsonb_from_text(const char *text)
{
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(text));
}

Datum
submit_payment(PG_FUNCTION_ARGS)
{
	Jsonb	   *payload = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);
	PaymentCaller caller;
	const QueueBackend *backend = queue_backend();
	QueuedPayment queued;
	char	   *message_id;
	StringInfoData result;

	refuse_on_standby();
	if (payload != NULL)
		payment_audit_note_payment(payment_try_get_string(payload, "paymentId"));
	payment_authenticate(optional_text(fcinfo, 1), "submit_payment", &caller);
	if (payload == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("payment payload must not be null")));

	queued = accept_payload(payload, &caller);
	message_id = backend->enqueue(&queued);
	commit_durably(backend);
	count_submitted(backend, 1);

	initStringInfo(&result);
	appendStringInfoString(&result, "{\"message\": \"OK\", \"messageId\": ");
	escape_json(&result, message_id);
	appendStringInfoChar(&result, '}');
	PG_RETURN_DATUM(jsonb_from_text(result.data));
}

/* errcontext for submit_payments: which element failed */
static void
payload_index_context(void *arg)
{
	errcontext("payment at index %d of the array", *(int *) arg);
}

/*
 * Copy what the queue needs of an accepted payload into the current
 * context, then empty scratch, where it was validated: a large array would
 * otherwise hold every payload's validation garbage until the statement ends.
 */
static QueuedPayment
keep_payload(QueuedPayment accepted, MemoryContext scratch)
{
	QueuedPayment kept = accepted;

	kept.body = pstrdup(accepted.body);
	if (accepted.payment_id != (Datum) 0)
		kept.payment_id = datumCopy(accepted.payment_id, false, UUID_LEN);
	if (accepted.user_id != (Datum) 0)
		kept.user_id = datumCopy(accepted.user_id, false, UUID_LEN);
	MemoryContextReset(scratch);
	return kept;
}

Datum
submit_payments(PG_FUNCTION_ARGS)
{
	PaymentCaller caller;
	Jsonb	   *payloads;
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;
	ErrorContextCallback errcallback;
	int			index = 0;
	int			count;
	const QueueBackend *backend = queue_backend();
	QueuedPayment *queued;
	char	  **message_ids;
	StringInfoData result;
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext payload_context;
	QueuedPayment accepted;

	refuse_on_standby();
	payment_identify(optional_text(fcinfo, 1), "submit_payments", &caller);
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("payments must not be null")));
	payloads = PG_GETARG_JSONB_P(0);
	if (!JB_ROOT_IS_ARRAY(payloads) || JB_ROOT_IS_SCALAR(payloads))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payments must be a JSON array of payment objects")));

	count = JB_ROOT_COUNT(payloads);
	if (count > payment_max_batch_payments)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many payments in one batch"),
				 errdetail("The batch holds %d payments; the limit is %d.",
						   count, payment_max_batch_payments),
				 errhint("Submit the payments in batches of at most %d.",
						 payment_max_batch_payments)));
	/* each payment is a call for the rate limits and quotas: all or none */
	payment_throttle(&caller, count);
	queued = palloc(sizeof(QueuedPayment) * Max(count, 1));
	payload_context = AllocSetContextCreate(outer, "submit_payments payload",
											ALLOCSET_DEFAULT_SIZES);
	message_ids = palloc0(sizeof(char *) * Max(count, 1));

	/* validate every element before enqueueing any: all or nothing */
	errcallback.callback = payload_index_context;
	errcallback.arg = &index;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	it = JsonbIteratorInit(&payloads->root);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		MemoryContextSwitchTo(payload_context);
		accepted = accept_payload(JsonbValueToJsonb(&elem), &caller);
		MemoryContextSwitchTo(outer);
		queued[index] = keep_payload(accepted, payload_context);
		index++;
	}
	error_context_stack = errcallback.previous;
	MemoryContextDelete(payload_context);

	if (count > 0)
	{
		backend->enqueue_batch(queued, count, message_ids);
		commit_durably(backend);
	}
	count_submitted(backend, count);

	initStringInfo(&result);
	appendStringInfo(&result, "{\"message\": \"OK\", \"count\": %d, \"messageIds\": [", count);
	for (int i = 0; i < count; i++)
	{
		if (i > 0)
			appendStringInfoString(&result, ", ");
		escape_json(&result, message_ids[i]);
	}
	appendStringInfoString(&result, "]}");
	PG_RETURN_DATUM(jsonb_from_text(result.data));
}

/* The first row a caller bound to a user may see (that user's), or -1. */
static int
status_row_for(const PaymentCaller *caller)
{
	for (int i = 0; i < (int) SPI_processed; i++)
	{
		char	   *user_id = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);

		if (caller->user_id == NULL ||
			(user_id != NULL && pg_strcasecmp(user_id, caller->user_id) == 0))
			return i;
	}
	return -1;
}

#define STORED_STATUS \
	"SELECT 1 AS rank, 'stored' AS status, stored_at AS changed_at," \
	"       user_id, message_id, NULL::text AS reason, NULL::text AS error" \
	"  FROM payment.payments WHERE payment_id = $1"

Datum
payment_status(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr stored_plan = NULL;
	static SPIPlanPtr status_plans[2] = {NULL, NULL};
	bool		versioned;
	PaymentCaller caller;
	Datum		payment_id;
	char	   *payment_id_text;
	int			chosen;
	StringInfoData result;

	if (!PG_ARGISNULL(0))
		payment_audit_note_payment(DatumGetCString(DirectFunctionCall1(uuid_out, PG_GETARG_DATUM(0))));
	payment_authenticate(optional_text(fcinfo, 1), "payment_status", &caller);
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("payment_id must not be null")));
	payment_id = PG_GETARG_DATUM(0);
	payment_id_text = DatumGetCString(DirectFunctionCall1(uuid_out, payment_id));

	SPI_connect();

	/*
	 * A stored payment outranks every other state, and is found through
	 * payment.payments' key: only a payment not stored costs a look at the
	 * queue, whose event tables have no index on payment_id.
	 */
	payment_prepare(&stored_plan,
					"SELECT status, changed_at, user_id::text, message_id, reason, error"
					"  FROM (" STORED_STATUS ") s ORDER BY changed_at DESC",
					1, (Oid[]) {UUIDOID});
	if (SPI_execute_plan(stored_plan, &payment_id, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "payment status query failed");
	chosen = status_row_for(&caller);
	if (chosen < 0)
	{
		/* from 1.1, payment.queue is a view: ask its function for this payment only */
		versioned = queue_layout()->schema_versions;
		if (status_plans[versioned] == NULL)
			payment_prepare(&status_plans[versioned],
							psprintf("SELECT status, changed_at, user_id::text, message_id, reason, error"
									 "  FROM (" STORED_STATUS
									 "        UNION ALL"
									 "        SELECT 2, 'queued', enqueued_at, user_id, message_id::text, NULL, NULL"
									 "          FROM %s"
									 "        UNION ALL"
									 "        SELECT 3, 'dead_lettered', dead_lettered_at, user_id, message_id,"
									 "               reason, error"
									 "          FROM payment.dead_letters WHERE payment_id = $1) s"
									 " ORDER BY rank, changed_at DESC",
									 versioned ? "payment.queue_messages($1)" :
									 "payment.queue WHERE payment_id = $1"),
							1, (Oid[]) {UUIDOID});
		if (SPI_execute_plan(status_plans[versioned], &payment_id, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "payment status query failed");
		chosen = status_row_for(&caller);
	}
	if (chosen < 0 && SPI_processed > 0)
		payment_authorize_user(&caller,
							   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3),
							   payment_id_text);

	initStringInfo(&result);
	appendStringInfoString(&result, "{\"paymentId\": ");
	escape_json(&result, payment_id_text);
	if (chosen < 0)
		appendStringInfoString(&result, ", \"status\": \"unknown\"");
	else
	{
		HeapTuple	row = SPI_tuptable->vals[chosen];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		const char *keys[] = {"status", "changedAt", "userId", "messageId", "reason", "error"};

		for (int col = 1; col <= lengthof(keys); col++)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(row, desc, col, &isnull);

			if (isnull)
				continue;
			appendStringInfo(&result, ", \"%s\": ", keys[col - 1]);
			if (col == 2)
			{
				char		buf[MAXDATELEN + 1];

				escape_json(&result, JsonEncodeDateTime(buf, d, TIMESTAMPTZOID, NULL));
			}
			else
				escape_json(&result, SPI_getvalue(row, desc, col));
		}
	}
	appendStringInfoChar(&result, '}');
	SPI_finish();
	PG_RETURN_DATUM(jsonb_from_text(result.data));
}

/*
 * Put dead letters back on the queue: those with the given ids and/or
 * reason, all of them when both are NULL.  Returns how many were moved.
 */
Datum
redrive_dead_letters(PG_FUNCTION_ARGS)
{
	uint64		moved;

	moved = queue_redrive(PG_GETARG_DATUM(0), PG_ARGISNULL(0),
						  PG_GETARG_DATUM(1), PG_ARGISNULL(1));
	if (payment_shared)
		payment_count(&payment_shared->counters.redriven, moved);
	PG_RETURN_INT64((int64) moved);
}

Datum
payment_counters(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[9];
	bool		nulls[9];

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	/* 1.0 declares the first 7 columns; 1.1 adds workers_busy, scale_events */
	if (tupdesc->natts != 7 && tupdesc->natts != 9)
		elog(ERROR, "payment.counters() declares %d columns, expected 7 or 9",
			 tupdesc->natts);

	memset(nulls, payment_shared == NULL, sizeof(nulls));
	if (payment_shared != NULL)
	{
		PaymentCounters *c = &payment_shared->counters;

		values[0] = Int64GetDatum((int64) pg_atomic_read_u64(&c->submitted));
		values[1] = Int64GetDatum((int64) pg_atomic_read_u64(&c->stored));
		values[2] = Int64GetDatum((int64) pg_atomic_read_u64(&c->duplicates));
		values[3] = Int64GetDatum((int64) pg_atomic_read_u64(&c->conflicts));
		values[4] = Int64GetDatum((int64) pg_atomic_read_u64(&c->dead_lettered));
		values[5] = Int64GetDatum((int64) pg_atomic_read_u64(&c->retried));
		values[6] = Int64GetDatum((int64) pg_atomic_read_u64(&c->redriven));
		/* the workers of another database are not this one's */
		values[7] = Int64GetDatum(payment_serves_this_database() ?
								  payment_workers_busy() : 0);
		values[8] = Int64GetDatum((int64) pg_atomic_read_u64(&c->scale_events));
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * payment.check_database(): called by the extension script, so that
 * CREATE EXTENSION in a database no worker serves warns.
 */
Datum
payment_check_database(PG_FUNCTION_ARGS)
{
	payment_warn_if_unserved();
	PG_RETURN_BOOL(payment_preloaded && payment_serves_this_database());
}

/* Statement trigger on payment.queue: wake the workers when the inserting transaction commits. */
Datum
payment_wake_workers_at_commit(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("payment.wake_workers_at_commit() must be called as a trigger")));
	payment_note_enqueued(0);
	return PointerGetDatum(NULL);
}
