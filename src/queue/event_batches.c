/*-------------------------------------------------------------------------
 * event_batches.c
 *	  The batch log of the embedded queue's event tables (see event_log.c):
 *	  cutting a batch, claiming an expired one again, settling and giving
 *	  batches back.  Each of these appends a row; nothing is updated.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/snapmgr.h"

#include "payment.h"
#include "queue/event_internal.h"
#include "queue/event_log.h"
#include "schema/payment_schema.h"

/* pg_advisory_xact_lock key of the claimers: "paymnt" and 1 */
#define CLAIM_LOCK_KEY INT64CONST(0x7061796d6e740001)

/* ---- the batch log ---- */

#define BATCH_COLUMNS \
	"gen, batch_id, step, state, attempt, lo, hi, after_txid, after_seq," \
	" last_txid, last_seq, more, visible_at"

/*
 * Fill b from a batch-log row (BATCH_COLUMNS), copying into the current
 * context.  The range is on the batch's first row (step 0) only.
 */
static void
batch_apply_row(Batch *b, HeapTuple row, TupleDesc desc)
{
	bool		isnull;
	Datum		d;
	char	   *state;

	b->gen = DatumGetInt32(SPI_getbinval(row, desc, 1, &isnull));
	b->batch_id = DatumGetInt64(SPI_getbinval(row, desc, 2, &isnull));
	b->step = DatumGetInt32(SPI_getbinval(row, desc, 3, &isnull));
	state = SPI_getvalue(row, desc, 4);
	if (strcmp(state, "done") == 0)
		b->done = true;
	b->released = strcmp(state, "released") == 0;
	b->attempt = DatumGetInt32(SPI_getbinval(row, desc, 5, &isnull));
	b->visible_at = DatumGetTimestampTz(SPI_getbinval(row, desc, 13, &isnull));
	if (b->step > 0)
		return;
	d = SPI_getbinval(row, desc, 6, &isnull);
	b->has_lo = !isnull;
	b->lo = isnull ? (Datum) 0 : datumCopy(d, false, -1);
	b->hi = datumCopy(SPI_getbinval(row, desc, 7, &isnull), false, -1);
	d = SPI_getbinval(row, desc, 8, &isnull);
	b->has_after = !isnull;
	if (!isnull)
	{
		b->after.txid = xid8_value(d);
		b->after.seq = DatumGetInt64(SPI_getbinval(row, desc, 9, &isnull));
	}
	b->last.txid = xid8_value(SPI_getbinval(row, desc, 10, &isnull));
	b->last.seq = DatumGetInt64(SPI_getbinval(row, desc, 11, &isnull));
	b->more = DatumGetBool(SPI_getbinval(row, desc, 12, &isnull));
}

/* The newest batch cut (its first row), or false when the log is empty. */
bool
event_latest_batch(Batch *b, int64 *its_open_from)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;

	if (plan == NULL)
		payment_prepare(&plan,
						psprintf("SELECT " BATCH_COLUMNS ", open_from FROM (%s) b"
								 " ORDER BY batch_id DESC, step LIMIT 1",
								 event_for_each_generation("SELECT # AS gen, * FROM payment.queue_batches_#",
													 " UNION ALL ")),
						0, NULL);
	if (SPI_execute_plan(plan, NULL, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "reading the batch log failed");
	if (SPI_processed == 0)
		return false;
	memset(b, 0, sizeof(Batch));
	batch_apply_row(b, SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
	*its_open_from = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 14, &isnull));
	return true;
}

