/*-------------------------------------------------------------------------
 * event_range.c
 *	  Reading a range of the embedded queue's events (see event_log.c)
 *	  through the (txid, seq) index of each event table.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "queue/event_internal.h"
#include "queue/event_log.h"

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
	AttrNumber	enqueued_at;
} EventColumns;

static int
compare_messages(const void *a, const void *b)
{
	const EmbeddedHandle *x = EMBEDDED_HANDLE((const QueueMessage *) a);
	const EmbeddedHandle *y = EMBEDDED_HANDLE((const QueueMessage *) b);
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
		EmbeddedHandle *h;
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
		/* one each: the array grows while read, and is sorted after */
		h = palloc0(sizeof(EmbeddedHandle));
		h->seq = c.seq;
		h->txid = c.txid;
		m->handle = h;
		m->message_id = DatumGetCString(DirectFunctionCall1(uuid_out,
															slot_getattr(slot, cols->message_id, &isnull)));
		m->body = TextDatumGetCString(slot_getattr(slot, cols->body, &isnull));
		d = slot_getattr(slot, cols->schema_version, &isnull);
		m->schema_version = isnull ? -1 : DatumGetInt32(d);
		d = slot_getattr(slot, cols->enqueued_at, &isnull);
		m->enqueued_at = isnull ? 0 : DatumGetTimestampTz(d);
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
QueueMessage *
event_read_range(const Batch *range, bool has_from, Cursor from, Cursor upto, int limit,
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
		SPI_fnumber(desc, "schema_version"), SPI_fnumber(desc, "enqueued_at")};
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

