/*-------------------------------------------------------------------------
 * embedded.c
 *	  The default queue backend, inside the database.
 *
 *	  From extension 1.1 on, messages are appended to insert-only event
 *	  tables and claimed in batches (event_log.c); only a message to retry
 *	  later gets a row of its own, in payment.queue_retry, claimed row by row
 *	  as 1.0 claimed every message (a database still at 1.0 keeps that one
 *	  table, payment.queue, for everything).  Both kinds of messages follow
 *	  the same rules: enqueue runs in the caller's transaction, so a rollback
 *	  enqueues nothing; a claim is its own short transaction, as an SQS
 *	  receive is: it counts the receive and hides the messages for
 *	  payment.visibility_timeout, so a batch whose worker dies reappears
 *	  later with its receive count kept; settling runs in the store's
 *	  transaction, so a payment and the settling of its message commit
 *	  together or not at all.
 *
 *	  Also here: payment.queue's face from 1.1 on (the view over both kinds,
 *	  and its INSTEAD OF trigger), and payment.claim_messages().
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "payment.h"
#include "queue/embedded.h"
#include "queue/event_log.h"
#include "queue/intake_keys.h"
#include "queue/layout.h"

PG_FUNCTION_INFO_V1(payment_claim_messages);
PG_FUNCTION_INFO_V1(payment_queue_messages);
PG_FUNCTION_INFO_V1(payment_queue_write);

/* how often a worker looks for expired claims and empties settled tables */
#define UPKEEP_INTERVAL_MS 1000

/*
 * Plans in two forms, indexed by the layout: 0 for a database still at 1.0
 * (everything in payment.queue, no schema_version), 1 from 1.1 on (event
 * tables, and payment.queue_retry for the messages with a row of their own).
 */
static SPIPlanPtr enqueue_plan = NULL;
static SPIPlanPtr claim_plans[2] = {NULL, NULL};
static SPIPlanPtr next_plans[2] = {NULL, NULL};
static SPIPlanPtr delete_plans[2] = {NULL, NULL};
static SPIPlanPtr delay_plans[2] = {NULL, NULL};
static SPIPlanPtr release_plans[2] = {NULL, NULL};

static TimestampTz expired_due = 0;
static TimestampTz rotate_due = 0;

/* 1 when the event tables exist (extension 1.1), else 0: the plans' index */
static int
layout(void)
{
	return queue_layout()->event_tables ? 1 : 0;
}

/*
 * sql for the table of messages with a row each: %1$s stands for the
 * table, %2$s for its schema_version column (none at 1.0)
 */
static char *
row_table_sql(const char *sql, int lay)
{
	return psprintf(sql, lay ? "payment.queue_retry" : "payment.queue",
					lay ? "schema_version" : "NULL::integer");
}

/* whether the interval since *due passed; if so, the next one starts */
static bool
due(TimestampTz *when)
{
	TimestampTz now = GetCurrentTimestamp();

	if (now < *when)
		return false;
	*when = TimestampTzPlusMilliseconds(now, UPKEEP_INTERVAL_MS);
	return true;
}

