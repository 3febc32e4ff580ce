/*-------------------------------------------------------------------------
 * retired_queue.c
 *	  The replaced SQS queue the workers still drain, kept in the table
 *	  payment.retired_queues as well as in shared memory (pool.c), so that a
 *	  restart goes on draining it.
 *
 *	  The workers alone write the table: each worker that reloads a changed
 *	  payment.queue_url records the old URL (idempotent), the worker that
 *	  finds that queue empty removes it, and a starting worker puts the
 *	  latest one back into shared memory.  A database whose extension is
 *	  still at 1.0 has no such table; there the URL lives in shared memory
 *	  only, as it did.  These statements run on a reload, at start and once
 *	  per replaced queue, so they are not kept as prepared plans.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "drain/pool.h"
#include "drain/retired_queue.h"
#include "queue/queue.h"

/*
 * Run sql with $1 = url in a transaction of its own; returns the first
 * column of its first row, if any.  A failure is a warning: the URL is
 * still in shared memory, only a restart would forget it.
 */
static char *
run(const char *sql, const char *url)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *result = NULL;

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (queue_layout()->retired_queues)
		{
			Oid			argtypes[1] = {TEXTOID};
			Datum		values[1] = {CStringGetTextDatum(url)};

			if (SPI_execute_with_args(sql, 1, argtypes, values, NULL, false, 1) >= 0 &&
				SPI_processed > 0 && SPI_tuptable != NULL)
			{
				char	   *v = SPI_getvalue(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1);

				if (v != NULL)
					result = MemoryContextStrdup(caller, v);
			}
		}
		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("payment worker could not keep the replaced SQS queue in payment.retired_queues"),
				 errdetail_internal("%s", edata->message),
				 errhint("The queue is still drained, but a restart before it is empty forgets it.")));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	/* commit leaves TopMemoryContext current */
	MemoryContextSwitchTo(caller);
	return result;
}

void
retired_queue_record(const char *url)
{
	(void) run("INSERT INTO payment.retired_queues (queue_url) VALUES ($1) "
			   "ON CONFLICT (queue_url) DO UPDATE SET retired_at = now()", url);
}

void
retired_queue_forget(const char *url)
{
	(void) run("DELETE FROM payment.retired_queues WHERE queue_url = $1", url);
}

void
retired_queue_load(void)
{
	const char *setting = GetConfigOption("payment.queue_url", true, false);
	char	   *url;

	if (pool_retired_queue_url() != NULL)
		return;
	url = run("SELECT queue_url FROM payment.retired_queues WHERE queue_url <> $1 "
			  "ORDER BY retired_at DESC LIMIT 1", setting ? setting : "");
	if (url != NULL)
	{
		pool_retire_queue_url(url);
		ereport(LOG,
				(errmsg("payment worker drains the replaced SQS queue %s", url),
				 errdetail("It was recorded in payment.retired_queues before the restart.")));
	}
}
