/*-------------------------------------------------------------------------
 * api.c
 *	  SQL-callable entry points: submit_payment (the reference design's
 *	  PUT /submit), submit_payments, payment_status (the "secondary
 *	  endpoint"), redrive_dead_letters and the counters behind payment.stats.
 *
 *	  Order of work at the front door: authenticate, throttle (each payment
 *	  of a batch is a call), bound the payload's size before it is rendered,
 *	  validate, authorize the payload's user, record its key (a retry is
 *	  answered as the first call was, a reused key refused), then hand the
 *	  payment to the queue backend.  Before all of it, a standby refuses (a
 *	  read-only replica takes no payments); after it, the transaction that
 *	  enqueued into a transactional queue is made to commit durably, as its
 *	  OK says the payment is kept.
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
#include "frontdoor/request_id.h"
#include "payment.h"
#include "queue/queue.h"
#include "schema/json_digest.h"
#include "schema/payload_size.h"
#include "schema/payment_schema.h"

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
		payment_count(&payment_counters_here()->submitted, count);
}

/*
 * Validate one payload for the caller and return it as the queue takes it.
 * Raises 54000 for a payload nested too deep, class 22 for one too large or
 * the schema refuses, and 42501 for another user's.
 */
static QueuedPayment
accept_payload(Jsonb *payload, const PaymentCaller *caller, const char *request_id,
			   const char *submitted_by)
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
	queued.request_id = request_id;
	queued.submitted_by = submitted_by;
	queued.message_id = NULL;
	json_digest(payload, queued.body_digest);
	return queued;
}

/*
 * Record the keys of accepted payments (from 1.2) and enqueue those not
 * accepted before; message_ids[i] gets each payment's message id, the first
 * acceptance's for a replay.  Returns how many were replays.  *current
 * names the payment being recorded, for an error's context.
 */
static int
enqueue_accepted(const QueueBackend *backend, QueuedPayment *payments, int count,
				 KeyAnswer *answers, char **message_ids, int *current)
{
	QueuedPayment *fresh = palloc(sizeof(QueuedPayment) * Max(count, 1));
	char	  **fresh_ids = palloc0(sizeof(char *) * Max(count, 1));
	int		   *position = palloc(sizeof(int) * Max(count, 1));
	int			nfresh = 0;
	int			replayed = 0;
	bool		keys = intake_keys_in_use();

	pg_uuid_t  *ids = NULL;

	/* the key record names the message before the queue has it, where the backend lets it */
	if (keys && !backend->names_messages && count > 0)
	{
		ids = palloc(sizeof(pg_uuid_t) * count);
		payment_random_uuids(ids, count);
	}
	for (int i = 0; i < count; i++)
	{
		memset(&answers[i], 0, sizeof(KeyAnswer));
		answers[i].replay_of = -1;
		answers[i].request_id = (char *) payments[i].request_id;
		answers[i].submitted_by = (char *) payments[i].submitted_by;
		if (ids)
			payments[i].message_id = DatumGetCString(DirectFunctionCall1(uuid_out,
																		 UUIDPGetDatum(&ids[i])));
	}
	if (keys && count > 0)
		intake_keys_claim(payments, count, answers, current);
	*current = -1;
	for (int i = 0; i < count; i++)
	{
		if (answers[i].replayed)
		{
			replayed++;
			continue;
		}
		position[nfresh] = i;
		fresh[nfresh++] = payments[i];
	}
	if (nfresh == 1)
		fresh_ids[0] = backend->enqueue(&fresh[0]);
	else if (nfresh > 1)
		backend->enqueue_batch(fresh, nfresh, fresh_ids);
	if (nfresh > 0)
		commit_durably(backend);
	for (int k = 0; k < nfresh; k++)
		message_ids[position[k]] = fresh_ids[k];
	if (keys && backend->names_messages && nfresh > 0)
		intake_keys_name(fresh, answers, fresh_ids, nfresh);
	for (int i = 0; i < count; i++)
		if (answers[i].replayed)
			message_ids[i] = answers[i].replay_of >= 0 ?
				message_ids[answers[i].replay_of] : answers[i].message_id;
	count_submitted(backend, nfresh);
	return replayed;
}

/* ", \"requestId\": ..., \"submittedBy\": ..." of an answer */
static void
append_call(StringInfo out, const char *request_id, const char *submitted_by)
{
	if (request_id)
	{
		appendStringInfoString(out, ", \"requestId\": ");
		escape_json(out, request_id);
	}
	if (submitted_by)
	{
		appendStringInfoString(out, ", \"submittedBy\": ");
		escape_json(out, submitted_by);
	}
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
	KeyAnswer	answer;
	int			current;
	StringInfoData result;

	refuse_on_standby();
	if (payload != NULL)
		payment_audit_note_payment(payment_try_get_string(payload, "paymentId"));
	payment_authenticate(optional_text(fcinfo, 1), "submit_payment", &caller);
	if (payload == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("payment payload must not be null")));

	queued = accept_payload(payload, &caller, payment_request_id(), payment_caller_name(&caller));
	enqueue_accepted(backend, &queued, 1, &answer, &message_id, &current);

	initStringInfo(&result);
	appendStringInfoString(&result, "{\"message\": \"OK\", \"messageId\": ");
	escape_json(&result, message_id);
	if (answer.replayed)
		appendStringInfoString(&result, ", \"replayed\": true");
	append_call(&result, answer.request_id, answer.submitted_by);
	appendStringInfoChar(&result, '}');
	PG_RETURN_DATUM(jsonb_from_text(result.data));
}