static void
warn_if_no_worker(void)
{
	if (!payment_preloaded)
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("payment is queued but no payment worker is running"),
				 errdetail("The payment library was not loaded at server start."),
				 errhint("Add payment to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/* One row in 1.0's payment.queue, in the caller's SPI connection; its message id. */
static char *
insert_message(const QueuedPayment *payment)
{
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	int			rc;

	values[0] = payment->payment_id;
	values[1] = payment->user_id;
	values[2] = CStringGetTextDatum(payment->body);
	if (values[0] == (Datum) 0)
		nulls[0] = 'n';
	if (values[1] == (Datum) 0)
		nulls[1] = 'n';

	payment_prepare(&enqueue_plan,
					"INSERT INTO payment.queue (payment_id, user_id, body) "
					"VALUES ($1, $2, $3) RETURNING message_id::text",
					3, (Oid[]) {UUIDOID, UUIDOID, TEXTOID});
	rc = SPI_execute_plan(enqueue_plan, values, nulls, false, 1);
	if (rc != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "enqueue failed: %s", SPI_result_code_string(rc));
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/* Enqueue in the caller's transaction; the workers are woken when it commits. */
static void
embedded_enqueue_batch(const QueuedPayment *payments, int count, char **message_ids)
{
	MemoryContext caller = CurrentMemoryContext;

	warn_if_no_worker();
	SPI_connect();
	if (layout() == 1)
		event_log_append(payments, count, message_ids, caller, NULL, (Datum) 0);
	else
		for (int i = 0; i < count; i++)
			message_ids[i] = MemoryContextStrdup(caller, insert_message(&payments[i]));
	SPI_finish();
	payment_note_enqueued(0);
}

static char *
embedded_enqueue(const QueuedPayment *payment)
{
	char	   *message_id;

	embedded_enqueue_batch(payment, 1, &message_id);
	return message_id;
}

/* Seconds until the next message with a row of its own becomes visible, at most cap. */
static double
next_visible_in(double cap, int lay)
{
	double		seconds = cap;
	bool		isnull;
	Datum		d;

	if (next_plans[lay] == NULL)
		payment_prepare(&next_plans[lay],
					row_table_sql("SELECT extract(epoch FROM min(visible_at) - clock_timestamp())::float8"
								  "  FROM %1$s", lay),
					0, NULL);
	if (SPI_execute_plan(next_plans[lay], NULL, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			seconds = Max(0.0, Min(cap, DatumGetFloat8(d)));
	}
	return seconds;
}

/*
 * Claim up to max_messages visible messages with a row each, counting the
 * receive and hiding them for the visibility timeout.  Rows another
 * transaction holds are skipped, so concurrent claimers never get the same
 * message.  = ANY (ARRAY(...)) rather than a join: the generic plan of a
 * join, costed for an unknown LIMIT, hashes the whole table on every claim.
 */
static int
claim_rows(QueueMessage **messages, int max_messages, MemoryContext result_context, int lay)
{
	Datum		values[2];
	QueueMessage *claimed = NULL;
	int			count;

	if (claim_plans[lay] == NULL)
		payment_prepare(&claim_plans[lay],
					row_table_sql("UPDATE %1$s"
								  "   SET receive_count = receive_count + 1,"
								  "       visible_at = clock_timestamp() + make_interval(secs => $2)"
								  " WHERE seq = ANY (ARRAY(SELECT seq FROM %1$s"
								  "                         WHERE visible_at <= clock_timestamp()"
								  "                         ORDER BY seq LIMIT $1"
								  "                         FOR UPDATE SKIP LOCKED))"
								  " RETURNING seq, message_id::text, body, receive_count, %2$s, enqueued_at", lay),
					2, (Oid[]) {INT4OID, INT4OID});
	values[0] = Int32GetDatum(max_messages);
	values[1] = Int32GetDatum(payment_visibility_timeout);
	if (SPI_execute_plan(claim_plans[lay], values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "claiming messages failed");

	count = (int) SPI_processed;
	if (count > 0)
	{
		MemoryContext spi_context = MemoryContextSwitchTo(result_context);
		EmbeddedHandle *handles = palloc0(sizeof(EmbeddedHandle) * count);

		claimed = palloc0(sizeof(QueueMessage) * count);
		for (int i = 0; i < count; i++)
		{
			HeapTuple	tuple = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			Datum		d;

			handles[i].seq = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
			claimed[i].handle = &handles[i];
			claimed[i].message_id = SPI_getvalue(tuple, desc, 2);
			claimed[i].body = SPI_getvalue(tuple, desc, 3);
			claimed[i].receive_count = DatumGetInt32(SPI_getbinval(tuple, desc, 4, &isnull));
			d = SPI_getbinval(tuple, desc, 5, &isnull);
			claimed[i].schema_version = isnull ? -1 : DatumGetInt32(d);
			d = SPI_getbinval(tuple, desc, 6, &isnull);
			claimed[i].enqueued_at = isnull ? 0 : DatumGetTimestampTz(d);
		}
		MemoryContextSwitchTo(spi_context);
	}
	*messages = claimed;
	return count;
}

/*
 * Claim in the current transaction (SPI connected): the messages with a row
 * of their own (due retries, 1.0's leftovers) or a batch of events.  When there
 * is none, *idle_seconds (in: a cap) says when one may become visible.
 */
static int
claim_in_transaction(QueueMessage **messages, int max_messages,
					 MemoryContext result_context, bool look_for_expired,
					 double *idle_seconds)
{
	/* a look at the rows found a full batch: there may be more */
	static bool more_rows = false;
	int			lay = layout();
	int			count = 0;
	int			rows = -1;		/* what a look at the rows found; -1: none */

	/*
	 * From 1.1 the table with a row per message holds only retries, due
	 * after a backoff of seconds, and 1.0's leftovers: it is empty nearly
	 * always, and a look at it cost a third of every claim.  So while there
	 * are events to claim, it is looked at first only with the upkeep (every
	 * second) and while it yields full batches; otherwise after the events.
	 */
	bool		rows_first = lay == 0 || look_for_expired || more_rows;

	if (rows_first)
		count = rows = claim_rows(messages, max_messages, result_context, lay);
	if (count == 0 && lay == 1)
		count = event_log_claim(messages, max_messages, result_context,
								look_for_expired, idle_seconds);
	if (count == 0 && !rows_first)
		count = rows = claim_rows(messages, max_messages, result_context, lay);
	if (rows >= 0)
		more_rows = rows >= max_messages;
	if (count == 0)
		*idle_seconds = next_visible_in(*idle_seconds, lay);
	return count;
}

/*
 * The workers' claim: a transaction of its own, as an SQS receive is.  The
 * result is allocated in the caller's memory context.  Every second, also
 * looks for batches whose claim expired, and empties the event tables whose
 * messages are all settled, in a transaction of its own: its locks are
 * taken only if free, and must not be held with the claim's.
 */
static int
embedded_claim(QueueMessage **messages, int max_messages, double *idle_seconds)
{
	MemoryContext caller_context = CurrentMemoryContext;
	int			count;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	count = claim_in_transaction(messages, max_messages, caller_context,
								 due(&expired_due), idle_seconds);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

	if (due(&rotate_due))
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (layout() == 1)
			event_log_rotate();
		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
	}
	/* commit leaves TopMemoryContext current */
	MemoryContextSwitchTo(caller_context);
	return count;
}

/*
 * payment.claim_messages(max_messages): the workers' claim, in the caller's
 * transaction, for diagnostics and the isolation tests of the claim.  The
 * claimed messages come back after the visibility timeout, one receive
 * counted, as a crashed worker's batch does.
 */
Datum
payment_claim_messages(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			max_messages = PG_GETARG_INT32(0);
	QueueMessage *claimed;
	double		idle_seconds = 0;
	int			count;

	if (max_messages < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_messages must be at least 1")));
	/* a claim must see the batches cut by the claims before it */
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("payment.claim_messages() requires the READ COMMITTED isolation level")));
	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	count = claim_in_transaction(&claimed, max_messages, CurrentMemoryContext, true,
								 &idle_seconds);
	for (int i = 0; i < count; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = Int64GetDatum(EMBEDDED_HANDLE(&claimed[i])->seq);
		values[1] = CStringGetTextDatum(claimed[i].message_id);
		values[2] = CStringGetTextDatum(claimed[i].body);
		values[3] = Int32GetDatum(claimed[i].receive_count);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}


/*
 * In the store's transaction (SPI connected): settle the batch of events;
 * remove the settled messages with a row of their own and push the retried
 * ones back by their delay.
 */
static void
embedded_settle(QueueMessage *messages, int count)
{
	int			lay = layout();
	Datum	   *done = palloc(sizeof(Datum) * count);
	int			ndone = 0;

	if (lay == 1)
		event_log_settle(messages, count);
	for (int i = 0; i < count; i++)
	{
		EmbeddedHandle *h = EMBEDDED_HANDLE(&messages[i]);

		if (h->batch_id != 0)
			continue;
		if (messages[i].outcome == STORE_RETRY)
		{
			/* retries are rare: one indexed update each */
			Datum		values[2] = {Int64GetDatum(h->seq),
			Int32GetDatum(messages[i].retry_delay)};

			if (delay_plans[lay] == NULL)
				payment_prepare(&delay_plans[lay],
							row_table_sql("UPDATE %1$s"
										  "   SET visible_at = clock_timestamp() + make_interval(secs => $2)"
										  " WHERE seq = $1", lay),
							2, (Oid[]) {INT8OID, INT4OID});
			if (SPI_execute_plan(delay_plans[lay], values, NULL, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "delaying a retried message failed");
		}
		else if (messages[i].outcome != STORE_PENDING)
			done[ndone++] = Int64GetDatum(h->seq);
	}
	if (ndone > 0)
	{
		Datum		values[1] = {payment_array(done, NULL, ndone, INT8OID)};

		if (delete_plans[lay] == NULL)
			payment_prepare(&delete_plans[lay],
						row_table_sql("DELETE FROM %1$s WHERE seq = ANY ($1)", lay),
						1, (Oid[]) {INT8ARRAYOID});
		if (SPI_execute_plan(delete_plans[lay], values, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "deleting settled messages failed");
	}
}

/*
 * Give a batch back after a failure of the database, not of its messages
 * (worker_fault_is_database in drain/worker_faults.c): visible again at
 * once, and this receive not counted, so that an outage does not use up
 * the messages' receives.  Its own transaction: the store's was aborted.
 */
static void
embedded_release(QueueMessage *messages, int count)
{
	Datum	   *seqs = palloc(sizeof(Datum) * count);
	int			nrows = 0;
	int			lay;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	lay = layout();
	if (lay == 1)
		event_log_release(messages, count);
	for (int i = 0; i < count; i++)
		if (EMBEDDED_HANDLE(&messages[i])->batch_id == 0)
			seqs[nrows++] = Int64GetDatum(EMBEDDED_HANDLE(&messages[i])->seq);
	if (nrows > 0)
	{
		Datum		values[1] = {payment_array(seqs, NULL, nrows, INT8OID)};

		if (release_plans[lay] == NULL)
			payment_prepare(&release_plans[lay],
						row_table_sql("UPDATE %1$s"
									  "   SET visible_at = clock_timestamp(),"
									  "       receive_count = greatest(receive_count - 1, 0)"
									  " WHERE seq = ANY ($1)", lay),
						1, (Oid[]) {INT8ARRAYOID});
		if (SPI_execute_plan(release_plans[lay], values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "releasing a claimed batch failed");
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

/* payment.queue_messages(payment_id): the messages not settled yet (1.1's payment.queue). */
Datum
payment_queue_messages(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	event_log_list(rsinfo->setResult, rsinfo->setDesc,
				   PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0), PG_ARGISNULL(0));
	SPI_finish();
	return (Datum) 0;
}

/* NEW's column name, or isnull */
static Datum
column(TriggerData *trigdata, HeapTuple tuple, const char *name, bool *isnull)
{
	TupleDesc	desc = RelationGetDescr(trigdata->tg_relation);

	return heap_getattr(tuple, SPI_fnumber(desc, name), desc, isnull);
}

/*
 * INSTEAD OF trigger of the view payment.queue.  An INSERT (another
 * producer, an operator) enqueues as submit_payment does; one with a
 * receive count or a later visible_at gets a row of its own.  A DELETE
 * removes the message wherever it is.
 */
Datum
payment_queue_write(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr row_plan = NULL;
	static SPIPlanPtr delete_plan = NULL;
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	bool		isnull;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_INSTEAD(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("payment.queue_write() must be called as an INSTEAD OF trigger")));
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("messages in payment.queue cannot be updated"),
				 errhint("Delete the message and insert it again.")));

	tuple = trigdata->tg_trigtuple;
	SPI_connect();
	if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		Datum		seq = column(trigdata, tuple, "seq", &isnull);

		if (delete_plan == NULL)
			payment_prepare(&delete_plan,
							"WITH r AS (DELETE FROM payment.queue_retry WHERE seq = $1),"
							" e0 AS (DELETE FROM payment.queue_events_0 WHERE seq = $1),"
							" e1 AS (DELETE FROM payment.queue_events_1 WHERE seq = $1)"
							" DELETE FROM payment.queue_events_2 WHERE seq = $1",
							1, (Oid[]) {INT8OID});
		if (!isnull && SPI_execute_plan(delete_plan, &seq, NULL, false, 0) < 0)
			elog(ERROR, "deleting a queued message failed");
	}
	else
	{
		QueuedPayment p = {0};
		Datum		receive_count = column(trigdata, tuple, "receive_count", &isnull);
		bool		counted = !isnull && DatumGetInt32(receive_count) > 0;
		Datum		visible_at = column(trigdata, tuple, "visible_at", &isnull);
		bool		later = !isnull && DatumGetTimestampTz(visible_at) > GetCurrentTimestamp();
		Datum		message_id = column(trigdata, tuple, "message_id", &isnull);
		char	   *message_id_text = isnull ? NULL :
			DatumGetCString(DirectFunctionCall1(uuid_out, message_id));
		Datum		enqueued_at = column(trigdata, tuple, "enqueued_at", &isnull);
		Datum		body;
		Datum		d;
		char	   *id;

		if (isnull)
			enqueued_at = (Datum) 0;
		body = column(trigdata, tuple, "body", &isnull);
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("null value in column \"body\" of payment.queue violates not-null constraint")));
		p.body = TextDatumGetCString(body);
		d = column(trigdata, tuple, "payment_id", &isnull);
		p.payment_id = isnull ? (Datum) 0 : d;
		d = column(trigdata, tuple, "user_id", &isnull);
		p.user_id = isnull ? (Datum) 0 : d;
		d = column(trigdata, tuple, "schema_version", &isnull);
		p.schema_version = isnull ? -1 : DatumGetInt32(d);

		if (counted || later)
		{
			Datum		values[8];
			char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

			payment_prepare(&row_plan,
							"INSERT INTO payment.queue_retry"
							" (message_id, payment_id, user_id, body, enqueued_at, visible_at,"
							"  receive_count, schema_version)"
							" VALUES (coalesce($1, gen_random_uuid()), $2, $3, $4,"
							"         coalesce($5, clock_timestamp()), coalesce($6, now()),"
							"         coalesce($7, 0), $8)",
							8, (Oid[]) {UUIDOID, UUIDOID, UUIDOID, TEXTOID, TIMESTAMPTZOID,
								TIMESTAMPTZOID, INT4OID, INT4OID});
			values[0] = message_id;
			values[1] = p.payment_id;
			values[2] = p.user_id;
			values[3] = body;
			values[4] = enqueued_at;
			values[5] = visible_at;
			values[6] = receive_count;
			values[7] = Int32GetDatum(p.schema_version);
			nulls[0] = message_id_text ? ' ' : 'n';
			nulls[1] = p.payment_id ? ' ' : 'n';
			nulls[2] = p.user_id ? ' ' : 'n';
			nulls[4] = enqueued_at ? ' ' : 'n';
			column(trigdata, tuple, "visible_at", &isnull);
			nulls[5] = isnull ? 'n' : ' ';
			column(trigdata, tuple, "receive_count", &isnull);
			nulls[6] = isnull ? 'n' : ' ';
			nulls[7] = p.schema_version < 0 ? 'n' : ' ';
			if (SPI_execute_plan(row_plan, values, nulls, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "queueing a message failed");
		}
		else
			event_log_append(&p, 1, &id, CurrentMemoryContext, message_id_text, enqueued_at);
		if (!counted && !later)
			intake_keys_note(&p, &id, 1);
		payment_note_enqueued(0);
	}
	SPI_finish();
	return PointerGetDatum(tuple);
}

/*
 * While SQS is in use, the embedded queue may still hold what was queued
 * before payment.queue_url was set (or since, through payment.queue).
 */
static bool
embedded_has_leftover(bool in_use)
{
	return !in_use;
}

const QueueBackend embedded_queue = {
	.name = "embedded",
	.enqueue = embedded_enqueue,
	.enqueue_batch = embedded_enqueue_batch,
	.transactional = true,
	.claim = embedded_claim,
	.max_claim = 0,
	.depth = NULL,
	.settle_with_store = embedded_settle,
	.settle_after_commit = NULL,
	.durable_store = false,
	.release = embedded_release,
	.has_leftover = embedded_has_leftover,
};
