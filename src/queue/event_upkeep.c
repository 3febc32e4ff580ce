/*-------------------------------------------------------------------------
 * event_upkeep.c
 *	  What is settled in the embedded queue's event tables (see
 *	  event_log.c): emptying the generations whose messages are all settled,
 *	  and listing the messages that are not (payment.queue from 1.1).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/uuid.h"

#include "payment.h"
#include "queue/event_internal.h"
#include "queue/event_log.h"
#include "schema/payment_schema.h"

#define EVENT_COLUMNS "seq, message_id, body, enqueued_at, schema_version, txid"

/* ---- what is settled ---- */

/* Events before it are settled: visible in lo, or in hi up to cursor. */
typedef struct Position
{
	bool		has_lo;
	Datum		lo;
	bool		has_hi;
	Datum		hi;
	Cursor		cursor;
	int64		latest_id;		/* the newest batch; 0: none */
} Position;

#define CONSUMED \
	"(coalesce(pg_visible_in_snapshot(txid, $1), false) OR" \
	" coalesce(pg_visible_in_snapshot(txid, $2) AND (txid, seq) <= ($3, $4), false))"

/*
 * The events of one generation not before the position, with extra
 * conditions: parameters $1-$4 as CONSUMED, $5 lo's xmax (0 without lo).
 */
#define UNSETTLED_EVENTS(extra) \
	"SELECT " EVENT_COLUMNS " FROM payment.queue_events_#" \
	" WHERE txid >= $5 " extra " AND NOT " CONSUMED \
	" UNION ALL " \
	"SELECT " EVENT_COLUMNS " FROM payment.queue_events_#" \
	" WHERE txid = ANY (ARRAY(SELECT pg_snapshot_xip($1))) " extra " AND NOT " CONSUMED

static Oid	unsettled_types[6] = {PG_SNAPSHOTOID, PG_SNAPSHOTOID, XID8OID, INT8OID, XID8OID, TEXTOID};

static void
position_values(const Position *pos, Datum *values, char *nulls)
{
	memset(nulls, ' ', 5);
	values[0] = pos->lo;
	nulls[0] = pos->has_lo ? ' ' : 'n';
	values[1] = pos->hi;
	values[2] = xid8_datum(pos->cursor.txid);
	values[3] = Int64GetDatum(pos->cursor.seq);
	nulls[1] = nulls[2] = nulls[3] = pos->has_hi ? ' ' : 'n';
	values[4] = pos->has_lo ? DirectFunctionCall1(pg_snapshot_xmax, pos->lo) : xid8_datum(0);
}

/*
 * Where the settled events end: at the start of the first batch not done,
 * or at the end of the newest batch when all are.  Returns the batches from
 * event_open_from on (the first not done among them), for a closer look.
 */
static Batch *
settled_position(Position *pos, int *count)
{
	Batch		latest;
	int64		latest_open_from = 0;
	bool		have_latest = event_latest_batch(&latest, &latest_open_from);
	Batch	   *batches;

	memset(pos, 0, sizeof(Position));
	if (!have_latest)
	{
		*count = 0;
		return NULL;
	}
	pos->latest_id = latest.batch_id;
	if (event_open_from < latest_open_from)
		event_open_from = latest_open_from;
	batches = event_batches_from(event_open_from, count);
	for (int i = 0; i < *count; i++)
	{
		Batch	   *b = &batches[i];

		if (b->done)
			continue;
		event_open_from = b->batch_id;
		pos->has_lo = b->has_lo;
		pos->lo = b->lo;
		pos->has_hi = b->has_after;
		pos->hi = b->hi;
		pos->cursor = b->after;
		return batches;
	}
	event_open_from = latest.batch_id + 1;
	pos->has_lo = latest.has_lo;
	pos->lo = latest.lo;
	pos->has_hi = true;
	pos->hi = latest.hi;
	pos->cursor = latest.last;
	return batches;
}

/* ---- rotation ---- */

