/*-------------------------------------------------------------------------
 * pool.c
 *	  The elastic pool of payment workers, as Lambda scales its consumers
 *	  with an SQS queue.  payment.workers static workers run from server
 *	  start (and are restarted when they die); a launcher background worker
 *	  starts dynamic workers, up to payment.max_workers in all, while the
 *	  workers keep claiming full batches; a dynamic worker exits once no
 *	  full batch was claimed for payment.scale_down_after.
 *
 *	  The signal is the workers' own claims, written to the pool's shared
 *	  memory (PaymentPool), so the launcher needs no database
 *	  connection and works the same for every queue backend.  A backend
 *	  whose claims may come back short while a backlog waits (SQS) also
 *	  tells its depth, which the launcher asks for.  Dynamic workers
 *	  are never restarted: after a crash the pool grows again from the
 *	  backlog.
 *
 *	  Where the backend tells its depth, the pool grows in one step to
 *	  the size the backlog needs: enough workers, at the drain rate of one
 *	  worker measured while all of them claim full batches, to drain the
 *	  depth within one payment.scale_up_after.  Without a depth (the
 *	  embedded queue) or before a rate is measured, one worker a step.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

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
#include "utils/timestamp.h"

#include "drain/pool.h"
#include "drain/wait.h"
#include "payment.h"
#include "queue/queue.h"

int			payment_max_workers = 8;
int			payment_scale_up_after = 1000;	/* ms */
int			payment_scale_down_after = 60;	/* s */

/*
 * The pool in shared memory: slot i runs worker i + 1.  Slots below
 * payment.workers are the static workers; the launcher starts dynamic
 * workers in the others while the backlog lasts.
 */
typedef enum PaymentSlotState
{
	SLOT_FREE = 0,
	SLOT_STARTING,				/* registered by the launcher, not yet running */
	SLOT_RUNNING
} PaymentSlotState;

typedef struct PaymentPool
{
	pg_atomic_uint32 slot_state[PAYMENT_MAX_WORKERS];
	/* TimestampTz of the first of an unbroken run of full claims, or 0 */
	pg_atomic_uint64 backlog_since;
	/* TimestampTz of the latest sign of a backlog: a full claim, or the depth */
	pg_atomic_uint64 last_backlog;
	/* pgprocno of the launcher, or PG_UINT32_MAX */
	pg_atomic_uint32 launcher_procno;
	/* messages claimed by every worker since start: the drain rate */
	pg_atomic_uint64 claimed;
} PaymentPool;

static PaymentPool *pool = NULL;

/* a registered worker that has not run after this long never will */
#define STARTING_GRACE_MS 30000
/* how often the launcher looks while a backlog builds, and otherwise */
#define BUSY_TICK_MS 100
#define IDLE_TICK_MS 1000
/* the queue's depth is asked for at most this often */
#define DEPTH_EVERY_MS 1000
/* the drain rate is measured over at least this long */
#define RATE_WINDOW_MS 250