/* errcontext for submit_payments: which element failed */
static void
payload_index_context(void *arg)
{
	if (*(int *) arg >= 0)
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
	KeyAnswer  *answers;
	char	   *request_id;
	char	   *submitted_by;
	int			replayed;

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
	request_id = payment_request_id();
	submitted_by = payment_caller_name(&caller);
	answers = palloc(sizeof(KeyAnswer) * Max(count, 1));
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
		accepted = accept_payload(JsonbValueToJsonb(&elem), &caller, request_id, submitted_by);
		MemoryContextSwitchTo(outer);
		queued[index] = keep_payload(accepted, payload_context);
		index++;
	}
	MemoryContextDelete(payload_context);

	/* the index in the error context is the payment whose key is recorded */
	replayed = enqueue_accepted(backend, queued, count, answers, message_ids, &index);
	error_context_stack = errcallback.previous;

	initStringInfo(&result);
	appendStringInfo(&result, "{\"message\": \"OK\", \"count\": %d, \"replayed\": %d, \"messageIds\": [",
					 count, replayed);
	for (int i = 0; i < count; i++)
	{
		if (i > 0)
			appendStringInfoString(&result, ", ");
		escape_json(&result, message_ids[i]);
	}
	appendStringInfoChar(&result, ']');
	append_call(&result, request_id, submitted_by);
	appendStringInfoChar(&result, '}');
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
	static SPIPlanPtr keyed_plan = NULL;
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

	if (intake_keys_in_use())
	{
		/*
		 * From 1.2 every state is an index lookup: stored, recorded at
		 * intake (queued or in flight), dead-lettered.
		 */
		payment_prepare(&keyed_plan,
						"SELECT status, changed_at, user_id::text, message_id, reason, error,"
						"       request_id, submitted_by"
						"  FROM (SELECT 1 AS rank, 'stored' AS status, stored_at AS changed_at,"
						"               user_id, message_id, NULL::text AS reason, NULL::text AS error,"
						"               request_id, submitted_by"
						"          FROM payment.payments WHERE payment_id = $1"
						"        UNION ALL"
						"        SELECT 2, 'queued', accepted_at, user_id, message_id, NULL, NULL,"
						"               request_id, submitted_by"
						"          FROM payment.idempotency_keys WHERE payment_id = $1"
						"        UNION ALL"
						"        SELECT 3, 'dead_lettered', dead_lettered_at, user_id, message_id,"
						"               reason, error, request_id, submitted_by"
						"          FROM payment.dead_letters WHERE payment_id = $1) s"
						" ORDER BY rank, changed_at DESC",
						1, (Oid[]) {UUIDOID});
		if (SPI_execute_plan(keyed_plan, &payment_id, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "payment status query failed");
		chosen = status_row_for(&caller);
	}
	else
	{
		/*
		 * A stored payment outranks every other state, and is found through
		 * payment.payments' key: only a payment not stored costs a look at
		 * the queue, whose event tables have no index on payment_id.
		 */
		payment_prepare(&stored_plan,
						"SELECT status, changed_at, user_id::text, message_id, reason, error"
						"  FROM (" STORED_STATUS ") s ORDER BY changed_at DESC",
						1, (Oid[]) {UUIDOID});
		if (SPI_execute_plan(stored_plan, &payment_id, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "payment status query failed");
		chosen = status_row_for(&caller);
	}
	if (chosen < 0 && !intake_keys_in_use())
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
		const char *keys[] = {"status", "changedAt", "userId", "messageId", "reason", "error",
		"requestId", "submittedBy"};

		for (int col = 1; col <= Min(lengthof(keys), desc->natts); col++)
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
		payment_count(&payment_counters_here()->redriven, moved);
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
		PaymentCounters *c = payment_counters_here();

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
		values[8] = Int64GetDatum((int64) pg_atomic_read_u64(&payment_shared->counters.scale_events));
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * payment.check_database(): called by the extension script, so that
 * CREATE EXTENSION in a database no worker serves warns, and, with
 * payment.database '*', the launcher serves it.
 */
Datum
payment_check_database(PG_FUNCTION_ARGS)
{
	/* payment.database '*': the launcher starts a pool here once this commits */
	payment_note_extension_created();
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
