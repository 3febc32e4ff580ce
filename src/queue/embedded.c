/*-------------------------------------------------------------------------
 * queue_embedded.c
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
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "payment.h"

static SPIPlanPtr enqueue_plan = NULL;
static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr delete_plan = NULL;
static SPIPlanPtr delay_plan = NULL;
static SPIPlanPtr release_plan = NULL;

/* Insert one message in the caller's transaction; returns its message id. */
char *
embedded_enqueue(const char *body, PaymentFields *fields)
{
	Oid			argtypes[3] = {UUIDOID, UUIDOID, TEXTOID};
	Datum		values[3];
	char	   *message_id;
	int			rc;

	values[0] = fields->payment_id;
	values[1] = fields->user_id;
	values[2] = CStringGetTextDatum(body);

	SPI_connect();
	payment_prepare(&enqueue_plan,
					"INSERT INTO payment.queue (payment_id, user_id, body) "
					"VALUES ($1, $2, $3) RETURNING message_id::text",
					3, argtypes);
	rc = SPI_execute_plan(enqueue_plan, values, NULL, false, 1);
	if (rc != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "enqueue failed: %s", SPI_result_code_string(rc));
	message_id = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	message_id = MemoryContextStrdup(CurrentMemoryContext, message_id);
	SPI_finish();
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
 * Claim up to max_messages visible messages in a transaction of its own.
 * The result is allocated in the caller's memory context.  When there is
 * none, *idle_seconds says how long until the next queued message becomes
 * visible (at most its input value), so an idle worker sleeps on its latch
 * just as long as it needs to.
 */
int
embedded_claim(QueueMessage **messages, int max_messages, double *idle_seconds)
{
	MemoryContext caller_context = CurrentMemoryContext;
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		values[2];
	QueueMessage *claimed = NULL;
	int			count;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());

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
					2, argtypes);
	values[0] = Int32GetDatum(max_messages);
	values[1] = Int32GetDatum(payment_visibility_timeout);
	if (SPI_execute_plan(claim_plan, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "claiming messages failed");

	count = (int) SPI_processed;
	if (count > 0)
	{
		MemoryContext spi_context = MemoryContextSwitchTo(caller_context);

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
	else
		*idle_seconds = next_visible_in(*idle_seconds);

	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	/* commit leaves TopMemoryContext current */
	MemoryContextSwitchTo(caller_context);

	*messages = claimed;
	return count;
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
void
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

/*
 * Give a batch back after a failure of the database, not of its messages
 * (see is_environmental in worker.c): visible again at once, and this
 * receive not counted, so that an outage does not use up the messages'
 * receives.  Its own transaction: the store's was aborted.
 */
void
embedded_release(QueueMessage *messages, int count)
{
	int64	   *seqs = palloc(sizeof(int64) * count);
	Oid			argtypes[1] = {INT8ARRAYOID};
	Datum		values[1];

	for (int i = 0; i < count; i++)
		seqs[i] = messages[i].seq;
	values[0] = int8_array(seqs, count);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	payment_prepare(&release_plan,
					"UPDATE payment.queue"
					"   SET visible_at = clock_timestamp(),"
					"       receive_count = greatest(receive_count - 1, 0)"
					" WHERE seq = ANY ($1)",
					1, argtypes);
	if (SPI_execute_plan(release_plan, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "releasing a claimed batch failed");
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}
