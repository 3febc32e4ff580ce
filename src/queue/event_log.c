/*-------------------------------------------------------------------------
 * event_log.c
 *	  The embedded queue's messages from extension 1.1 on: insert-only event
 *	  tables and a batch log, emptied by TRUNCATE instead of deleted row by
 *	  row, so that a held snapshot leaves no dead rows behind (PgQ's design).
 *
 *	  Three generations of tables (payment.queue_events_N and
 *	  payment.queue_batches_N) take turns by the clock, each for
 *	  payment.queue_rotate_after seconds.  Any generation may be written at
 *	  any time; a generation is emptied only under an exclusive lock, once
 *	  every event in it is settled and every batch in it is done.
 *
 *	  A batch is the events whose transactions committed between two
 *	  snapshots (lo, hi], so a transaction that commits after a later one is
 *	  never skipped: it is not visible in hi yet, and falls into the next
 *	  range.  Within a range, events are ordered by (txid, seq) and cut into
 *	  chunks of at most a batch.  Each claim, re-claim, release and settle
 *	  appends a row to the batch log; the newest row of a batch says its
 *	  state, its receive count (attempt) and when its claim expires.
 *	  Claimers are serialised by a transaction-level advisory lock, so two
 *	  never cut the same range; a claim holds it for one short transaction.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
#include "utils/xid8.h"

#include "payment.h"
#include "queue/event_log.h"

PG_FUNCTION_INFO_V1(payment_restamp_event);

#define GENERATIONS 3

/* pg_advisory_xact_lock key of the claimers: "paymnt" and 1 */
#define CLAIM_LOCK_KEY INT64CONST(0x7061796d6e740001)

int			queue_rotate_after = 10;

/* a position in a range: events are ordered by (txid, seq) */
typedef struct Cursor
{
	uint64		txid;
	int64		seq;
} Cursor;

/* a batch as its newest batch-log row says */
typedef struct Batch
{
	int64		batch_id;
	int			gen;
	int			step;
	bool		done;			/* settled (by any row) */
	bool		released;
	int			attempt;
	bool		has_lo;			/* no lo: the first range, from the start */
	Datum		lo;
	Datum		hi;
	bool		has_after;		/* no after: from the start of the range */
	Cursor		after;
	Cursor		last;
	bool		more;			/* the chunk was full: the range may hold more */
	TimestampTz visible_at;
} Batch;

/* the lowest batch this process knows may not be done yet */
static int64 open_from = 0;

