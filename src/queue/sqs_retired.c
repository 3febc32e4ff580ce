/*-------------------------------------------------------------------------
 * sqs_retired.c
 *	  The replaced SQS queue: when payment.queue_url changes, the queue it
 *	  named may still hold messages, and the workers drain it, as SQS is
 *	  drained, until a receive finds it empty (sqs_retired_queue, a
 *	  leftover in queue.h's terms).  Owns what is known of it: its URL in
 *	  shared memory, and the table payment.retired_queues, so that a
 *	  restart goes on draining it.
 *
 *	  The workers alone write the table: each worker that reloads a changed
 *	  payment.queue_url records the old URL (idempotent), the worker that
 *	  finds that queue empty removes it, and a starting worker puts the
 *	  latest one back into shared memory.  A database whose extension is
 *	  still at 1.0 has no such table; there the URL lives in shared memory
 *	  only.  These statements run on a reload, at start and once per
 *	  replaced queue, so they are not kept as prepared plans.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "payment.h"
#include "queue/layout.h"
#include "queue/sqs.h"
#include "queue/sqs_client.h"
#include "queue/sqs_retired.h"

/* SQS queue URLs are far shorter; a longer one is not drained */
#define RETIRED_URL_LEN 1024

typedef struct RetiredQueue
{
	slock_t		lock;
	char		url[RETIRED_URL_LEN];	/* "" when there is none */
} RetiredQueue;

static RetiredQueue *retired = NULL;

/* payment.queue_url before the configuration file was read again */
static char *url_before_reload = NULL;

static void
retired_shmem_attach(void *shared, bool first)
{
	retired = shared;
	if (!first)
		return;
	SpinLockInit(&retired->lock);
	retired->url[0] = '\0';
}

const PaymentShmem sqs_retired_shmem = {
	"payment retired queue", sizeof(RetiredQueue), retired_shmem_attach
};

/* ------------------------------------------------------------------ */
/* the URL in shared memory */

static void
remember(const char *url)
{
	if (retired == NULL || url == NULL || url[0] == '\0' || strlen(url) >= RETIRED_URL_LEN)
		return;
	SpinLockAcquire(&retired->lock);
	strlcpy(retired->url, url, RETIRED_URL_LEN);
	SpinLockRelease(&retired->lock);
}

/* the replaced queue's URL (palloc'd), or NULL */
static char *
remembered(void)
{
	char		url[RETIRED_URL_LEN];

	if (retired == NULL)
		return NULL;
	SpinLockAcquire(&retired->lock);
	strlcpy(url, retired->url, RETIRED_URL_LEN);
	SpinLockRelease(&retired->lock);
	return url[0] != '\0' ? pstrdup(url) : NULL;
}

static void
forget_remembered(const char *url)
{
	if (retired == NULL)
		return;
	SpinLockAcquire(&retired->lock);
	if (strcmp(retired->url, url) == 0)
		retired->url[0] = '\0';
	SpinLockRelease(&retired->lock);
}

/* ------------------------------------------------------------------ */
/* payment.retired_queues */

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

/* url is to be drained, across restarts */
static void
retire(const char *url)
{
	remember(url);
	(void) run("INSERT INTO payment.retired_queues (queue_url) VALUES ($1) "
			   "ON CONFLICT (queue_url) DO UPDATE SET retired_at = now()", url);
}

/* url is empty, or in use again: no longer drained */
static void
forget(const char *url)
{
	forget_remembered(url);
	(void) run("DELETE FROM payment.retired_queues WHERE queue_url = $1", url);
}

/* ------------------------------------------------------------------ */
/* the backend's hooks */

/* At a worker's start in its database: the recorded queue, back into shared memory. */
static void
retired_start(void)
{
	char	   *url;

	if (remembered() != NULL)
		return;
	url = run("SELECT queue_url FROM payment.retired_queues WHERE queue_url <> $1 "
			  "ORDER BY retired_at DESC LIMIT 1", payment_queue_url);
	if (url != NULL)
	{
		remember(url);
		ereport(LOG,
				(errmsg("payment worker drains the replaced SQS queue %s", url),
				 errdetail("It was recorded in payment.retired_queues before the restart.")));
	}
}

static void
retired_before_reload(void)
{
	if (url_before_reload != NULL)
		pfree(url_before_reload);
	url_before_reload = MemoryContextStrdup(TopMemoryContext, payment_queue_url);
}

/* A changed payment.queue_url: the old queue is drained, the new one no longer is. */
static bool
retired_after_reload(void)
{
	const char *old_url = url_before_reload ? url_before_reload : "";

	if (strcmp(old_url, payment_queue_url) == 0)
		return false;
	if (old_url[0] != '\0')
		retire(old_url);
	if (payment_queue_url[0] != '\0')
		forget(payment_queue_url);
	return true;
}

/* a replaced queue is remembered: it may still hold messages */
static bool
retired_has_leftover(bool in_use)
{
	bool		some;

	if (retired == NULL)
		return false;
	SpinLockAcquire(&retired->lock);
	some = retired->url[0] != '\0';
	SpinLockRelease(&retired->lock);
	return some;
}

/*
 * A receive from the replaced queue, as from the configured one.  One that
 * finds it empty forgets it; the leftovers are then looked at no sooner
 * than the caller's idle cap, rather than at once as an empty SQS receive
 * (a long poll) asks.
 */
static int
retired_claim(QueueMessage **messages, int max_messages, double *idle_seconds)
{
	char	   *url = remembered();
	double		cap = *idle_seconds;
	int			count;

	*messages = NULL;
	/* another worker found it empty meanwhile */
	if (url == NULL)
		return 0;
	count = sqs_receive(url, messages, max_messages, idle_seconds);
	if (count == 0)
	{
		forget(url);
		ereport(LOG,
				(errmsg("payment worker %d found the replaced SQS queue empty",
						payment_worker_index + 1),
				 errdetail("Queue %s is no longer drained.", url)));
		*idle_seconds = cap;
	}
	return count;
}

/*
 * The replaced queue, drained as SQS is.  What sqs.c holds between claims
 * (a batch asked for in advance, deletes in flight) the SQS backend gives
 * back.
 */
const QueueBackend sqs_retired_queue = {
	.name = "sqs (replaced)",
	/* drained only: nothing is enqueued to it, no depth asked of it */
	.claim = retired_claim,
	.max_claim = SQS_MAX_BATCH,
	/* each request to the queue that gave its messages, after the store */
	.settle_after_commit = sqs_settle,
	.durable_store = true,
	/* noted at a reload, loaded at a start, drained until found empty */
	.has_leftover = retired_has_leftover,
	.start = retired_start,
	.before_reload = retired_before_reload,
	.after_reload = retired_after_reload,
};
