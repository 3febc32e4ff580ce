/*-------------------------------------------------------------------------
 * worker.c
 *	  The payment background workers: registration, and the loop that
 *	  claims a batch through the queue layer (queue/queue.h), stores it
 *	  (store.c) and has the backend settle it.  The queue layer says where
 *	  each claim goes: the backend in use, or what a previous configuration
 *	  left, so switching backends strands nothing.  Woken by a latch at the
 *	  commit of a submission; sleeps otherwise (wait.c).  SIGTERM stops a
 *	  worker between statements and ends any wait at once, SIGHUP reloads
 *	  settings (queue_reload_settings), a failure is logged once and backed
 *	  off from (worker_faults.c), and the postmaster restarts a static
 *	  worker that crashed; the dynamic workers of the elastic pool (pool.c)
 *	  exit when the backlog is gone.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "drain/pool.h"
#include "drain/store.h"
#include "drain/wait.h"
#include "drain/worker.h"
#include "drain/worker_faults.h"
#include "drain/worker_session.h"
#include "payment.h"
#include "queue/queue.h"

#define IDLE_WAIT_SECONDS 10.0

/* a dynamic worker looks at least this often whether it should exit */
#define DYNAMIC_MAX_WAIT_MS 1000

static int	worker_index = -1;

/* the last claim from a queue woken by commits took what there was, but not a full batch */
static bool last_claim_partial = false;

/* the extension is installed and the role may work; looked at again after a failure */
static bool extension_ready = false;

void
payment_register_workers(void)
{
	BackgroundWorker worker;

	/* with payment.database '*' the launcher starts every worker, per database */
	for (int i = 0; i < payment_workers && !payment_serves_every_database(); i++)
	{
		pool_describe_worker(&worker, i, 5);
		RegisterBackgroundWorker(&worker);
	}
	pool_register_launcher();
}

