/*-------------------------------------------------------------------------
 * worker.c
 *	  The payment background workers: registration, and the loop that
 *	  claims a batch from the queue backend, stores it (store.c) and settles
 *	  it.  Woken by a latch at the commit of a submission; sleeps otherwise.
 *	  SIGTERM stops a worker between statements, SIGHUP reloads settings,
 *	  and the postmaster restarts a worker that crashed.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "common/pg_prng.h"
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

#include "payment.h"
#include "queue/sqs.h"

#define IDLE_WAIT_SECONDS 10.0
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

/* Store and settle a claimed batch; the embedded queue settles in the same transaction. */
static void
store_in_transaction(QueueMessage *messages, int count, bool isolate, bool embedded)
{
	MemoryContext context = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	store_batch(messages, count, isolate);
	if (embedded)
		embedded_settle(messages, count);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	/* commit leaves TopMemoryContext current: settling must not go there */
	MemoryContextSwitchTo(context);
}

/*
 * Errors of the database rather than of a message: a lock timeout, a
 * cancel, read-only.  Storing the batch message by message would only fail
 * each message in turn, count the failure against it and log it, so that a
 * long lock would dead-letter the whole backlog as max_receives.  Other
 * transient errors (serialization failure, deadlock, ...) may follow one
 * message, and stay counted against it.
 */
static bool
is_environmental(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
		sqlerrcode == ERRCODE_QUERY_CANCELED ||
		sqlerrcode == ERRCODE_READ_ONLY_SQL_TRANSACTION;
}

/*
 * Store a batch: all at once, or, if that raises, message by message so that
 * one bad message cannot hold back the others.  If the database itself
 * failed, the batch is given back (embedded: uncounted; SQS: after the
 * visibility timeout) and the error goes to the worker loop, which logs it
 * once and backs off.
 */
static void
store_claimed(QueueMessage *messages, int count, bool embedded)
{
	MemoryContext context = CurrentMemoryContext;

	PG_TRY();
	{
		store_in_transaction(messages, count, false, embedded);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		if (is_environmental(edata->sqlerrcode))
		{
			if (embedded)
				embedded_release(messages, count);
			ReThrowError(edata);
		}
		ereport(DEBUG1,
				(errmsg("payment worker isolates the messages of a failed batch"),
				 errdetail_internal("%s", edata->message)));
		FreeErrorData(edata);
		store_in_transaction(messages, count, true, embedded);
	}
	PG_END_TRY();
	store_count_outcomes(messages, count);
}

/*
 * One batch.  Returns the number of messages handled (0 when the queue had
 * none visible).
 */
static int
run_batch(bool use_sqs, double *idle_seconds)
{
	QueueMessage *messages;
	int			count;

	if (use_sqs)
	{
		count = sqs_receive_messages(&messages, Min(payment_batch_size, 10));
		if (count == 0)
			return 0;
		pgstat_report_activity(STATE_RUNNING, "storing a batch from SQS");
		store_claimed(messages, count, false);
		sqs_settle(messages, count);
	}
	else
	{
		count = embedded_claim(&messages, payment_batch_size, idle_seconds);
		if (count == 0)
			return 0;
		pgstat_report_activity(STATE_RUNNING, "storing a batch");
		store_claimed(messages, count, true);
	}
	pgstat_report_activity(STATE_IDLE, NULL);
	return count;
}

/*
 * With the embedded queue a payment and the deletion of its message commit
 * atomically, so a commit lost in a crash only means the message is delivered
 * again: the worker need not wait for the WAL flush.  With SQS the store must
 * be durable before SQS forgets the messages.
 */
static void
set_commit_durability(bool use_sqs)
{
	static int	current = -1;

	if (current != (int) use_sqs)
	{
		SetConfigOption("synchronous_commit", use_sqs ? "on" : "off",
						PGC_SUSET, PGC_S_SESSION);
		current = (int) use_sqs;
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
		bool		use_sqs;
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
		use_sqs = payment_use_sqs();
		set_commit_durability(use_sqs);

		PG_TRY();
		{
			/* checked again only after a failure (DROP EXTENSION makes one) */
			if (!extension_ready)
				extension_ready = extension_installed();
			if (payment_paused || !extension_ready)
				wait_ms = (long) (IDLE_WAIT_SECONDS * 1000);
			else
			{
				double		idle_seconds = use_sqs ? 0 : IDLE_WAIT_SECONDS;

				handled = run_batch(use_sqs, &idle_seconds);
				if (handled == 0)
					wait_ms = (long) (idle_seconds * 1000);
			}
			if (failures > 0)
				ereport(LOG, (errmsg("payment worker %d recovered after %d failed attempts",
									 worker_index + 1, failures)));
			failures = 0;
		}
		PG_CATCH();
		{
			ErrorData  *edata;
			long		backoff;

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
			/* exponential backoff with full jitter */
			backoff = Min(MAX_BACKOFF_MS, 100L << Min(failures, 9));
			wait_ms = backoff / 2 + (long) pg_prng_uint64_range(&pg_global_prng_state, 0, backoff / 2);
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
		else if (failures == 0 && last_error != NULL)
		{
			pfree(last_error);
			last_error = NULL;
		}
	}
}