void
pool_define_settings(void)
{
	GucContext	restart_only = process_shared_preload_libraries_in_progress ?
		PGC_POSTMASTER : PGC_SIGHUP;

	DefineCustomIntVariable("payment.max_workers",
							gettext_noop("Most payment workers running at once; payment.workers run always, the others while a backlog lasts."),
							gettext_noop("Each worker takes a max_worker_processes slot, as does the pool's launcher."),
							&payment_max_workers,
							8, 0, PAYMENT_MAX_WORKERS,
							restart_only,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payment.scale_up_after",
							gettext_noop("How long the workers must claim only full batches before another worker starts."),
							NULL,
							&payment_scale_up_after,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payment.scale_down_after",
							gettext_noop("How long without a full batch before the workers started for a backlog exit."),
							NULL,
							&payment_scale_down_after,
							60, 1, 24 * 3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
}

static void
pool_shmem_attach(void *shared, bool first)
{
	pool = shared;
	if (!first)
		return;
	for (int i = 0; i < PAYMENT_MAX_WORKERS; i++)
		pg_atomic_init_u32(&pool->slot_state[i], SLOT_FREE);
	pg_atomic_init_u64(&pool->backlog_since, 0);
	pg_atomic_init_u64(&pool->last_backlog, 0);
	pg_atomic_init_u32(&pool->launcher_procno, PG_UINT32_MAX);
	pg_atomic_init_u64(&pool->claimed, 0);
}

const PaymentShmem pool_shmem = {"payment pool", sizeof(PaymentPool), pool_shmem_attach};

/* the pool's size limit: never below the static workers */
static int
pool_max_size(void)
{
	return Min(Max(payment_workers, payment_max_workers), PAYMENT_MAX_WORKERS);
}

bool
pool_slot_is_dynamic(int slot)
{
	return slot >= payment_workers;
}

/* Every process of the pool: a function of the library, started once recovery is over. */
void
pool_describe_process(BackgroundWorker *worker, const char *function, int restart_time)
{
	memset(worker, 0, sizeof(*worker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = restart_time;
	snprintf(worker->bgw_library_name, BGW_MAXLEN, "payment");
	snprintf(worker->bgw_function_name, BGW_MAXLEN, "%s", function);
}

/* The worker of slot (static or dynamic): "payment worker <slot + 1>". */
void
pool_describe_worker(BackgroundWorker *worker, int slot, int restart_time)
{
	pool_describe_process(worker, "payment_worker_main", restart_time);
	snprintf(worker->bgw_name, BGW_MAXLEN, "payment worker %d", slot + 1);
	snprintf(worker->bgw_type, BGW_MAXLEN, PAYMENT_WORKER_TYPE);
	worker->bgw_main_arg = Int32GetDatum(slot);
}

void
pool_register_launcher(void)
{
	BackgroundWorker worker;

	if (pool_max_size() <= payment_workers)
		return;

	/* each worker and the launcher need a slot; parallel queries need more */
	if (max_worker_processes < pool_max_size() + 1)
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("max_worker_processes (%d) is too low for payment.max_workers (%d)",
						max_worker_processes, pool_max_size()),
				 errdetail("The payment workers and their launcher need %d background worker slots.",
						   pool_max_size() + 1),
				 errhint("Raise max_worker_processes to at least %d, plus what parallel queries and other extensions use.",
						 pool_max_size() + 1)));

	/*
	 * With a database connection, though connected to no database, as the
	 * logical replication launcher is: so that it shows in pg_stat_activity.
	 */
	pool_describe_process(&worker, "payment_launcher_main", 5);
	snprintf(worker.bgw_name, BGW_MAXLEN, "payment launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "payment launcher");
	RegisterBackgroundWorker(&worker);
}

/* ------------------------------------------------------------------ */
/* what the workers report */

void
pool_worker_started(int slot)
{
	pg_atomic_write_u32(&pool->slot_state[slot], SLOT_RUNNING);
}

void
pool_worker_exiting(int slot)
{
	pg_atomic_write_u32(&pool->slot_state[slot], SLOT_FREE);
}

static void
wake_launcher(void)
{
	uint32		procno = pg_atomic_read_u32(&pool->launcher_procno);

	if (procno < ProcGlobal->allProcCount)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/*
 * A full claim means more messages were waiting than one worker takes; an
 * unbroken run of them, from every worker, is a backlog.  One partial claim
 * means the queue was drained, and ends the run.
 */
void
pool_note_claim(int count, int wanted)
{
	if (count > 0)
		pg_atomic_fetch_add_u64(&pool->claimed, count);
	if (wanted > 0 && count >= wanted)
	{
		TimestampTz now = GetCurrentTimestamp();
		uint64		none = 0;

		pg_atomic_write_u64(&pool->last_backlog, (uint64) now);
		if (pg_atomic_compare_exchange_u64(&pool->backlog_since, &none, (uint64) now))
			wake_launcher();
	}
	else if (pg_atomic_read_u64(&pool->backlog_since) != 0)
		pg_atomic_write_u64(&pool->backlog_since, 0);
}

bool
pool_should_retire(void)
{
	TimestampTz last = (TimestampTz) pg_atomic_read_u64(&pool->last_backlog);

	return TimestampDifferenceExceeds(last, GetCurrentTimestamp(),
									  payment_scale_down_after * 1000);
}

/* ------------------------------------------------------------------ */
/* the launcher */

static bool
start_dynamic_worker(int slot, BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;
	MemoryContext old;
	bool		registered;

	pool_describe_worker(&worker, slot, BGW_NEVER_RESTART);
	/* the postmaster sets our latch when it starts or stops */
	worker.bgw_notify_pid = MyProcPid;

	pg_atomic_write_u32(&pool->slot_state[slot], SLOT_STARTING);
	/* the handle lives as long as the worker, across ticks */
	old = MemoryContextSwitchTo(TopMemoryContext);
	registered = RegisterDynamicBackgroundWorker(&worker, handle);
	MemoryContextSwitchTo(old);
	if (!registered)
	{
		pg_atomic_write_u32(&pool->slot_state[slot], SLOT_FREE);
		*handle = NULL;
	}
	return registered;
}

/* The backend's depth, or -1 when it cannot tell (logged once per change). */
static int64
ask_depth(const QueueBackend *backend, char **last_error)
{
	MemoryContext context = CurrentMemoryContext;
	int64		depth = -1;

	PG_TRY();
	{
		depth = backend->depth();
		if (*last_error != NULL)
		{
			pfree(*last_error);
			*last_error = NULL;
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();
		if (*last_error == NULL || strcmp(*last_error, edata->message) != 0)
		{
			ereport(LOG,
					(errmsg("payment launcher could not read the queue's depth: %s",
							edata->message)));
			if (*last_error != NULL)
				pfree(*last_error);
			*last_error = MemoryContextStrdup(TopMemoryContext, edata->message);
		}
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return depth;
}

static int
count_slots(PaymentSlotState state)
{
	int			n = 0;

	for (int slot = 0; slot < PAYMENT_MAX_WORKERS; slot++)
		n += pg_atomic_read_u32(&pool->slot_state[slot]) == state;
	return n;
}

/* more messages wait than the running workers take in one claim each */
static bool
depth_is_backlog(const QueueBackend *backend, int64 depth)
{
	int			running = count_slots(SLOT_RUNNING);
	int			per_claim = backend->max_claim > 0 ?
		Min(payment_batch_size, backend->max_claim) : payment_batch_size;

	return running > 0 && depth > (int64) running * per_claim;
}

/*
 * One worker's drain rate (messages a second), measured while every running
 * worker claims full batches: then the rate is what the workers can do, not
 * what arrives.  Kept from the last such window; 0 until one is measured.
 */
typedef struct DrainRate
{
	TimestampTz since;			/* start of the window, or 0 */
	uint64		claimed_at_since;
	int			workers;		/* running at its start */
	double		per_worker;
} DrainRate;

static void
measure_rate(DrainRate *rate, TimestampTz now, bool saturated)
{
	int			running = count_slots(SLOT_RUNNING);
	uint64		claimed = pg_atomic_read_u64(&pool->claimed);

	if (!saturated || running == 0 || (rate->since != 0 && running != rate->workers))
	{
		/* the window ends: a quiet queue, or the pool changed size */
		rate->since = saturated && running > 0 ? now : 0;
		rate->claimed_at_since = claimed;
		rate->workers = running;
		return;
	}
	if (rate->since == 0)
	{
		rate->since = now;
		rate->claimed_at_since = claimed;
		rate->workers = running;
	}
	else if (TimestampDifferenceExceeds(rate->since, now, RATE_WINDOW_MS))
	{
		double		seconds = (double) (now - rate->since) / USECS_PER_SEC;

		rate->per_worker = (double) (claimed - rate->claimed_at_since) / seconds / running;
		rate->since = now;
		rate->claimed_at_since = claimed;
	}
}

/*
 * How many workers to start now: as many as drain depth within one
 * scale_up_after at the measured rate, at least one, within free.
 */
static int
workers_needed(int64 depth, const DrainRate *rate, int free)
{
	int			size = count_slots(SLOT_RUNNING) + count_slots(SLOT_STARTING);
	double		per_interval;
	double		wanted;

	if (depth <= 0 || rate->per_worker <= 0)
		return Min(1, free);
	per_interval = rate->per_worker * payment_scale_up_after / 1000.0;
	wanted = ceil((double) depth / Max(per_interval, 1.0));
	if (wanted <= size)
		return Min(1, free);
	return (int) Min(wanted - size, (double) free);
}

static void
forget_launcher(int code, Datum arg)
{
	pg_atomic_write_u32(&pool->launcher_procno, PG_UINT32_MAX);
}

void
payment_launcher_main(Datum main_arg)
{
	BackgroundWorkerHandle *handles[PAYMENT_MAX_WORKERS] = {0};
	TimestampTz starting_since[PAYMENT_MAX_WORKERS] = {0};
	TimestampTz last_start = 0;
	TimestampTz last_depth = 0;
	TimestampTz depth_backlog_since = 0;
	int64		depth = -1;
	DrainRate	rate = {0};
	char	   *depth_error = NULL;
	bool		warned_no_slot = false;
	MemoryContext tick_context;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	pg_atomic_write_u32(&pool->launcher_procno, MyProc->pgprocno);
	before_shmem_exit(forget_launcher, (Datum) 0);
	tick_context = AllocSetContextCreate(TopMemoryContext, "payment launcher tick",
										 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		TimestampTz now;
		TimestampTz backlog_since;
		int			free_slots[PAYMENT_MAX_WORKERS];
		int			nfree = 0;
		int			step_ms;
		const QueueBackend *backend;

		drain_handle_signals(NULL);
		now = GetCurrentTimestamp();
		MemoryContextReset(tick_context);
		MemoryContextSwitchTo(tick_context);
		backend = queue_backend();

		/*
		 * Free the slots of workers that stopped before they ran (fork
		 * failed, or started by a launcher before this one).
		 */
		for (int slot = payment_workers; slot < pool_max_size(); slot++)
		{
			pid_t		pid;

			if (pg_atomic_read_u32(&pool->slot_state[slot]) == SLOT_STARTING)
			{
				bool		stopped;

				if (handles[slot] != NULL)
					stopped = GetBackgroundWorkerPid(handles[slot], &pid) == BGWH_STOPPED;
				else
				{
					if (starting_since[slot] == 0)
						starting_since[slot] = now;
					stopped = TimestampDifferenceExceeds(starting_since[slot], now,
														 STARTING_GRACE_MS);
				}
				if (stopped)
				{
					uint32		starting = SLOT_STARTING;

					pg_atomic_compare_exchange_u32(&pool->slot_state[slot], &starting,
												   SLOT_FREE);
				}
			}
			else
				starting_since[slot] = 0;

			if (handles[slot] != NULL &&
				pg_atomic_read_u32(&pool->slot_state[slot]) == SLOT_FREE &&
				GetBackgroundWorkerPid(handles[slot], &pid) == BGWH_STOPPED)
			{
				pfree(handles[slot]);
				handles[slot] = NULL;
			}
			if (handles[slot] == NULL &&
				pg_atomic_read_u32(&pool->slot_state[slot]) == SLOT_FREE)
				free_slots[nfree++] = slot;
		}

		/*
		 * Grow while the backlog lasts: once every claim was full for
		 * scale_up_after, one more worker every quarter of it.
		 */
		step_ms = Max(payment_scale_up_after / 4, BUSY_TICK_MS);
		backlog_since = (TimestampTz) pg_atomic_read_u64(&pool->backlog_since);

		measure_rate(&rate, now, !payment_paused && backlog_since != 0);

		/*
		 * A backend that can tell its depth is asked (at most once a
		 * second): while claims are full, for the size the backlog needs;
		 * without them, more waiting than the running workers take in a
		 * claim each, for scale_up_after, is a backlog too.
		 */
		if (payment_paused || backend->depth == NULL)
		{
			depth_backlog_since = 0;
			depth = -1;
		}
		else if (TimestampDifferenceExceeds(last_depth, now,
											backlog_since != 0 ? DEPTH_EVERY_MS :
											Max(payment_scale_up_after, DEPTH_EVERY_MS)))
		{
			last_depth = now;
			depth = ask_depth(backend, &depth_error);
			if (backlog_since != 0 || !depth_is_backlog(backend, depth))
				depth_backlog_since = 0;
			else
			{
				/* the workers started for it must not retire meanwhile */
				pg_atomic_write_u64(&pool->last_backlog, (uint64) now);
				if (depth_backlog_since == 0)
					depth_backlog_since = now;
			}
		}
		if (backlog_since == 0)
			backlog_since = depth_backlog_since;

		if (!payment_paused && backlog_since != 0 && nfree > 0 &&
			TimestampDifferenceExceeds(backlog_since, now, payment_scale_up_after) &&
			TimestampDifferenceExceeds(last_start, now, step_ms))
		{
			int			wanted = workers_needed(depth, &rate, nfree);
			int			started = 0;

			while (started < wanted &&
				   start_dynamic_worker(free_slots[started], &handles[free_slots[started]]))
			{
				ereport(DEBUG1,
						(errmsg("payment launcher started payment worker %d for a backlog",
								free_slots[started] + 1)));
				started++;
			}
			if (started > 0)
			{
				last_start = now;
				warned_no_slot = false;
				payment_count(&payment_shared->counters.scale_events, started);
			}
			if (started < wanted && !warned_no_slot)
			{
				ereport(WARNING,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("payment launcher could not start another payment worker"),
						 errdetail("Every background worker slot is in use."),
						 errhint("Raise max_worker_processes, or lower payment.max_workers.")));
				warned_no_slot = true;
			}
		}

		MemoryContextSwitchTo(TopMemoryContext);
		(void) drain_wait(backlog_since != 0 ? BUSY_TICK_MS : IDLE_TICK_MS, false, NULL);
	}
}