static void
forget_worker_latch(int code, Datum arg)
{
	payment_worker_detach(worker_index);
	pool_worker_exiting(worker_index);
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
 * one bad message cannot hold back the others.  If the database itself
 * failed (worker_fault_is_database), in either attempt, the batch is given
 * back (embedded: uncounted; SQS: after the visibility timeout) and the
 * error goes to the worker loop, which logs it once and backs off; the
 * worker then looks whether the database can store again
 * (worker_session_ready) before it claims anything more.
 */
static void
store_claimed(const QueueBackend *backend, QueueMessage *messages, int count)
{
	MemoryContext context = CurrentMemoryContext;
	bool		isolate = false;

	for (;;)
	{
		ErrorData  *edata;

		PG_TRY();
		{
			store_in_transaction(backend, messages, count, isolate);
			edata = NULL;
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(context);
			edata = CopyErrorData();
			FlushErrorState();
			AbortCurrentTransaction();
		}
		PG_END_TRY();
		if (edata == NULL)
			break;
		/* the database failed (also while isolating: store.c passes those on) */
		if (worker_fault_is_database(edata->sqlerrcode))
		{
			if (backend->release)
				backend->release(messages, count);
			ReThrowError(edata);
		}
		if (isolate)
			ReThrowError(edata);
		ereport(DEBUG1,
				(errmsg("payment worker isolates the messages of a failed batch"),
				 errdetail_internal("%s", edata->message)));
		FreeErrorData(edata);
		isolate = true;
	}
	store_count_outcomes(messages, count);
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
	bool		durable = backend->durable_store;

	if (current != (int) durable)
	{
		SetConfigOption("synchronous_commit", durable ? "on" : "off",
						PGC_SUSET, PGC_S_SESSION);
		current = (int) durable;
	}
}

/*
 * One batch from source (the backend in use, or a leftover).  Returns the
 * number of messages handled (0 when the queue had none visible).
 */
static int
run_batch(const QueueSource *source, double *idle_seconds)
{
	const QueueBackend *backend = source->backend;
	QueueMessage *messages;
	int			count;
	int			wanted = backend->max_claim > 0 ?
		Min(payment_batch_size, backend->max_claim) : payment_batch_size;

	set_commit_durability(backend);
	count = backend->claim(&messages, payment_batch_size, idle_seconds);
	last_claim_partial = backend->transactional && count > 0 && count < wanted;

	/*
	 * A full claim from any queue is a sign of a backlog; a short one ends
	 * it only from the queue in use: a look at an empty leftover queue says
	 * nothing about the queue in use.
	 */
	if (source->in_use || count >= wanted)
		pool_note_claim(count, wanted);
	if (count == 0)
		return 0;
	payment_worker_has_work(worker_index);
	/* a full batch: there may be more, for a worker asleep */
	if (count >= wanted)
		payment_wake_workers();
	payment_worker_set_busy(worker_index, true);
	pgstat_report_activity(STATE_RUNNING, "storing a batch");
	store_claimed(backend, messages, count);
	if (backend->settle_after_commit)
		backend->settle_after_commit(messages, count);
	pgstat_report_activity(STATE_IDLE, NULL);
	payment_worker_set_busy(worker_index, false);
	return count;
}

/*
 * One round: a batch from what a previous configuration left, while it may
 * hold messages (the queue layer says when to look), else from the backend
 * in use.  *idle_seconds: how long the last queue asked at says to sleep.
 */
static int
drain_round(double *idle_seconds)
{
	QueueSource source;
	int			handled;

	queue_first_source(&source);
	do
	{
		*idle_seconds = IDLE_WAIT_SECONDS;
		handled = run_batch(&source, idle_seconds);
	} while (queue_next_source(&source, handled, *idle_seconds));
	return handled;
}

/*
 * Sleep until a commit wakes the worker, or for timeout_ms.  Woken by a
 * commit, it lets more messages arrive for the batching window (as Lambda's
 * MaximumBatchingWindow does), so that a busy queue is drained in full
 * batches rather than one message per transaction; the wakes of the commits
 * during the window are absorbed.
 */
static void
sleep_until_woken(long timeout_ms)
{
	if (drain_wait(timeout_ms, false, queue_reload_settings) == DRAIN_WAIT_WOKEN &&
		payment_batch_window > 0)
		(void) drain_wait(payment_batch_window, true, queue_reload_settings);
}

/* After a turn of the loop: sleep if it found nothing, or gather the next batch. */
static void
rest(int handled, long wait_ms)
{
	if (pool_slot_is_dynamic(worker_index))
		wait_ms = Min(wait_ms, DYNAMIC_MAX_WAIT_MS);
	if (handled == 0 && wait_ms > 0)
		sleep_until_woken(wait_ms);
	else if (handled > 0 && last_claim_partial && payment_batch_window > 0)
	{
		/*
		 * The queue was drained: gather the next batch for the batching
		 * window, as a worker woken from sleep does, instead of claiming
		 * each few messages that arrived during the store at once.  The
		 * commits meanwhile leave the other workers asleep.
		 */
		payment_worker_will_claim();
		(void) drain_wait(payment_batch_window, true, queue_reload_settings);
	}
}

/*
 * One turn's work: a round of claims once the database is ready and the
 * workers are not paused.  Returns the messages handled; *wait_ms is how
 * long the worker may sleep when there were none.
 */
static int
work(long *wait_ms)
{
	double		idle_seconds = IDLE_WAIT_SECONDS;
	int			handled = 0;

	/* checked again only after a failure (DROP EXTENSION makes one) */
	if (!extension_ready)
	{
		/* read before the look: a CREATE EXTENSION committed after it moves it */
		uint32		created = payment_extensions_created();

		extension_ready = worker_session_ready();
		/* with '*' a database without the extension keeps no worker */
		if (!extension_ready && payment_serves_every_database())
			pool_worker_no_extension(created);
		/* only once the role is known to read the queue's tables */
		if (extension_ready)
			queue_start();
	}
	if (!payment_paused && extension_ready)
		handled = drain_round(&idle_seconds);
	*wait_ms = handled > 0 ? 0 : (long) (idle_seconds * 1000);
	return handled;
}

void
payment_worker_main(Datum main_arg)
{
	MemoryContext batch_context;

	worker_index = DatumGetInt32(main_arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	worker_session_connect();

	payment_worker_attach(worker_index);
	pool_worker_started(worker_index);
	/* tells the workers apart in pg_stat_activity */
	pgstat_report_appname(MyBgworkerEntry->bgw_name);
	before_shmem_exit(forget_worker_latch, (Datum) 0);
	if (!pool_worker_may_serve())
		proc_exit(0);

	batch_context = AllocSetContextCreate(TopMemoryContext, "payment worker batch",
										  ALLOCSET_DEFAULT_SIZES);
	ereport(LOG, (errmsg("payment worker %d started for database \"%s\"%s",
						 worker_index + 1, pool_worker_database(),
						 pool_slot_is_dynamic(worker_index) ? " (for a backlog)" : "")));

	for (;;)
	{
		int			handled = 0;
		long		wait_ms = 0;
		PoolRetire	retire;

		drain_handle_signals(queue_reload_settings);

		/*
		 * A dynamic worker leaves once the backlog it was started for is
		 * gone, or (payment.database '*') when its database has more than
		 * its share of payment.max_workers and another waits for a worker.
		 */
		retire = pool_slot_is_dynamic(worker_index) ? pool_should_retire() : POOL_STAY;
		if (retire != POOL_STAY)
		{
			if (retire == POOL_RETIRE_IDLE)
				ereport(LOG,
						(errmsg("payment worker %d exits: no backlog for %d s",
								worker_index + 1, payment_scale_down_after)));
			else
				ereport(LOG,
						(errmsg("payment worker %d exits: its slot goes to another database",
								worker_index + 1),
						 errdetail("Database \"%s\" has more than its share of payment.max_workers while another database waits for a worker.",
								   pool_worker_database())));
			payment_count(&payment_shared->counters.scale_events, 1);
			MemoryContextSwitchTo(batch_context);
			queue_give_back();
			proc_exit(0);
		}

		MemoryContextReset(batch_context);
		MemoryContextSwitchTo(batch_context);
		payment_worker_about_to_claim(worker_index);

		PG_TRY();
		{
			handled = work(&wait_ms);
			if (handled > 0)
				worker_fault_cleared();
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(batch_context);
			edata = CopyErrorData();
			FlushErrorState();
			AbortOutOfAnyTransaction();
			pgstat_report_activity(STATE_IDLE, NULL);
			payment_worker_set_busy(worker_index, false);
			extension_ready = false;
			wait_ms = worker_fault(edata);
		}
		PG_END_TRY();

		MemoryContextSwitchTo(TopMemoryContext);

		/*
		 * Report table activity as a backend does between statements: the
		 * queue's dead rows reach autovacuum only this way, and an unvacuumed
		 * queue slows every claim.  Rate-limited while busy, forced when idle.
		 */
		pgstat_report_stat(handled == 0);
		rest(handled, wait_ms);
	}
}