/* Every batch from batch_id on, oldest first, each as its newest row says. */
Batch *
event_batches_from(int64 from, int *count)
{
	static SPIPlanPtr plan = NULL;
	Datum		value = Int64GetDatum(from);
	Batch	   *batches;
	int			n = 0;

	if (plan == NULL)
		payment_prepare(&plan,
						psprintf("SELECT " BATCH_COLUMNS " FROM (%s) b"
								 " ORDER BY batch_id, step, recorded_at",
								 event_for_each_generation("SELECT # AS gen, * FROM payment.queue_batches_#"
													 " WHERE batch_id >= $1", " UNION ALL ")),
						1, (Oid[]) {INT8OID});
	if (SPI_execute_plan(plan, &value, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading the batch log failed");
	batches = palloc0(sizeof(Batch) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(row, SPI_tuptable->tupdesc, 2, &isnull));
		bool		done;

		if (n == 0 || batches[n - 1].batch_id != id)
			n++;
		done = batches[n - 1].done;
		batch_apply_row(&batches[n - 1], row, SPI_tuptable->tupdesc);
		batches[n - 1].done |= done;
	}
	*count = n;
	return batches;
}

/* A row for batch b; the first (step 0) records its range. */
static void
append_batch_row(const Batch *b, const char *state, int step, int attempt,
				 TimestampTz visible_at)
{
	static SPIPlanPtr plans[GENERATIONS];
	Datum		values[13];
	char		nulls[13];

	if (plans[b->gen] == NULL)
		payment_prepare(&plans[b->gen], event_generation_sql(
						   "INSERT INTO payment.queue_batches_#"
						   " (batch_id, step, state, attempt, lo, hi, after_txid, after_seq,"
						   "  last_txid, last_seq, more, visible_at, open_from)"
						   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
						   b->gen), 13,
						   (Oid[]) {INT8OID, INT4OID, TEXTOID, INT4OID, PG_SNAPSHOTOID,
							   PG_SNAPSHOTOID, XID8OID, INT8OID, XID8OID, INT8OID, BOOLOID,
						   TIMESTAMPTZOID, INT8OID});
	memset(nulls, ' ', sizeof(nulls));
	values[0] = Int64GetDatum(b->batch_id);
	values[1] = Int32GetDatum(step);
	values[2] = CStringGetTextDatum(state);
	values[3] = Int32GetDatum(attempt);
	values[4] = b->lo;
	nulls[4] = b->has_lo ? ' ' : 'n';
	values[5] = b->hi;
	values[6] = xid8_datum(b->after.txid);
	values[7] = Int64GetDatum(b->after.seq);
	nulls[6] = nulls[7] = b->has_after ? ' ' : 'n';
	values[8] = xid8_datum(b->last.txid);
	values[9] = Int64GetDatum(b->last.seq);
	values[10] = BoolGetDatum(b->more);
	values[11] = TimestampTzGetDatum(visible_at);
	values[12] = Int64GetDatum(event_open_from);
	if (step > 0)
		memset(nulls + 4, 'n', 7);
	if (SPI_execute_plan(plans[b->gen], values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "writing the batch log failed");
}

/* Mark the messages read as those of batch b's claim at step. */
static void
assign_batch(QueueMessage *messages, int count, const Batch *b, int step, int attempt)
{
	for (int i = 0; i < count; i++)
	{
		EmbeddedHandle *h = EMBEDDED_HANDLE(&messages[i]);

		messages[i].receive_count = attempt;
		h->batch_id = b->batch_id;
		h->batch_gen = b->gen;
		h->batch_step = step;
	}
}

/* ---- claiming ---- */

static TimestampTz
lease_end(void)
{
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
									   (int64) payment_visibility_timeout * 1000);
}

/*
 * The batches not done whose claim expired (or that were given back),
 * oldest first; advances event_open_from past the done ones.  *next_expiry gets
 * the earliest claim still running.
 */
static Batch *
find_expired(int *nexpired, TimestampTz *next_expiry)
{
	int			count;
	Batch	   *batches = event_batches_from(event_open_from, &count);
	TimestampTz now = GetCurrentTimestamp();
	bool		all_done_so_far = true;
	int			n = 0;

	*next_expiry = DT_NOEND;
	for (int i = 0; i < count; i++)
	{
		Batch	   *b = &batches[i];

		if (b->done)
		{
			if (all_done_so_far)
				event_open_from = b->batch_id + 1;
			continue;
		}
		all_done_so_far = false;
		if (b->visible_at <= now)
			batches[n++] = *b;
		else if (b->visible_at < *next_expiry)
			*next_expiry = b->visible_at;
	}
	*nexpired = n;
	return batches;
}

/* event_log_claim, under the claimers' lock and with a snapshot taken after it */
static int
claim_locked(QueueMessage **messages, int max_messages, MemoryContext result_context,
			 bool look_for_expired, double *next_visible_in)
{
	Batch		latest;
	Batch		cut;
	int64		latest_open_from = 0;
	bool		have_latest;
	int			count;

	have_latest = event_latest_batch(&latest, &latest_open_from);
	if (have_latest && event_open_from < latest_open_from)
		event_open_from = latest_open_from;

	if (look_for_expired)
	{
		TimestampTz next_expiry;
		int			nexpired;
		Batch	   *expired = find_expired(&nexpired, &next_expiry);

		if (next_expiry != DT_NOEND)
		{
			long		secs;
			int			usecs;

			TimestampDifference(GetCurrentTimestamp(), next_expiry, &secs, &usecs);
			*next_visible_in = Min(*next_visible_in, secs + usecs / 1000000.0);
		}
		for (int i = 0; i < nexpired; i++)
		{
			/* claimed again: the same events, one more receive */
			Batch	   *b = &expired[i];
			int			attempt = b->attempt + 1;

			append_batch_row(b, "claimed", b->step + 1, attempt, lease_end());
			*messages = event_read_range(b, b->has_after, b->after, b->last, INT_MAX,
								   result_context, &count);
			assign_batch(*messages, count, b, b->step + 1, attempt);
			if (count > 0)
				return count;
			/* its events are gone (deleted by hand): it is done */
			append_batch_row(b, "done", b->step + 2, attempt, GetCurrentTimestamp());
		}
	}

	memset(&cut, 0, sizeof(cut));
	cut.gen = event_generation_now();
	cut.batch_id = have_latest ? latest.batch_id + 1 : 1;
	count = 0;

	/* the rest of the newest range, if its last chunk was full */
	if (have_latest && latest.more)
	{
		Cursor		upto = {xid8_value(DirectFunctionCall1(pg_snapshot_xmax, latest.hi)), 0};

		*messages = event_read_range(&latest, true, latest.last, upto, max_messages,
							   result_context, &count);
		if (count > 0)
		{
			cut.has_lo = latest.has_lo;
			cut.lo = latest.lo;
			cut.hi = latest.hi;
			cut.has_after = true;
			cut.after = latest.last;
		}
	}
	/* else a new range: what committed since the newest one */
	if (count == 0)
	{
		Cursor		upto = {0, 0};

		cut.hi = DirectFunctionCall1(pg_current_snapshot, (Datum) 0);
		cut.has_lo = have_latest;
		cut.lo = have_latest ? latest.hi : (Datum) 0;
		cut.has_after = false;
		upto.txid = xid8_value(DirectFunctionCall1(pg_snapshot_xmax, cut.hi));
		*messages = event_read_range(&cut, false, cut.after, upto, max_messages,
							   result_context, &count);
	}
	if (count == 0)
		return 0;

	cut.last.txid = EMBEDDED_HANDLE(&(*messages)[count - 1])->txid;
	cut.last.seq = EMBEDDED_HANDLE(&(*messages)[count - 1])->seq;
	cut.more = count >= max_messages;
	assign_batch(*messages, count, &cut, 0, 1);
	append_batch_row(&cut, "claimed", 0, 1, lease_end());
	return count;
}

int
event_log_claim(QueueMessage **messages, int max_messages,
				MemoryContext result_context, bool look_for_expired,
				double *next_visible_in)
{
	int			count = 0;

	*messages = NULL;
	DirectFunctionCall1(pg_advisory_xact_lock_int8, Int64GetDatum(CLAIM_LOCK_KEY));
	/* read with a snapshot taken after the lock: see the batches and events before it */
	PushActiveSnapshot(GetLatestSnapshot());
	PG_TRY();
	{
		count = claim_locked(messages, max_messages, result_context, look_for_expired,
							 next_visible_in);
	}
	PG_FINALLY();
	{
		PopActiveSnapshot();
	}
	PG_END_TRY();
	return count;
}

/* ---- settling ---- */

void
event_log_settle(QueueMessage *messages, int count)
{
	static SPIPlanPtr retry_plan = NULL;
	int64		settled_batch = 0;

	for (int i = 0; i < count; i++)
	{
		QueueMessage *m = &messages[i];
		EmbeddedHandle *h = EMBEDDED_HANDLE(m);

		if (h->batch_id == 0)
			continue;
		if (m->outcome == STORE_RETRY)
		{
			/*
			 * The few messages to retry later get a row of their own, with the
			 * payment's keys (for payment_status' index lookup there).
			 */
			Datum		values[6] = {xid8_datum(h->txid), Int64GetDatum(h->seq),
			Int32GetDatum(m->retry_delay), Int32GetDatum(m->receive_count)};
			char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};

			payment_find_keys(m->body, &values[4], &values[5]);
			nulls[4] = values[4] == (Datum) 0 ? 'n' : ' ';
			nulls[5] = values[5] == (Datum) 0 ? 'n' : ' ';
			if (retry_plan == NULL)
				payment_prepare(&retry_plan,
								psprintf("INSERT INTO payment.queue_retry"
										 " (seq, message_id, payment_id, user_id, body, enqueued_at,"
										 "  visible_at, receive_count, schema_version)"
										 " OVERRIDING SYSTEM VALUE"
										 " SELECT seq, message_id, $5, $6, body, enqueued_at,"
										 "        clock_timestamp() + make_interval(secs => $3), $4,"
										 "        schema_version"
										 "   FROM (%s) e LIMIT 1",
										 event_for_each_generation("SELECT * FROM payment.queue_events_#"
															 " WHERE txid = $1 AND seq = $2",
															 " UNION ALL ")),
								6, (Oid[]) {XID8OID, INT8OID, INT4OID, INT4OID, UUIDOID, UUIDOID});
			if (SPI_execute_plan(retry_plan, values, nulls, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "moving a retried message failed");
		}
		if (h->batch_id != settled_batch)
		{
			Batch		b;

			memset(&b, 0, sizeof(b));
			b.batch_id = h->batch_id;
			b.gen = h->batch_gen;
			append_batch_row(&b, "done", h->batch_step + 1, m->receive_count,
							 GetCurrentTimestamp());
			settled_batch = h->batch_id;
		}
	}
}

void
event_log_release(QueueMessage *messages, int count)
{
	int64		released_batch = 0;

	for (int i = 0; i < count; i++)
	{
		EmbeddedHandle *h = EMBEDDED_HANDLE(&messages[i]);
		Batch		b;
		int			found;
		Batch	   *now;

		if (h->batch_id == 0 || h->batch_id == released_batch)
			continue;
		released_batch = h->batch_id;
		now = event_batches_from(h->batch_id, &found);
		if (found == 0 || now[0].batch_id != h->batch_id || now[0].done)
			continue;
		b = now[0];
		append_batch_row(&b, "released", b.step + 1, Max(b.attempt - 1, 0),
						 GetCurrentTimestamp());
	}
}

