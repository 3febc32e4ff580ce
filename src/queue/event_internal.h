/*-------------------------------------------------------------------------
 * event_internal.h
 *	  What the files of the embedded queue's event log (event_log.c,
 *	  event_batches.c, event_range.c, event_upkeep.c) share: the
 *	  generations of tables, a position in a range, a batch as the batch log
 *	  records it.  Not for use outside them.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_EVENT_INTERNAL_H
#define PAYMENT_EVENT_INTERNAL_H

#include "access/transam.h"
#include "fmgr.h"
#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "queue/backend.h"

/* payment.queue_events_N and payment.queue_batches_N, N from 0 */
#define GENERATIONS 3

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
extern int64 event_open_from;

/* event_log.c: the generation written now, and SQL per generation ('#': its number) */
extern int	event_generation_now(void);
extern char *event_generation_sql(const char *fmt, int gen);
extern char *event_for_each_generation(const char *fmt, const char *glue);

/* event_batches.c: the batch log (caller's SPI connection) */
extern bool event_latest_batch(Batch *b, int64 *its_open_from);
extern Batch *event_batches_from(int64 from, int *count);

/* event_range.c: the events of a range, oldest first, at most limit */
extern QueueMessage *event_read_range(const Batch *range, bool has_from, Cursor from,
									  Cursor upto, int limit, MemoryContext result_context,
									  int *count);

static inline uint64
xid8_value(Datum d)
{
	return U64FromFullTransactionId(DatumGetFullTransactionId(d));
}

static inline Datum
xid8_datum(uint64 value)
{
	return FullTransactionIdGetDatum(FullTransactionIdFromU64(value));
}

/* whether txid committed before snapshot was taken (PostgreSQL's own test) */
static inline bool
visible_in(uint64 txid, Datum snapshot)
{
	return DatumGetBool(DirectFunctionCall2(pg_visible_in_snapshot,
											xid8_datum(txid), snapshot));
}

static inline int
cursor_cmp(Cursor a, Cursor b)
{
	if (a.txid != b.txid)
		return a.txid < b.txid ? -1 : 1;
	if (a.seq != b.seq)
		return a.seq < b.seq ? -1 : 1;
	return 0;
}

#endif							/* PAYMENT_EVENT_INTERNAL_H */
