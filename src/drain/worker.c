/*-------------------------------------------------------------------------
 * worker.c
 *	  The payment background workers: registration, and the loop that
 *	  claims a batch from the queue backend in use (queue/queue.h), stores
 *	  it (store.c) and has the backend settle it.  Woken by a latch at the commit of a submission; sleeps otherwise.
 *	  SIGTERM stops a worker between statements, SIGHUP reloads settings,
 *	  and the postmaster restarts a worker that crashed.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "common/backoff.h"
#include "drain/store.h"
#include "drain/worker.h"
#include "payment.h"
#include "queue/queue.h"

#define IDLE_WAIT_SECONDS 10.0
#define FIRST_BACKOFF_MS 100
#define MAX_BACKOFF_MS 30000

static int	worker_index = -1;

void
payment_register_workers(void)
{
	BackgroundWorker worker;

	for (int i = 0; i < payment_workers; i++)
	{
		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 5;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "payment");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "payment_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "payment worker %d", i + 1);
		snprintf(worker.bgw_type, BGW_MAXLEN, PAYMENT_WORKER_TYPE);
		worker.bgw_main_arg = Int32GetDatum(i);
		RegisterBackgroundWorker(&worker);
	}
}

static void
forget_worker_latch(int code, Datum arg)
{
	pg_atomic_write_u32(&payment_shared->worker_procno[worker_index], PG_UINT32_MAX);
}

/* The worker serves its database once CREATE EXTENSION payment ran there. */
static bool
extension_installed(void)
{
	MemoryContext context = CurrentMemoryContext;
	bool		installed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("payment", true));
	CommitTransactionCommand();
	/* commit leaves TopMemoryContext current: the batch must not go there */
	MemoryContextSwitchTo(context);
	return installed;
}

