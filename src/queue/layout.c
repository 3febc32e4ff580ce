/*-------------------------------------------------------------------------
 * layout.c
 *	  Which tables the extension's version made in this database: 1.0's
 *	  (everything queued in the table payment.queue, no schema versions) or
 *	  1.1's (event tables behind the view payment.queue, schema versions,
 *	  payment.retired_queues) or 1.2's (the key record,
 *	  payment.idempotency_keys, and who sent each payment).  The one place that looks at the catalog for
 *	  it; every layer asks queue_layout().
 *
 *	  The answer is kept per process (a process serves one database) until
 *	  a relcache invalidation of a relation it was read from, or of any
 *	  relation while one of them is missing: ALTER EXTENSION payment UPDATE
 *	  creates, renames and alters them, so a worker serving a 1.0 database
 *	  turns to the 1.1 tables at the update's commit.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"

#include "queue/layout.h"

/* the relations the layout is read from */
typedef enum LayoutRelation
{
	REL_QUEUE,					/* payment.queue: table (1.0) or view (1.1) */
	REL_EVENTS,					/* payment.queue_events_0 */
	REL_KEYS,					/* payment.idempotency_keys (1.2) */
	REL_RETIRED,				/* payment.retired_queues */
	NUM_LAYOUT_RELATIONS
} LayoutRelation;

static QueueLayout layout;
static bool layout_valid = false;
static bool callback_registered = false;
/* each relation's oid when the layout was read; InvalidOid: it was missing */
static Oid	read_from[NUM_LAYOUT_RELATIONS];

static void
layout_invalidated(Datum arg, Oid relid)
{
	if (!layout_valid)
		return;
	for (int i = 0; i < NUM_LAYOUT_RELATIONS; i++)
		if (relid == InvalidOid || read_from[i] == relid || read_from[i] == InvalidOid)
		{
			layout_valid = false;
			return;
		}
}

static void
read_layout(void)
{
	Oid			nsp = get_namespace_oid("payment", true);
	const char *names[NUM_LAYOUT_RELATIONS] = {"queue", "queue_events_0", "idempotency_keys", "retired_queues"};

	/* an invalidation while reading finds every relation missing: read again */
	for (int i = 0; i < NUM_LAYOUT_RELATIONS; i++)
		read_from[i] = InvalidOid;
	layout_valid = true;
	for (int i = 0; i < NUM_LAYOUT_RELATIONS; i++)
		read_from[i] = OidIsValid(nsp) ? get_relname_relid(names[i], nsp) : InvalidOid;

	/*
	 * Each part on its own: a database made by an early build of 1.1 has
	 * schema_version on its payment.queue table but no event tables, and is
	 * served with the one table.
	 */
	layout.schema_versions = OidIsValid(read_from[REL_QUEUE]) &&
		get_attnum(read_from[REL_QUEUE], "schema_version") != InvalidAttrNumber;
	layout.event_tables = OidIsValid(read_from[REL_EVENTS]);
	layout.retired_queues = OidIsValid(read_from[REL_RETIRED]);
	layout.idempotency_keys = OidIsValid(read_from[REL_KEYS]);
}

const QueueLayout *
queue_layout(void)
{
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(layout_invalidated, (Datum) 0);
		callback_registered = true;
	}
	while (!layout_valid)
		read_layout();
	return &layout;
}
