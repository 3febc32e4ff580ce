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

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
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

/* Many messages in one statement (submit_payments, a redrive): one executor run, not one each. */
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

	/*
	 * The message ids as gen_random_uuid() makes them (version 4), from one
	 * call to the random source instead of one per row.
	 */
	if (!pg_strong_random(ids, sizeof(pg_uuid_t) * count))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random values")));
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
		ids[i].data[6] = (ids[i].data[6] & 0x0f) | 0x40;	/* version 4 */
		ids[i].data[8] = (ids[i].data[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
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

void
event_log_append(const QueuedPayment *payments, int count, char **message_ids,
				 MemoryContext caller, const char *message_id, Datum enqueued_at)
{
	static SPIPlanPtr plans[GENERATIONS];
	int			gen = event_generation_now();

	if (count > 1 && message_id == NULL && enqueued_at == (Datum) 0)
	{
		append_many(payments, count, message_ids, caller, gen);
		return;
	}
	if (plans[gen] == NULL)
		payment_prepare(&plans[gen], event_generation_sql(
						   "INSERT INTO payment.queue_events_#"
						   " (body, schema_version, message_id, enqueued_at)"
						   " VALUES ($1, $2, coalesce($3, gen_random_uuid()),"
						   "         coalesce($4, clock_timestamp()))"
						   " RETURNING message_id::text", gen), 4,
						   (Oid[]) {TEXTOID, INT4OID, UUIDOID, TIMESTAMPTZOID});
	for (int i = 0; i < count; i++)
	{
		const QueuedPayment *p = &payments[i];
		Datum		values[4];
		char		nulls[4] = {' ', ' ', ' ', ' '};
		int			rc;

		values[0] = CStringGetTextDatum(p->body);
		values[1] = Int32GetDatum(p->schema_version);
		values[2] = message_id ? DirectFunctionCall1(uuid_in, CStringGetDatum(message_id)) : (Datum) 0;
		values[3] = enqueued_at;
		if (p->schema_version < 0)
			nulls[1] = 'n';
		if (message_id == NULL)
			nulls[2] = 'n';
		if (enqueued_at == (Datum) 0)
			nulls[3] = 'n';
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

