/*-------------------------------------------------------------------------
 * worker_faults.c
 *	  What a payment worker makes of its failures: one line per fault, not
 *	  one per attempt (a WARNING when it starts, a LOG when the worker
 *	  stores again), and attempts that back off exponentially meanwhile;
 *	  and which failures are the database's rather than a message's.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "common/backoff.h"
#include "drain/worker_faults.h"
#include "payment.h"

#define FIRST_BACKOFF_MS 100
#define MAX_BACKOFF_MS 30000

/* failed attempts since the worker last stored, and the fault logged */
static int	failures = 0;
static char *last_error = NULL;
static int	last_error_code = 0;

/*
 * Errors of the database rather than of a message: read-only (a
 * default_transaction_read_only, a server in recovery), a lock timeout, a
 * cancel, the server shutting down or crashing (a failover), a connection
 * refused or lost, resources or the system failing.  Storing message by
 * message would only fail each message in turn and count the failure
 * against it, so that a long fault would dead-letter the whole backlog as
 * max_receives: the batch is given back uncounted instead.  Other transient
 * errors (serialization failure, deadlock, ...) may follow one message,
 * and stay counted against it.
 */
bool
worker_fault_is_database(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_CONNECTION_EXCEPTION:	/* 08: refused, lost */
		case ERRCODE_INSUFFICIENT_RESOURCES:	/* 53: disk full, out of memory */
		case ERRCODE_OPERATOR_INTERVENTION: /* 57: cancel, shutdown, crash */
		case ERRCODE_SYSTEM_ERROR:	/* 58: I/O */
			return true;
		default:
			return sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
				sqlerrcode == ERRCODE_READ_ONLY_SQL_TRANSACTION;
	}
}

long
worker_fault(ErrorData *edata)
{
	/*
	 * One fault, one line: the same SQLSTATE is the same fault, as a
	 * read-only server refusing a claim's UPDATE or its INSERT; internal
	 * errors are told apart by their text.
	 */
	if (last_error == NULL || edata->sqlerrcode != last_error_code ||
		(edata->sqlerrcode == ERRCODE_INTERNAL_ERROR &&
		 strcmp(last_error, edata->message) != 0))
	{
		edata->elevel = WARNING;
		edata->hide_stmt = true;
		ThrowErrorData(edata);
		if (last_error)
			pfree(last_error);
		last_error = MemoryContextStrdup(TopMemoryContext, edata->message);
		last_error_code = edata->sqlerrcode;
	}
	failures++;
	return (long) backoff_delay(failures, FIRST_BACKOFF_MS, MAX_BACKOFF_MS);
}

/*
 * Only a turn that stored messages shows the fault is gone: a claim that
 * found nothing (the failed batches wait for their retry) proves nothing
 * about the store.
 */
void
worker_fault_cleared(void)
{
	if (failures > 0)
		ereport(LOG, (errmsg("payment worker %d recovered after %d failed attempts",
							 payment_worker_index + 1, failures)));
	failures = 0;
	/* a later repeat of the same error is news again */
	last_error_code = 0;
	if (last_error != NULL)
	{
		pfree(last_error);
		last_error = NULL;
	}
}
