/*-------------------------------------------------------------------------
 * embedded.c
 *	  The default queue backend: the WAL-logged table payment.queue.
 *
 *	  Enqueue runs in the caller's transaction, so a rollback enqueues
 *	  nothing.  A claim is its own short transaction, as an SQS receive is:
 *	  it counts the receive and hides the rows for payment.visibility_timeout,
 *	  so a batch whose worker dies reappears later with its receive count
 *	  kept.  Settling (delete or delay) runs in the store's transaction, so a
 *	  payment and the removal of its message commit together or not at all.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "payment.h"
#include "queue/queue.h"

PG_FUNCTION_INFO_V1(payment_claim_messages);

static SPIPlanPtr enqueue_plan = NULL;
static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr delete_plan = NULL;
static SPIPlanPtr delay_plan = NULL;

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

/* One row, in the caller's transaction and SPI connection; its message id. */
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

/*
 * Insert messages in the caller's transaction; the queue's statement
 * trigger wakes the workers when it commits.
 */
static void
embedded_enqueue_batch(const QueuedPayment *payments, int count, char **message_ids)
{
	MemoryContext caller = CurrentMemoryContext;

	warn_if_no_worker();
	SPI_connect();
	for (int i = 0; i < count; i++)
		message_ids[i] = MemoryContextStrdup(caller, insert_message(&payments[i]));
	SPI_finish();
}

static char *
embedded_enqueue(const QueuedPayment *payment)
{
	char	   *message_id;

	embedded_enqueue_batch(payment, 1, &message_id);
	return message_id;
}

/* Seconds until the next queued message becomes visible, at most cap. */
static double
next_visible_in(double cap)
{
	static SPIPlanPtr next_plan = NULL;
	double		seconds = cap;
	bool		isnull;
	Datum		d;

	payment_prepare(&next_plan,
					"SELECT extract(epoch FROM min(visible_at) - clock_timestamp())::float8"
					"  FROM payment.queue",
					0, NULL);
	if (SPI_execute_plan(next_plan, NULL, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			seconds = Max(0.0, Min(cap, DatumGetFloat8(d)));
	}
	return seconds;
}

/*
 * Claim up to max_messages visible messages in the current transaction (SPI
 * connected): count the receive and hide them for the visibility timeout.
 * Rows another transaction holds are skipped, so concurrent claimers never
 * get the same message.  The result is allocated in result_context.
 */
static int
claim_in_transaction(QueueMessage **messages, int max_messages,
					 MemoryContext result_context)
{
	Datum		values[2];
	QueueMessage *claimed = NULL;
	int			count;

	payment_prepare(&claim_plan,
					/*
					 * = ANY (ARRAY(...)) rather than a join: the generic plan
					 * of a join, costed for an unknown LIMIT, hashes the whole
					 * queue table on every claim.
					 */
					"UPDATE payment.queue"
					"   SET receive_count = receive_count + 1,"
					"       visible_at = clock_timestamp() + make_interval(secs => $2)"
					" WHERE seq = ANY (ARRAY(SELECT seq FROM payment.queue"
					"                         WHERE visible_at <= clock_timestamp()"
					"                         ORDER BY seq LIMIT $1"
					"                         FOR UPDATE SKIP LOCKED))"
					" RETURNING seq, message_id::text, body, receive_count",
					2, (Oid[]) {INT4OID, INT4OID});
	values[0] = Int32GetDatum(max_messages);
	values[1] = Int32GetDatum(payment_visibility_timeout);
	if (SPI_execute_plan(claim_plan, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "claiming messages failed");

	count = (int) SPI_processed;
	if (count > 0)
	{
		MemoryContext spi_context = MemoryContextSwitchTo(result_context);

		claimed = palloc0(sizeof(QueueMessage) * count);
		for (int i = 0; i < count; i++)
		{
			HeapTuple	tuple = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;

			claimed[i].seq = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
			claimed[i].message_id = SPI_getvalue(tuple, desc, 2);
			claimed[i].body = SPI_getvalue(tuple, desc, 3);
			claimed[i].receive_count = DatumGetInt32(SPI_getbinval(tuple, desc, 4, &isnull));
		}
		MemoryContextSwitchTo(spi_context);
	}
	*messages = claimed;
	return count;
}

/*
 * The workers' claim: a transaction of its own, as an SQS receive is, so a
 * batch whose worker dies reappears after the visibility timeout with its
 * receive count kept.  The result is allocated in the caller's memory
 * context.  When there is none, *idle_seconds says how long until the next
 * queued message becomes visible (at most its input value), so an idle
 * worker sleeps on its latch just as long as it needs to.
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

	count = claim_in_transaction(messages, max_messages, caller_context);
	if (count == 0)
		*idle_seconds = next_visible_in(*idle_seconds);

	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
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
	int			count;

	if (max_messages < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_messages must be at least 1")));
	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	count = claim_in_transaction(&claimed, max_messages, CurrentMemoryContext);
	for (int i = 0; i < count; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = Int64GetDatum(claimed[i].seq);
		values[1] = CStringGetTextDatum(claimed[i].message_id);
		values[2] = CStringGetTextDatum(claimed[i].body);
		values[3] = Int32GetDatum(claimed[i].receive_count);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

static Datum
int8_array(int64 *items, int count)
{
	Datum	   *datums = palloc(sizeof(Datum) * Max(count, 1));

	for (int i = 0; i < count; i++)
		datums[i] = Int64GetDatum(items[i]);
	return PointerGetDatum(construct_array(datums, count, INT8OID, 8,
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * In the store's transaction (SPI connected): remove settled messages and
 * push retried ones back by their delay.
 */
static void
embedded_settle(QueueMessage *messages, int count)
{
	int64	   *done = palloc(sizeof(int64) * count);
	int64	   *retry = palloc(sizeof(int64) * count);
	int		   *delays = palloc(sizeof(int) * count);
	int			ndone = 0;
	int			nretry = 0;

	for (int i = 0; i < count; i++)
	{
		if (messages[i].outcome == STORE_RETRY)
		{
			retry[nretry] = messages[i].seq;
			delays[nretry++] = messages[i].retry_delay;
		}
		else if (messages[i].outcome != STORE_PENDING)
			done[ndone++] = messages[i].seq;
	}

	if (ndone > 0)
	{
		Oid			argtypes[1] = {INT8ARRAYOID};
		Datum		values[1];

		payment_prepare(&delete_plan,
						"DELETE FROM payment.queue WHERE seq = ANY ($1)",
						1, argtypes);
		values[0] = int8_array(done, ndone);
		if (SPI_execute_plan(delete_plan, values, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "deleting settled messages failed");
	}

	/* retries are rare: one indexed update each */
	for (int i = 0; i < nretry; i++)
	{
		Oid			argtypes[2] = {INT8OID, INT4OID};
		Datum		values[2] = {Int64GetDatum(retry[i]), Int32GetDatum(delays[i])};

		payment_prepare(&delay_plan,
						"UPDATE payment.queue"
						"   SET visible_at = clock_timestamp() + make_interval(secs => $2)"
						" WHERE seq = $1",
						2, argtypes);
		if (SPI_execute_plan(delay_plan, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "delaying a retried message failed");
	}
}

const QueueBackend embedded_queue = {
	.name = "embedded",
	.enqueue = embedded_enqueue,
	.enqueue_batch = embedded_enqueue_batch,
	.transactional = true,
	.claim = embedded_claim,
	.settle_with_store = embedded_settle,
	.settle_after_commit = NULL,
};
