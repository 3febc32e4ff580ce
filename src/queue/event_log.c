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
 *
 *	  This file: the generations, the setting, appending events.
 *	  event_batches.c: the batch log, claiming and settling.
 *	  event_range.c: reading a range of events.  event_upkeep.c: what is
 *	  settled, emptying generations, listing the unsettled messages.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/uuid.h"

#include "payment.h"
#include "queue/event_internal.h"
#include "queue/event_log.h"

PG_FUNCTION_INFO_V1(payment_restamp_event);

int			queue_rotate_after = 10;

/* the lowest batch this process knows may not be done yet */
int64		event_open_from = 0;

void
event_log_define_settings(void)
{
	DefineCustomIntVariable("payment.queue_rotate_after",
							"Seconds each generation of the embedded queue's event tables is written.",
							"A generation is emptied by TRUNCATE once all its messages are settled.",
							&queue_rotate_after, 10, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
}

int
event_generation_now(void)
{
	int64		seconds = GetCurrentStatementStartTimestamp() / USECS_PER_SEC;

	return (int) ((seconds / queue_rotate_after) % GENERATIONS);
}

/* fmt with '#' standing for the generation's number */
char *
event_generation_sql(const char *fmt, int gen)
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
char *
event_for_each_generation(const char *fmt, const char *glue)
{
	StringInfoData sql;

	initStringInfo(&sql);
	for (int g = 0; g < GENERATIONS; g++)
	{
		if (g > 0)
			appendStringInfoString(&sql, glue);
		appendStringInfoString(&sql, event_generation_sql(fmt, g));
	}
	return sql.data;
}

/* ---- appending ---- */

/* Many messages in one statement (submit_payments): one executor run, not one each. */
static void
append_many(const QueuedPayment *payments, int count, char **message_ids,
			MemoryContext caller, int gen)
{
	static SPIPlanPtr plans[GENERATIONS];
	Datum	   *columns[3];
	bool	   *nulls[3];
	Datum		values[3];
	pg_uuid_t  *ids = palloc(sizeof(pg_uuid_t) * count);

	if (plans[gen] == NULL)
		payment_prepare(&plans[gen], event_generation_sql(
						"INSERT INTO payment.queue_events_# (body, schema_version, message_id)"
						" SELECT * FROM unnest($1, $2, $3)"
						" RETURNING message_id::text", gen), 3,
						(Oid[]) {TEXTARRAYOID, INT4ARRAYOID, UUIDARRAYOID});
	payment_random_uuids(ids, count);
	for (int i = 0; i < count; i++)
		if (payments[i].message_id != NULL)
			ids[i] = *DatumGetUUIDP(DirectFunctionCall1(uuid_in,
														CStringGetDatum(payments[i].message_id)));
	for (int c = 0; c < 3; c++)
	{
		columns[c] = palloc(sizeof(Datum) * count);
		nulls[c] = palloc0(sizeof(bool) * count);
	}
	for (int i = 0; i < count; i++)
	{
		const QueuedPayment *p = &payments[i];

		columns[0][i] = CStringGetTextDatum(p->body);
		columns[1][i] = Int32GetDatum(p->schema_version);
		nulls[1][i] = p->schema_version < 0;
		columns[2][i] = UUIDPGetDatum(&ids[i]);
	}
	values[0] = payment_array(columns[0], nulls[0], count, TEXTOID);
	values[1] = payment_array(columns[1], nulls[1], count, INT4OID);
	values[2] = payment_array(columns[2], nulls[2], count, UUIDOID);
	/* rows are inserted, and returned, in the order unnest gives them */
	if (SPI_execute_plan(plans[gen], values, NULL, false, 0) != SPI_OK_INSERT_RETURNING ||
		SPI_processed != (uint64) count)
		elog(ERROR, "appending to the event table failed");
	for (int i = 0; i < count; i++)
		message_ids[i] = MemoryContextStrdup(caller,
											 SPI_getvalue(SPI_tuptable->vals[i],
														  SPI_tuptable->tupdesc, 1));
}

/*
 * One message, written without the executor.  Through SPI, most of a
 * submit's own time went to the plan cache, executor start-up and the
 * RETURNING projection around one heap insert; here the row gets what the
 * table's defaults would give it, then its index entries.  The restamp
 * trigger is not fired: it only concerns restored rows, whose txid is not
 * the current transaction's.  The caller is the extension's own code (the
 * submitting function runs as the extension's owner), so there is no
 * privilege to check.  Every column is filled here: one added to the event
 * tables without a value below stops the insert (a bug, not a user error).
 */
static void
append_one(const QueuedPayment *p, const pg_uuid_t *message_id, TimestampTz enqueued_at, int gen)
{
	Oid			nsp = get_namespace_oid("payment", false);
	Relation	rel = table_open(get_relname_relid(event_generation_sql("queue_events_#", gen), nsp),
								 RowExclusiveLock);
	TupleDesc	desc = RelationGetDescr(rel);
	TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);
	EState	   *estate = CreateExecutorState();
	ResultRelInfo *info = makeNode(ResultRelInfo);

	ExecClearTuple(slot);
	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);
		const char *name = NameStr(att->attname);
		Datum	   *value = &slot->tts_values[a];

		slot->tts_isnull[a] = false;
		if (att->attisdropped)
			slot->tts_isnull[a] = true;
		else if (strcmp(name, "seq") == 0)
			*value = Int64GetDatum(nextval_internal(get_relname_relid("queue_seq_seq", nsp),
													false));
		else if (strcmp(name, "txid") == 0)
			*value = FullTransactionIdGetDatum(GetTopFullTransactionId());
		else if (strcmp(name, "message_id") == 0)
			*value = UUIDPGetDatum(message_id);
		else if (strcmp(name, "body") == 0)
			*value = CStringGetTextDatum(p->body);
		else if (strcmp(name, "enqueued_at") == 0)
			*value = TimestampTzGetDatum(enqueued_at);
		else if (strcmp(name, "schema_version") == 0)
		{
			*value = Int32GetDatum(p->schema_version);
			slot->tts_isnull[a] = p->schema_version < 0;
		}
		else
			elog(ERROR, "%s has a column the queue does not fill: %s",
				 RelationGetRelationName(rel), name);
	}
	ExecStoreVirtualTuple(slot);

	InitResultRelInfo(info, rel, 1, NULL, 0);
	ExecOpenIndices(info, false);
	table_tuple_insert(rel, slot, GetCurrentCommandId(true), 0, NULL);
	list_free(ExecInsertIndexTuples(info, slot, estate, false, false, NULL, NIL));
	ExecCloseIndices(info);
	FreeExecutorState(estate);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
	/* later commands of the transaction (payment_status) see the row */
	CommandCounterIncrement();
}

void
event_log_append(const QueuedPayment *payments, int count, char **message_ids,
				 MemoryContext caller, const char *message_id, Datum enqueued_at)
{
	int			gen = event_generation_now();

	if (count > 1 && message_id == NULL && enqueued_at == (Datum) 0)
	{
		append_many(payments, count, message_ids, caller, gen);
		return;
	}
	for (int i = 0; i < count; i++)
	{
		pg_uuid_t	id;
		const char *given = message_id ? message_id : payments[i].message_id;

		if (given)
			id = *DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(given)));
		else
			payment_random_uuids(&id, 1);
		append_one(&payments[i], &id,
				   enqueued_at ? DatumGetTimestampTz(enqueued_at) : GetCurrentTimestamp(), gen);
		message_ids[i] = MemoryContextStrdup(caller,
											 DatumGetCString(DirectFunctionCall1(uuid_out,
																				 UUIDPGetDatum(&id))));
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