void
event_log_define_settings(void)
{
	DefineCustomIntVariable("payment.queue_rotate_after",
							"Seconds each generation of the embedded queue's event tables is written.",
							"A generation is emptied by TRUNCATE once all its messages are settled.",
							&queue_rotate_after, 10, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
}

static int
current_generation(void)
{
	int64		seconds = GetCurrentStatementStartTimestamp() / USECS_PER_SEC;

	return (int) ((seconds / queue_rotate_after) % GENERATIONS);
}

/* fmt with '#' standing for the generation's number */
static char *
generation_sql(const char *fmt, int gen)
{
	StringInfoData sql;

	initStringInfo(&sql);
	for (const char *p = fmt; *p; p++)
	{
		if (*p == '#')
			appendStringInfoChar(&sql, '0' + gen);
		else
			appendStringInfoChar(&sql, *p);
	}
	return sql.data;
}

/* fmt once per generation, joined by glue */
static char *
for_each_generation(const char *fmt, const char *glue)
{
	StringInfoData sql;

	initStringInfo(&sql);
	for (int g = 0; g < GENERATIONS; g++)
	{
		if (g > 0)
			appendStringInfoString(&sql, glue);
		appendStringInfoString(&sql, generation_sql(fmt, g));
	}
	return sql.data;
}

static uint64
xid8_value(Datum d)
{
	return U64FromFullTransactionId(DatumGetFullTransactionId(d));
}

static Datum
xid8_datum(uint64 value)
{
	return FullTransactionIdGetDatum(FullTransactionIdFromU64(value));
}

static bool
visible_in(uint64 txid, Datum snapshot)
{
	return DatumGetBool(DirectFunctionCall2(pg_visible_in_snapshot,
											xid8_datum(txid), snapshot));
}

static int
cursor_cmp(Cursor a, Cursor b)
{
	if (a.txid != b.txid)
		return a.txid < b.txid ? -1 : 1;
	if (a.seq != b.seq)
		return a.seq < b.seq ? -1 : 1;
	return 0;
}

/* ---- appending ---- */

static Datum
array_of(Datum *items, bool *nulls, int count, Oid type, int16 typlen, bool byval, char align)
{
	int			dims[1] = {count};
	int			lbs[1] = {1};

	return PointerGetDatum(construct_md_array(items, nulls, 1, dims, lbs, type, typlen, byval, align));
}

/* Many messages in one statement (submit_payments, a redrive): one executor run, not one each. */
static void
append_many(const QueuedPayment *payments, int count, char **message_ids,
			MemoryContext caller, int gen)
{
	static SPIPlanPtr plans[GENERATIONS];
	Datum	   *columns[4];
	bool	   *nulls[4];
	Datum		values[4];

	if (plans[gen] == NULL)
		payment_prepare(&plans[gen], generation_sql(
						"INSERT INTO payment.queue_events_# (payment_id, user_id, body, schema_version)"
						" SELECT * FROM unnest($1, $2, $3, $4)"
						" RETURNING message_id::text", gen), 4,
						(Oid[]) {UUIDARRAYOID, UUIDARRAYOID, TEXTARRAYOID, INT4ARRAYOID});
	for (int c = 0; c < 4; c++)
	{
		columns[c] = palloc(sizeof(Datum) * count);
		nulls[c] = palloc0(sizeof(bool) * count);
	}
	for (int i = 0; i < count; i++)
	{
		const QueuedPayment *p = &payments[i];

		columns[0][i] = p->payment_id;
		nulls[0][i] = p->payment_id == (Datum) 0;
		columns[1][i] = p->user_id;
		nulls[1][i] = p->user_id == (Datum) 0;
		columns[2][i] = CStringGetTextDatum(p->body);
		columns[3][i] = Int32GetDatum(p->schema_version);
		nulls[3][i] = p->schema_version < 0;
	}
	values[0] = array_of(columns[0], nulls[0], count, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR);
	values[1] = array_of(columns[1], nulls[1], count, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR);
	values[2] = array_of(columns[2], nulls[2], count, TEXTOID, -1, false, TYPALIGN_INT);
	values[3] = array_of(columns[3], nulls[3], count, INT4OID, 4, true, TYPALIGN_INT);
	/* rows are inserted, and returned, in the order unnest gives them */
	if (SPI_execute_plan(plans[gen], values, NULL, false, 0) != SPI_OK_INSERT_RETURNING ||
		SPI_processed != (uint64) count)
		elog(ERROR, "appending to the event table failed");
	for (int i = 0; i < count; i++)
		message_ids[i] = MemoryContextStrdup(caller,
											 SPI_getvalue(SPI_tuptable->vals[i],
														  SPI_tuptable->tupdesc, 1));
}

void
event_log_append(const QueuedPayment *payments, int count, char **message_ids,
				 MemoryContext caller, const char *message_id, Datum enqueued_at)
{
	static SPIPlanPtr plans[GENERATIONS];
	int			gen = current_generation();

	if (count > 1 && message_id == NULL && enqueued_at == (Datum) 0)
	{
		append_many(payments, count, message_ids, caller, gen);
		return;
	}
	if (plans[gen] == NULL)
		payment_prepare(&plans[gen], generation_sql(
						   "INSERT INTO payment.queue_events_#"
						   " (payment_id, user_id, body, schema_version, message_id, enqueued_at)"
						   " VALUES ($1, $2, $3, $4, coalesce($5, gen_random_uuid()),"
						   "         coalesce($6, clock_timestamp()))"
						   " RETURNING message_id::text", gen), 6,
						   (Oid[]) {UUIDOID, UUIDOID, TEXTOID, INT4OID, UUIDOID, TIMESTAMPTZOID});
	for (int i = 0; i < count; i++)
	{
		const QueuedPayment *p = &payments[i];
		Datum		values[6];
		char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
		int			rc;

		values[0] = p->payment_id;
		values[1] = p->user_id;
		values[2] = CStringGetTextDatum(p->body);
		values[3] = Int32GetDatum(p->schema_version);
		values[4] = message_id ? DirectFunctionCall1(uuid_in, CStringGetDatum(message_id)) : (Datum) 0;
		values[5] = enqueued_at;
		if (p->payment_id == (Datum) 0)
			nulls[0] = 'n';
		if (p->user_id == (Datum) 0)
			nulls[1] = 'n';
		if (p->schema_version < 0)
			nulls[3] = 'n';
		if (message_id == NULL)
			nulls[4] = 'n';
		if (enqueued_at == (Datum) 0)
			nulls[5] = 'n';
		rc = SPI_execute_plan(plans[gen], values, nulls, false, 1);
		if (rc != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
			elog(ERROR, "appending to the event table failed: %s", SPI_result_code_string(rc));
		message_ids[i] = MemoryContextStrdup(caller,
											 SPI_getvalue(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc, 1));
	}
}

/*
 * payment.restamp_event(): rows restored from a dump carry the dumped
 * cluster's transaction ids; give them the restoring transaction's.
 */
Datum
payment_restamp_event(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	int			attnum;
	Datum		value;
	bool		isnull = false;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("payment.restamp_event() must be called as a BEFORE ROW trigger")));
	desc = RelationGetDescr(trigdata->tg_relation);
	attnum = SPI_fnumber(desc, "txid");
	if (attnum <= 0)
		elog(ERROR, "event table has no txid column");
	value = FullTransactionIdGetDatum(GetTopFullTransactionId());
	return PointerGetDatum(heap_modify_tuple_by_cols(trigdata->tg_trigtuple, desc,
													 1, &attnum, &value, &isnull));
}

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
static bool
latest_batch(Batch *b, int64 *its_open_from)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;

	if (plan == NULL)
		payment_prepare(&plan,
						psprintf("SELECT " BATCH_COLUMNS ", open_from FROM (%s) b"
								 " ORDER BY batch_id DESC, step LIMIT 1",
								 for_each_generation("SELECT # AS gen, * FROM payment.queue_batches_#",
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
static Batch *
batches_from(int64 from, int *count)
{
	static SPIPlanPtr plan = NULL;
	Datum		value = Int64GetDatum(from);
	Batch	   *batches;
	int			n = 0;

	if (plan == NULL)
		payment_prepare(&plan,
						psprintf("SELECT " BATCH_COLUMNS " FROM (%s) b"
								 " ORDER BY batch_id, step, recorded_at",
								 for_each_generation("SELECT # AS gen, * FROM payment.queue_batches_#"
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
		payment_prepare(&plans[b->gen], generation_sql(
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
	values[12] = Int64GetDatum(open_from);
	if (step > 0)
		memset(nulls + 4, 'n', 7);
	if (SPI_execute_plan(plans[b->gen], values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "writing the batch log failed");
}

/* ---- reading events ---- */

#define EVENT_COLUMNS "seq, message_id, payment_id, user_id, body, enqueued_at, schema_version, txid"

/*
 * Reading a range goes straight to the (txid, seq) index of each event
 * table: the planner, which cannot know how many rows a range of a table
 * emptied seconds ago holds, chose to sort all of them for every chunk.
 */

/* an event table's columns, by name (the three tables have the same) */
typedef struct EventColumns
{
	AttrNumber	seq;
	AttrNumber	txid;
	AttrNumber	message_id;
	AttrNumber	body;
	AttrNumber	schema_version;
} EventColumns;

static int
compare_messages(const void *a, const void *b)
{
	const QueueMessage *x = a;
	const QueueMessage *y = b;
	Cursor		cx = {x->txid, x->seq};
	Cursor		cy = {y->txid, y->seq};

	return cursor_cmp(cx, cy);
}

/* the events read so far, in result_context */
typedef struct Found
{
	QueueMessage *items;
	int			count;
	int			size;
	MemoryContext context;
} Found;

/*
 * Append to found (at most limit) the events of range that an index scan
 * positioned by keys meets, in (txid, seq) order, up to upto.
 */
static void
collect(Relation heap, Relation index, TupleTableSlot *slot, const EventColumns *cols,
		ScanKeyData *keys, int nkeys, const Batch *range, Cursor upto,
		int limit, Found *found)
{
	IndexScanDesc scan = index_beginscan(heap, index, GetActiveSnapshot(), nkeys, 0);
	int			taken = 0;

	index_rescan(scan, keys, nkeys, NULL, 0);
	while (taken < limit && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Cursor		c;
		QueueMessage *m;
		MemoryContext old;
		Datum		d;

		c.txid = xid8_value(slot_getattr(slot, cols->txid, &isnull));
		c.seq = DatumGetInt64(slot_getattr(slot, cols->seq, &isnull));
		if (cursor_cmp(c, upto) > 0)
			break;
		if (!visible_in(c.txid, range->hi) || (range->has_lo && visible_in(c.txid, range->lo)))
			continue;
		old = MemoryContextSwitchTo(found->context);
		if (found->count == found->size)
		{
			found->size *= 2;
			found->items = repalloc(found->items, sizeof(QueueMessage) * found->size);
		}
		m = &found->items[found->count++];
		taken++;
		memset(m, 0, sizeof(QueueMessage));
		m->seq = c.seq;
		m->txid = c.txid;
		m->message_id = DatumGetCString(DirectFunctionCall1(uuid_out,
															slot_getattr(slot, cols->message_id, &isnull)));
		m->body = TextDatumGetCString(slot_getattr(slot, cols->body, &isnull));
		d = slot_getattr(slot, cols->schema_version, &isnull);
		m->schema_version = isnull ? -1 : DatumGetInt32(d);
		MemoryContextSwitchTo(old);
	}
	index_endscan(scan);
}

/* Position keys at (txid, after seq): equal txid, greater seq. */
static int
keys_at(ScanKeyData *keys, uint64 txid, int64 seq)
{
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_XID8EQ, xid8_datum(txid));
	ScanKeyInit(&keys[1], 2, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(seq));
	return 2;
}

/* The transactions running when snapshot was taken (its xip), ascending. */
static uint64 *
running_in(Datum snapshot, int *count)
{
	char	   *text = DatumGetCString(DirectFunctionCall1(pg_snapshot_out, snapshot));
	char	   *list = strrchr(text, ':') + 1;
	uint64	   *xids = palloc(sizeof(uint64) * (strlen(list) / 2 + 1));
	int			n = 0;

	/* the output is "xmin:xmax:xip,xip,...", the list in ascending order */
	for (char *p = list; *p;)
	{
		char	   *end;

		xids[n++] = strtou64(p, &end, 10);
		if (*end != ',')
			break;
		p = end + 1;
	}
	*count = n;
	return xids;
}

/*
 * The events of range after from (exclusive; from its start without one)
 * up to upto, oldest first, at most limit, allocated in result_context;
 * read with the current snapshot, which must be at least as new as
 * range->hi.  Those of transactions running at lo (its xip) are looked up
 * by txid, the rest from lo's xmax on: never from lo's xmin, which a
 * transaction left open for hours would hold back.
 */
static QueueMessage *
read_range(const Batch *range, bool has_from, Cursor from, Cursor upto, int limit,
		   MemoryContext result_context, int *count)
{
	Oid			nsp = get_namespace_oid("payment", false);
	Cursor		start = {0, 0};
	uint64	   *running = NULL;
	int			nrunning = 0;
	Found		found;

	if (range->has_lo)
	{
		start.txid = xid8_value(DirectFunctionCall1(pg_snapshot_xmax, range->lo));
		running = running_in(range->lo, &nrunning);
	}
	if (has_from && cursor_cmp(from, start) > 0)
		start = from;
	found.context = result_context;
	found.count = 0;
	found.size = 16;
	found.items = MemoryContextAlloc(result_context, sizeof(QueueMessage) * found.size);

	for (int gen = 0; gen < GENERATIONS; gen++)
	{
		Relation	heap = table_open(get_relname_relid(psprintf("queue_events_%d", gen), nsp),
									  AccessShareLock);
		Relation	index = index_open(get_relname_relid(psprintf("queue_events_%d_txid_seq_idx", gen), nsp),
									   AccessShareLock);
		TupleTableSlot *slot = table_slot_create(heap, NULL);
		TupleDesc	desc = RelationGetDescr(heap);
		EventColumns cols = {SPI_fnumber(desc, "seq"), SPI_fnumber(desc, "txid"),
		SPI_fnumber(desc, "message_id"), SPI_fnumber(desc, "body"),
		SPI_fnumber(desc, "schema_version")};
		ScanKeyData keys[2];
		int			part_start = found.count;

		/*
		 * Each part yields its first limit events in order, so the first
		 * limit of all of them are among those.  From lo's xmax (or from)
		 * on: the rest of start's txid, then the greater ones.
		 */
		collect(heap, index, slot, &cols, keys, keys_at(keys, start.txid, start.seq),
				range, upto, limit, &found);
		ScanKeyInit(&keys[0], 1, BTGreaterStrategyNumber, F_XID8GT, xid8_datum(start.txid));
		collect(heap, index, slot, &cols, keys, 1, range, upto,
				limit - (found.count - part_start), &found);

		/* the transactions running at lo, which may have committed since */
		part_start = found.count;
		for (int i = 0; i < nrunning && found.count - part_start < limit; i++)
		{
			int64		after_seq = 0;

			if (has_from && running[i] < from.txid)
				continue;
			if (has_from && running[i] == from.txid)
				after_seq = from.seq;
			collect(heap, index, slot, &cols, keys, keys_at(keys, running[i], after_seq),
					range, upto, limit - (found.count - part_start), &found);
		}
		ExecDropSingleTupleTableSlot(slot);
		index_close(index, AccessShareLock);
		table_close(heap, AccessShareLock);
	}
	qsort(found.items, found.count, sizeof(QueueMessage), compare_messages);
	*count = Min(found.count, limit);
	return found.items;
}

/* Mark the messages read as those of batch b's claim at step. */
static void
assign_batch(QueueMessage *messages, int count, const Batch *b, int step, int attempt)
{
	for (int i = 0; i < count; i++)
	{
		messages[i].receive_count = attempt;
		messages[i].batch_id = b->batch_id;
		messages[i].batch_gen = b->gen;
		messages[i].batch_step = step;
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
 * oldest first; advances open_from past the done ones.  *next_expiry gets
 * the earliest claim still running.
 */
static Batch *
find_expired(int *nexpired, TimestampTz *next_expiry)
{
	int			count;
	Batch	   *batches = batches_from(open_from, &count);
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
				open_from = b->batch_id + 1;
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

	have_latest = latest_batch(&latest, &latest_open_from);
	if (have_latest && open_from < latest_open_from)
		open_from = latest_open_from;

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
			*messages = read_range(b, b->has_after, b->after, b->last, INT_MAX,
								   result_context, &count);
			assign_batch(*messages, count, b, b->step + 1, attempt);
			if (count > 0)
				return count;
			/* its events are gone (deleted by hand): it is done */
			append_batch_row(b, "done", b->step + 2, attempt, GetCurrentTimestamp());
		}
	}

	memset(&cut, 0, sizeof(cut));
	cut.gen = current_generation();
	cut.batch_id = have_latest ? latest.batch_id + 1 : 1;
	count = 0;

	/* the rest of the newest range, if its last chunk was full */
	if (have_latest && latest.more)
	{
		Cursor		upto = {xid8_value(DirectFunctionCall1(pg_snapshot_xmax, latest.hi)), 0};

		*messages = read_range(&latest, true, latest.last, upto, max_messages,
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
		*messages = read_range(&cut, false, cut.after, upto, max_messages,
							   result_context, &count);
	}
	if (count == 0)
		return 0;

	cut.last.txid = (*messages)[count - 1].txid;
	cut.last.seq = (*messages)[count - 1].seq;
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

		if (m->batch_id == 0)
			continue;
		if (m->outcome == STORE_RETRY)
		{
			/* the few messages to retry later get a row of their own */
			Datum		values[4] = {xid8_datum(m->txid), Int64GetDatum(m->seq),
			Int32GetDatum(m->retry_delay), Int32GetDatum(m->receive_count)};

			if (retry_plan == NULL)
				payment_prepare(&retry_plan,
								psprintf("INSERT INTO payment.queue_retry"
										 " (seq, message_id, payment_id, user_id, body, enqueued_at,"
										 "  visible_at, receive_count, schema_version)"
										 " OVERRIDING SYSTEM VALUE"
										 " SELECT seq, message_id, payment_id, user_id, body, enqueued_at,"
										 "        clock_timestamp() + make_interval(secs => $3), $4,"
										 "        schema_version"
										 "   FROM (%s) e LIMIT 1",
										 for_each_generation("SELECT * FROM payment.queue_events_#"
															 " WHERE txid = $1 AND seq = $2",
															 " UNION ALL ")),
								4, (Oid[]) {XID8OID, INT8OID, INT4OID, INT4OID});
			if (SPI_execute_plan(retry_plan, values, NULL, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "moving a retried message failed");
		}
		if (m->batch_id != settled_batch)
		{
			Batch		b;

			memset(&b, 0, sizeof(b));
			b.batch_id = m->batch_id;
			b.gen = m->batch_gen;
			append_batch_row(&b, "done", m->batch_step + 1, m->receive_count,
							 GetCurrentTimestamp());
			settled_batch = m->batch_id;
		}
	}
}

void
event_log_release(QueueMessage *messages, int count)
{
	int64		released_batch = 0;

	for (int i = 0; i < count; i++)
	{
		QueueMessage *m = &messages[i];
		Batch		b;
		int			found;
		Batch	   *now;

		if (m->batch_id == 0 || m->batch_id == released_batch)
			continue;
		released_batch = m->batch_id;
		now = batches_from(m->batch_id, &found);
		if (found == 0 || now[0].batch_id != m->batch_id || now[0].done)
			continue;
		b = now[0];
		append_batch_row(&b, "released", b.step + 1, Max(b.attempt - 1, 0),
						 GetCurrentTimestamp());
	}
}

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

static Oid	unsettled_types[6] = {PG_SNAPSHOTOID, PG_SNAPSHOTOID, XID8OID, INT8OID, XID8OID, UUIDOID};

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
 * open_from on (the first not done among them), for a closer look.
 */
static Batch *
settled_position(Position *pos, int *count)
{
	Batch		latest;
	int64		latest_open_from = 0;
	bool		have_latest = latest_batch(&latest, &latest_open_from);
	Batch	   *batches;

	memset(pos, 0, sizeof(Position));
	if (!have_latest)
	{
		*count = 0;
		return NULL;
	}
	pos->latest_id = latest.batch_id;
	if (open_from < latest_open_from)
		open_from = latest_open_from;
	batches = batches_from(open_from, count);
	for (int i = 0; i < *count; i++)
	{
		Batch	   *b = &batches[i];

		if (b->done)
			continue;
		open_from = b->batch_id;
		pos->has_lo = b->has_lo;
		pos->lo = b->lo;
		pos->has_hi = b->has_after;
		pos->hi = b->hi;
		pos->cursor = b->after;
		return batches;
	}
	open_from = latest.batch_id + 1;
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
						generation_sql("SELECT EXISTS (SELECT FROM payment.queue_events_#)"
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
						generation_sql("SELECT coalesce(max(batch_id), 0) FROM payment.queue_batches_#", gen),
						0, NULL);
	if (SPI_execute_plan(batches_plans[gen], NULL, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "checking the batch log failed");
	newest = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (newest >= first_open)
		return false;

	if (events_plans[gen] == NULL)
		payment_prepare(&events_plans[gen],
						psprintf("SELECT EXISTS (%s)", generation_sql(UNSETTLED_EVENTS(""), gen)),
						5, unsettled_types);
	position_values(pos, values, nulls);
	if (query_bool(events_plans[gen], values, nulls))
		return false;

	/* the next cut starts where the newest batch ends: carry it over */
	if (newest == pos->latest_id)
	{
		Datum		id = Int64GetDatum(newest);
		int			to = current_generation();

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
	int			current = current_generation();

	(void) settled_position(&pos, &count);
	if (pos.latest_id == 0)
		return;
	for (int gen = 0; gen < GENERATIONS; gen++)
	{
		if (gen == current || !generation_settled(gen, &pos, open_from))
			continue;
		if (SPI_execute(generation_sql("TRUNCATE payment.queue_events_#, payment.queue_batches_#", gen),
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
 * with 1.0's columns: those of the event tables, their receive count and
 * visibility their batch's; then those waiting for a retry.
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

	if (event_plans[all] == NULL)
		payment_prepare(&event_plans[all],
						psprintf("SELECT * FROM (%s) e ORDER BY seq",
								 for_each_generation(all ? UNSETTLED_EVENTS("") :
													 UNSETTLED_EVENTS("AND payment_id = $6"),
													 " UNION ALL ")),
						all ? 5 : 6, unsettled_types);
	position_values(&pos, params, nulls);
	params[5] = payment_id;
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

		c.seq = DatumGetInt64(SPI_getbinval(row, rowdesc, 1, &isnull[0]));
		c.txid = xid8_value(SPI_getbinval(row, rowdesc, 8, &isnull[0]));
		for (int b = 0; b < nbatches && batch == NULL; b++)
			if (covers(&batches[b], c))
				batch = &batches[b];
		if (batch != NULL && batch->done)
			continue;
		/* seq, message_id, payment_id, user_id, body, enqueued_at */
		for (int col = 0; col < 6; col++)
			values[col] = SPI_getbinval(row, rowdesc, col + 1, &isnull[col]);
		values[6] = batch ? TimestampTzGetDatum(batch->visible_at) : values[5];
		isnull[6] = false;
		values[7] = Int32GetDatum(batch ? batch->attempt : 0);
		isnull[7] = false;
		values[8] = SPI_getbinval(row, rowdesc, 7, &isnull[8]);
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