static void
wait_on_latch(long timeout_ms)
{
	int			rc = WaitLatch(MyLatch,
							   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							   Max(timeout_ms, 1), PG_WAIT_EXTENSION);

	if (rc & WL_LATCH_SET)
	{
		ResetLatch(MyLatch);

		/*
		 * Woken by a commit: let more messages arrive for the batching
		 * window (as Lambda's MaximumBatchingWindow does), so that a busy
		 * queue is drained in full batches rather than one message per
		 * transaction.  Wakes during the window are absorbed.
		 */
		if (payment_batch_window > 0 && !ConfigReloadPending)
		{
			(void) WaitLatch(NULL, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 payment_batch_window, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
	CHECK_FOR_INTERRUPTS();
}

/* Store a claimed batch, and settle it there if the backend settles with the store. */
static void
store_in_transaction(const QueueBackend *backend, QueueMessage *messages,
					 int count, bool isolate)
{
	MemoryContext context = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	store_batch(messages, count, isolate);
	if (backend->settle_with_store)
		backend->settle_with_store(messages, count);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	/* commit leaves TopMemoryContext current: settling must not go there */
	MemoryContextSwitchTo(context);
}

/*
 * Store a batch: all at once, or, if that raises, message by message so that
 * one bad message cannot hold back the others.
 */
static void
store_claimed(const QueueBackend *backend, QueueMessage *messages, int count)
{
	MemoryContext context = CurrentMemoryContext;

	PG_TRY();
	{
		store_in_transaction(backend, messages, count, false);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(DEBUG1,
				(errmsg("payment worker isolates the messages of a failed batch"),
				 errdetail_internal("%s", edata->message)));
		FreeErrorData(edata);
		store_in_transaction(backend, messages, count, true);
	}
	PG_END_TRY();
	store_count_outcomes(messages, count);
}

/*
 * One batch.  Returns the number of messages handled (0 when the queue had
 * none visible).
 */
static int
run_batch(const QueueBackend *backend, double *idle_seconds)
{
	QueueMessage *messages;
	int			count;

	count = backend->claim(&messages, payment_batch_size, idle_seconds);
	if (count == 0)
		return 0;
	pgstat_report_activity(STATE_RUNNING, "storing a batch");
	store_claimed(backend, messages, count);
	if (backend->settle_after_commit)
		backend->settle_after_commit(messages, count);
	pgstat_report_activity(STATE_IDLE, NULL);
	return count;
}

/*
 * When the backend settles in the store's transaction (the embedded queue),
 * a payment and the deletion of its message commit atomically, so a commit
 * lost in a crash only means the message is delivered again: the worker need
 * not wait for the WAL flush.  When it settles after the commit (SQS), the
 * store must be durable before the queue forgets the messages.
 */
static void
set_commit_durability(const QueueBackend *backend)
{
	static int	current = -1;
	bool		durable = backend->settle_after_commit != NULL;

	if (current != (int) durable)
	{
		SetConfigOption("synchronous_commit", durable ? "on" : "off",
						PGC_SUSET, PGC_S_SESSION);
		current = (int) durable;
	}
}

void
payment_worker_main(Datum main_arg)
{
	MemoryContext batch_context;
	int			failures = 0;
	char	   *last_error = NULL;
	bool		extension_ready = false;

	worker_index = DatumGetInt32(main_arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(payment_database, NULL, 0);

	pg_atomic_write_u32(&payment_shared->worker_procno[worker_index], MyProc->pgprocno);
	before_shmem_exit(forget_worker_latch, (Datum) 0);

	batch_context = AllocSetContextCreate(TopMemoryContext, "payment worker batch",
										  ALLOCSET_DEFAULT_SIZES);
	ereport(LOG, (errmsg("payment worker %d started for database \"%s\"",
						 worker_index + 1, payment_database)));

	for (;;)
	{
		const QueueBackend *backend;
		int			handled = 0;
		long		wait_ms = 0;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MemoryContextReset(batch_context);
		MemoryContextSwitchTo(batch_context);
		backend = queue_backend();
		set_commit_durability(backend);

		PG_TRY();
		{
			/* checked again only after a failure (DROP EXTENSION makes one) */
			if (!extension_ready)
				extension_ready = extension_installed();
			if (payment_paused || !extension_ready)
				wait_ms = (long) (IDLE_WAIT_SECONDS * 1000);
			else
			{
				double		idle_seconds = IDLE_WAIT_SECONDS;

				handled = run_batch(backend, &idle_seconds);
				if (handled == 0)
					wait_ms = (long) (idle_seconds * 1000);
			}
			if (failures > 0)
				ereport(LOG, (errmsg("payment worker %d recovered after %d failed attempts",
									 worker_index + 1, failures)));
			failures = 0;
			/* a later repeat of the same error is news again */
			if (last_error != NULL)
			{
				pfree(last_error);
				last_error = NULL;
			}
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(batch_context);
			edata = CopyErrorData();
			FlushErrorState();
			AbortOutOfAnyTransaction();
			pgstat_report_activity(STATE_IDLE, NULL);
			extension_ready = false;

			/* log once per change of state, not once per attempt */
			if (last_error == NULL || strcmp(last_error, edata->message) != 0)
			{
				edata->elevel = WARNING;
				edata->hide_stmt = true;
				ThrowErrorData(edata);
				if (last_error)
					pfree(last_error);
				last_error = MemoryContextStrdup(TopMemoryContext, edata->message);
			}
			failures++;
			wait_ms = (long) backoff_delay(failures, FIRST_BACKOFF_MS, MAX_BACKOFF_MS);
		}
		PG_END_TRY();

		MemoryContextSwitchTo(TopMemoryContext);

		/*
		 * Report table activity as a backend does between statements: the
		 * queue's dead rows reach autovacuum only this way, and an unvacuumed
		 * queue slows every claim.  Rate-limited while busy, forced when idle.
		 */
		pgstat_report_stat(handled == 0);
		if (handled == 0 && wait_ms > 0)
			wait_on_latch(wait_ms);
	}
}