static bool
query_bool(SPIPlanPtr plan, Datum *values, const char *nulls)
{
	bool		isnull;

	if (SPI_execute_plan(plan, values, nulls, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "checking the event tables failed");
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Whether generation gen can be emptied: its tables are locked exclusively
 * (no transaction is writing them), every batch in it is done and every
 * event in it is settled.  The newest batch, whose range the next cut
 * starts from, is first copied to the current generation.
 */
static bool
generation_settled(int gen, const Position *pos, int64 first_open)
{
	static SPIPlanPtr used_plans[GENERATIONS];
	static SPIPlanPtr batches_plans[GENERATIONS];
	static SPIPlanPtr events_plans[GENERATIONS];
	static SPIPlanPtr carry_plans[GENERATIONS][GENERATIONS];
	Oid			nsp = get_namespace_oid("payment", false);
	Datum		values[6];
	char		nulls[6];
	bool		isnull;
	int64		newest;

	if (used_plans[gen] == NULL)
		payment_prepare(&used_plans[gen],
						event_generation_sql("SELECT EXISTS (SELECT FROM payment.queue_events_#)"
									   "    OR EXISTS (SELECT FROM payment.queue_batches_#)", gen),
						0, NULL);
	if (!query_bool(used_plans[gen], NULL, NULL))
		return false;

	if (!ConditionalLockRelationOid(get_relname_relid(psprintf("queue_events_%d", gen), nsp),
									AccessExclusiveLock) ||
		!ConditionalLockRelationOid(get_relname_relid(psprintf("queue_batches_%d", gen), nsp),
									AccessExclusiveLock))
		return false;

	if (batches_plans[gen] == NULL)
		payment_prepare(&batches_plans[gen],
						event_generation_sql("SELECT coalesce(max(batch_id), 0) FROM payment.queue_batches_#", gen),
						0, NULL);
	if (SPI_execute_plan(batches_plans[gen], NULL, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "checking the batch log failed");
	newest = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (newest >= first_open)
		return false;

	if (events_plans[gen] == NULL)
		payment_prepare(&events_plans[gen],
						psprintf("SELECT EXISTS (%s)", event_generation_sql(UNSETTLED_EVENTS(""), gen)),
						5, unsettled_types);
	position_values(pos, values, nulls);
	if (query_bool(events_plans[gen], values, nulls))
		return false;

	/* the next cut starts where the newest batch ends: carry it over */
	if (newest == pos->latest_id)
	{
		Datum		id = Int64GetDatum(newest);
		int			to = event_generation_now();

		if (carry_plans[gen][to] == NULL)
			payment_prepare(&carry_plans[gen][to],
							psprintf("INSERT INTO payment.queue_batches_%d"
									 " SELECT * FROM payment.queue_batches_%d WHERE batch_id = $1",
									 to, gen),
							1, (Oid[]) {INT8OID});
		if (SPI_execute_plan(carry_plans[gen][to], &id, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "carrying the newest batch over failed");
	}
	return true;
}

void
event_log_rotate(void)
{
	Position	pos;
	int			count;
	int			current = event_generation_now();

	(void) settled_position(&pos, &count);
	if (pos.latest_id == 0)
		return;
	for (int gen = 0; gen < GENERATIONS; gen++)
	{
		if (gen == current || !generation_settled(gen, &pos, event_open_from))
			continue;
		if (SPI_execute(event_generation_sql("TRUNCATE payment.queue_events_#, payment.queue_batches_#", gen),
						false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "emptying a generation of the event tables failed");
		elog(DEBUG1, "payment emptied generation %d of the event tables", gen);
	}
}

/* ---- payment.queue_messages() ---- */

static bool
covers(const Batch *b, Cursor c)
{
	return visible_in(c.txid, b->hi) &&
		!(b->has_lo && visible_in(c.txid, b->lo)) &&
		(!b->has_after || cursor_cmp(c, b->after) > 0) &&
		cursor_cmp(c, b->last) <= 0;
}

/*
 * Add the unsettled messages (of one payment, or all) to the tuplestore,
 * with 1.0's columns: those of the event tables, the payment's keys read
 * from the body, their receive count and visibility their batch's; then
 * those waiting for a retry.
 */
void
event_log_list(Tuplestorestate *store, TupleDesc desc, Datum payment_id, bool all)
{
	static SPIPlanPtr event_plans[2];
	static SPIPlanPtr retry_plans[2];
	Position	pos;
	int			nbatches;
	Batch	   *batches = settled_position(&pos, &nbatches);
	Datum		params[6];
	char		nulls[6];

	/*
	 * For one payment, only the bodies that may hold its id are parsed: those
	 * with its text, or with an escape that could spell it.
	 */
	if (event_plans[all] == NULL)
		payment_prepare(&event_plans[all],
						psprintf("SELECT * FROM (%s) e ORDER BY seq",
								 event_for_each_generation(all ? UNSETTLED_EVENTS("") :
													 UNSETTLED_EVENTS("AND (strpos(lower(body), $6) > 0"
																	  " OR strpos(body, '\\u') > 0)"),
													 " UNION ALL ")),
						all ? 5 : 6, unsettled_types);
	position_values(&pos, params, nulls);
	params[5] = all ? (Datum) 0 :
		CStringGetTextDatum(DatumGetCString(DirectFunctionCall1(uuid_out, payment_id)));
	nulls[5] = ' ';
	if (SPI_execute_plan(event_plans[all], params, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading the event tables failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	rowdesc = SPI_tuptable->tupdesc;
		Datum		values[9];
		bool		isnull[9];
		Cursor		c;
		const Batch *batch = NULL;
		Datum		keys[2];

		c.seq = DatumGetInt64(SPI_getbinval(row, rowdesc, 1, &isnull[0]));
		c.txid = xid8_value(SPI_getbinval(row, rowdesc, 6, &isnull[0]));
		for (int b = 0; b < nbatches && batch == NULL; b++)
			if (covers(&batches[b], c))
				batch = &batches[b];
		if (batch != NULL && batch->done)
			continue;
		values[4] = SPI_getbinval(row, rowdesc, 3, &isnull[4]);
		payment_find_keys(TextDatumGetCString(values[4]), &keys[0], &keys[1]);
		if (!all && (keys[0] == (Datum) 0 ||
					 memcmp(DatumGetUUIDP(keys[0]), DatumGetUUIDP(payment_id), UUID_LEN) != 0))
			continue;
		values[0] = SPI_getbinval(row, rowdesc, 1, &isnull[0]);	/* seq */
		values[1] = SPI_getbinval(row, rowdesc, 2, &isnull[1]);	/* message_id */
		for (int k = 0; k < 2; k++)
		{
			values[2 + k] = keys[k];
			isnull[2 + k] = keys[k] == (Datum) 0;
		}
		values[5] = SPI_getbinval(row, rowdesc, 4, &isnull[5]);	/* enqueued_at */
		values[6] = batch ? TimestampTzGetDatum(batch->visible_at) : values[5];
		isnull[6] = false;
		values[7] = Int32GetDatum(batch ? batch->attempt : 0);
		isnull[7] = false;
		values[8] = SPI_getbinval(row, rowdesc, 5, &isnull[8]);	/* schema_version */
		tuplestore_putvalues(store, desc, values, isnull);
	}

	if (retry_plans[all] == NULL)
		payment_prepare(&retry_plans[all],
						all ?
						"SELECT seq, message_id, payment_id, user_id, body, enqueued_at, visible_at,"
						"       receive_count, schema_version FROM payment.queue_retry ORDER BY seq" :
						"SELECT seq, message_id, payment_id, user_id, body, enqueued_at, visible_at,"
						"       receive_count, schema_version FROM payment.queue_retry"
						" WHERE payment_id = $1",
						all ? 0 : 1, (Oid[]) {UUIDOID});
	if (SPI_execute_plan(retry_plans[all], &payment_id, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading the retried messages failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum		values[9];
		bool		isnull[9];

		for (int col = 0; col < 9; col++)
			values[col] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, col + 1,
										&isnull[col]);
		tuplestore_putvalues(store, desc, values, isnull);
	}
}
