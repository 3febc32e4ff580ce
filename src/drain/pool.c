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

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
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

/*
 * One database's pool: the one database of payment.database, or with '*'
 * one entry per connectable database the launcher found (entry 0 unused
 * until then).  Only the launcher sets dboid.
 */
typedef struct PaymentDbPool
{
	pg_atomic_uint32 dboid;		/* InvalidOid: a free entry */
	/* 1 from DROP DATABASE (pool_hooks.c) until the launcher forgets it */
	pg_atomic_uint32 dropping;
	/* 1 + payment_extensions_created() when a worker found no extension, or 0 */
	pg_atomic_uint32 absent;
	/* TimestampTz of the first of an unbroken run of full claims, or 0 */
	pg_atomic_uint64 backlog_since;
	/* TimestampTz of the latest sign of a backlog: a full claim, or the depth */
	pg_atomic_uint64 last_backlog;
	/* messages claimed by its workers since start: the drain rate */
	pg_atomic_uint64 claimed;
	/* with '*': dynamic workers to retire, to make room for another database */
	pg_atomic_uint32 excess;
} PaymentDbPool;

typedef struct PaymentPool
{
	pg_atomic_uint32 slot_state[PAYMENT_MAX_WORKERS];
	/* the database pool of each slot's worker (0 with one database) */
	pg_atomic_uint32 slot_pool[PAYMENT_MAX_WORKERS];
	/* with '*': 1 for a worker started for a backlog, which retires */
	pg_atomic_uint32 slot_dynamic[PAYMENT_MAX_WORKERS];
	/* pgprocno of the launcher, or PG_UINT32_MAX */
	pg_atomic_uint32 launcher_procno;
	/* 1 when pg_database changed under the launcher (pool_hooks.c) */
	pg_atomic_uint32 rescan;
	PaymentDbPool dbs[PAYMENT_MAX_DATABASES];
} PaymentPool;

static PaymentPool *pool = NULL;

/* in a worker: its database's pool */
static PaymentDbPool *my_db = NULL;

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
	{
		pg_atomic_init_u32(&pool->slot_state[i], SLOT_FREE);
		pg_atomic_init_u32(&pool->slot_pool[i], 0);
		pg_atomic_init_u32(&pool->slot_dynamic[i], 0);
	}
	pg_atomic_init_u32(&pool->launcher_procno, PG_UINT32_MAX);
	pg_atomic_init_u32(&pool->rescan, 0);
	for (int p = 0; p < PAYMENT_MAX_DATABASES; p++)
	{
		PaymentDbPool *db = &pool->dbs[p];

		pg_atomic_init_u32(&db->dboid, InvalidOid);
		pg_atomic_init_u32(&db->dropping, 0);
		pg_atomic_init_u32(&db->absent, 0);
		pg_atomic_init_u64(&db->backlog_since, 0);
		pg_atomic_init_u64(&db->last_backlog, 0);
		pg_atomic_init_u64(&db->claimed, 0);
		pg_atomic_init_u32(&db->excess, 0);
	}
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
	if (payment_serves_every_database())
		return pg_atomic_read_u32(&pool->slot_dynamic[slot]) != 0;
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

	/* with '*' the launcher starts every worker */
	if (pool_max_size() <= payment_workers && !payment_serves_every_database())
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

const char *
pool_worker_database(void)
{
	/* with '*' the launcher names the database in bgw_extra */
	if (payment_serves_every_database() && MyBgworkerEntry != NULL)
		return MyBgworkerEntry->bgw_extra;
	return payment_database;
}

void
pool_worker_started(int slot)
{
	pg_atomic_write_u32(&pool->slot_state[slot], SLOT_RUNNING);
	my_db = &pool->dbs[pg_atomic_read_u32(&pool->slot_pool[slot])];
}

/*
 * With '*': false when the database is being dropped, or is not the one the
 * launcher meant (dropped and another made under its name).  The worker is
 * already findable (payment_worker_attach): DROP DATABASE sets dropping,
 * then signals the workers it finds, so one of the two sees the other.
 */
bool
pool_worker_may_serve(void)
{
	if (!payment_serves_every_database())
		return true;
	pg_memory_barrier();
	return pg_atomic_read_u32(&my_db->dboid) == MyDatabaseId &&
		pg_atomic_read_u32(&my_db->dropping) == 0;
}

void
pool_worker_no_extension(uint32 looked_at)
{
	pg_atomic_write_u32(&my_db->absent, looked_at + 1);
	ereport(DEBUG1,
			(errmsg("payment worker exits: extension \"payment\" is not installed in database \"%s\"",
					pool_worker_database())));
	proc_exit(0);
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
		pg_atomic_fetch_add_u64(&my_db->claimed, count);
	if (wanted > 0 && count >= wanted)
	{
		TimestampTz now = GetCurrentTimestamp();
		uint64		none = 0;

		pg_atomic_write_u64(&my_db->last_backlog, (uint64) now);
		if (pg_atomic_compare_exchange_u64(&my_db->backlog_since, &none, (uint64) now))
			wake_launcher();
	}
	else if (pg_atomic_read_u64(&my_db->backlog_since) != 0)
		pg_atomic_write_u64(&my_db->backlog_since, 0);
}

PoolRetire
pool_should_retire(void)
{
	TimestampTz last = (TimestampTz) pg_atomic_read_u64(&my_db->last_backlog);
	uint32		excess = pg_atomic_read_u32(&my_db->excess);

	/* more than its share while another database waits for a worker */
	while (excess > 0)
		if (pg_atomic_compare_exchange_u32(&my_db->excess, &excess, excess - 1))
			return POOL_RETIRE_FOR_ANOTHER_DATABASE;

	return TimestampDifferenceExceeds(last, GetCurrentTimestamp(),
									  payment_scale_down_after * 1000) ?
		POOL_RETIRE_IDLE : POOL_STAY;
}

/* ------------------------------------------------------------------ */
/* DROP DATABASE (pool_hooks.c) */

static int	count_pool_slots(int p, int state);

/* the pool of database dboid, or -1 */
static int
find_pool(Oid dboid)
{
	for (int p = 0; p < PAYMENT_MAX_DATABASES; p++)
		if (pg_atomic_read_u32(&pool->dbs[p].dboid) == dboid)
			return p;
	return -1;
}

int
pool_stop_database(Oid dboid, int timeout_ms)
{
	int			p;
	int			waited = 0;

	if (pool == NULL || !payment_serves_every_database() || !OidIsValid(dboid) ||
		(p = find_pool(dboid)) < 0)
		return -1;
	pg_atomic_write_u32(&pool->dbs[p].dropping, 1);
	pg_memory_barrier();
	for (int slot = 0; slot < PAYMENT_MAX_WORKERS; slot++)
	{
		uint32		procno = pg_atomic_read_u32(&payment_shared->worker_procno[slot]);

		if (pg_atomic_read_u32(&pool->slot_pool[slot]) != (uint32) p ||
			procno >= ProcGlobal->allProcCount)
			continue;
		if (ProcGlobal->allProcs[procno].databaseId == dboid &&
			ProcGlobal->allProcs[procno].pid != 0)
			kill(ProcGlobal->allProcs[procno].pid, SIGTERM);
	}
	/* SIGTERM ends any wait of theirs at once: this is short */
	while (count_pool_slots(p, SLOT_RUNNING) > 0 && waited < timeout_ms)
	{
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10 * 1000L);
		waited += 10;
	}
	return p;
}

void
pool_database_changed(int p, bool still_there)
{
	if (p < 0)
		return;
	if (still_there)
		pg_atomic_write_u32(&pool->dbs[p].dropping, 0);
	pg_atomic_write_u32(&pool->rescan, 1);
	wake_launcher();
}

/* ------------------------------------------------------------------ */
/* the launcher */

/* a base worker of a database that died is started again after this long */
#define BASE_RESTART_MS 5000
/* with '*', pg_database is read again at least this often */
#define RESCAN_EVERY_MS 10000

/* the launcher's handles: each lives as long as its worker, across ticks */
static BackgroundWorkerHandle *handles[PAYMENT_MAX_WORKERS];
static TimestampTz starting_since[PAYMENT_MAX_WORKERS];
static bool warned_no_slot = false;

/* the free slots of a tick, taken in turn */
typedef struct FreeSlots
{
	int			slot[PAYMENT_MAX_WORKERS];
	int			n;
	int			used;
} FreeSlots;

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

/* what the launcher keeps of one database's pool */
typedef struct LauncherPool
{
	bool		present;		/* in pg_database at the last look (with '*') */
	char		name[NAMEDATALEN];
	TimestampTz base_started;	/* when base workers were last started, or 0 */
	TimestampTz last_start;		/* of a worker for a backlog */
	TimestampTz last_depth;
	TimestampTz depth_backlog_since;
	int64		depth;
	DrainRate	rate;
} LauncherPool;

/* the workers of pool p: in state, or (state -1) starting or running */
static int
count_pool_slots(int p, int state)
{
	int			n = 0;

	for (int slot = 0; slot < PAYMENT_MAX_WORKERS; slot++)
	{
		uint32		st = pg_atomic_read_u32(&pool->slot_state[slot]);

		if (st == SLOT_FREE || pg_atomic_read_u32(&pool->slot_pool[slot]) != (uint32) p)
			continue;
		n += state < 0 || st == (uint32) state;
	}
	return n;
}

static bool
start_worker(int slot, int p, bool dynamic, const char *dbname)
{
	BackgroundWorker worker;
	MemoryContext old;
	bool		registered;

	pool_describe_worker(&worker, slot, BGW_NEVER_RESTART);
	/* the postmaster sets our latch when it starts or stops */
	worker.bgw_notify_pid = MyProcPid;
	if (dbname != NULL)
		strlcpy(worker.bgw_extra, dbname, BGW_EXTRALEN);

	pg_atomic_write_u32(&pool->slot_pool[slot], p);
	pg_atomic_write_u32(&pool->slot_dynamic[slot], dynamic ? 1 : 0);
	pg_atomic_write_u32(&pool->slot_state[slot], SLOT_STARTING);
	old = MemoryContextSwitchTo(TopMemoryContext);
	registered = RegisterDynamicBackgroundWorker(&worker, &handles[slot]);
	MemoryContextSwitchTo(old);
	if (!registered)
	{
		pg_atomic_write_u32(&pool->slot_state[slot], SLOT_FREE);
		handles[slot] = NULL;
	}
	return registered;
}

/* Start up to wanted workers of pool p in free slots; warns once when none could start. */
static int
start_workers(int p, int wanted, bool dynamic, const char *dbname, FreeSlots *slots)
{
	int			started = 0;

	while (started < wanted && slots->used < slots->n &&
		   start_worker(slots->slot[slots->used], p, dynamic, dbname))
	{
		ereport(DEBUG1,
				(errmsg("payment launcher started payment worker %d%s%s%s",
						slots->slot[slots->used] + 1,
						dbname ? " for database \"" : "", dbname ? dbname : "",
						dbname ? "\"" : "")));
		slots->used++;
		started++;
	}
	if (started > 0)
		warned_no_slot = false;
	if (started < wanted && slots->used < slots->n && !warned_no_slot)
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("payment launcher could not start another payment worker"),
				 errdetail("Every background worker slot is in use."),
				 errhint("Raise max_worker_processes, or lower payment.max_workers.")));
		warned_no_slot = true;
	}
	return started;
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

/* more messages wait than the running workers take in one claim each */
static bool
depth_is_backlog(int p, const QueueBackend *backend, int64 depth)
{
	int			running = count_pool_slots(p, SLOT_RUNNING);
	int			per_claim = backend->max_claim > 0 ?
		Min(payment_batch_size, backend->max_claim) : payment_batch_size;

	return running > 0 && depth > (int64) running * per_claim;
}

static void
measure_rate(int p, DrainRate *rate, TimestampTz now, bool saturated)
{
	int			running = count_pool_slots(p, SLOT_RUNNING);
	uint64		claimed = pg_atomic_read_u64(&pool->dbs[p].claimed);

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
 * scale_up_after at the measured rate, at least one, within room.
 */
static int
workers_needed(int p, int64 depth, const DrainRate *rate, int room)
{
	int			size = count_pool_slots(p, -1);
	double		per_interval;
	double		wanted;

	if (depth <= 0 || rate->per_worker <= 0)
		return Min(1, room);
	per_interval = rate->per_worker * payment_scale_up_after / 1000.0;
	wanted = ceil((double) depth / Max(per_interval, 1.0));
	if (wanted <= size)
		return Min(1, room);
	return (int) Min(wanted - size, (double) room);
}

/*
 * Free the slots of workers that stopped before they ran (fork failed, the
 * database went away, or started by a launcher before this one), and list
 * the free slots in [first, pool_max_size()).
 */
static void
collect_free_slots(FreeSlots *slots, int first, TimestampTz now)
{
	slots->n = slots->used = 0;
	for (int slot = first; slot < pool_max_size(); slot++)
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
			slots->slot[slots->n++] = slot;
	}
}

/*
 * Grow pool p while its backlog lasts: once every claim was full for
 * scale_up_after, by the size the depth needs (one database only) or one
 * worker every quarter of it, within room.  True while a backlog lasts.
 */
static bool
grow_pool(int p, LauncherPool *lp, const QueueBackend *backend, TimestampTz now,
		  int room, FreeSlots *slots, char **depth_error)
{
	PaymentDbPool *db = &pool->dbs[p];
	int			step_ms = Max(payment_scale_up_after / 4, BUSY_TICK_MS);
	TimestampTz backlog_since = (TimestampTz) pg_atomic_read_u64(&db->backlog_since);

	measure_rate(p, &lp->rate, now, !payment_paused && backlog_since != 0);

	/*
	 * A backend that can tell its depth is asked (at most once a second):
	 * while claims are full, for the size the backlog needs; without them,
	 * more waiting than the running workers take in a claim each, for
	 * scale_up_after, is a backlog too.  The launcher, in no database, can
	 * only ask the server's queue settings: with '*' it does not ask.
	 */
	if (payment_paused || payment_serves_every_database() || backend->depth == NULL)
	{
		lp->depth_backlog_since = 0;
		lp->depth = -1;
	}
	else if (TimestampDifferenceExceeds(lp->last_depth, now,
										backlog_since != 0 ? DEPTH_EVERY_MS :
										Max(payment_scale_up_after, DEPTH_EVERY_MS)))
	{
		lp->last_depth = now;
		lp->depth = ask_depth(backend, depth_error);
		if (backlog_since != 0 || !depth_is_backlog(p, backend, lp->depth))
			lp->depth_backlog_since = 0;
		else
		{
			/* the workers started for it must not retire meanwhile */
			pg_atomic_write_u64(&db->last_backlog, (uint64) now);
			if (lp->depth_backlog_since == 0)
				lp->depth_backlog_since = now;
		}
	}
	if (backlog_since == 0)
		backlog_since = lp->depth_backlog_since;

	if (!payment_paused && backlog_since != 0 && room > 0 && slots->used < slots->n &&
		TimestampDifferenceExceeds(backlog_since, now, payment_scale_up_after) &&
		TimestampDifferenceExceeds(lp->last_start, now, step_ms))
	{
		int			wanted = workers_needed(p, lp->depth, &lp->rate,
											Min(room, slots->n - slots->used));
		int			started;

		started = start_workers(p, wanted, true,
								payment_serves_every_database() ? lp->name : NULL, slots);
		if (started > 0)
		{
			lp->last_start = now;
			payment_count(&payment_shared->counters.scale_events, started);
		}
	}
	return backlog_since != 0;
}

/* ------------------------------------------------------------------ */
/* with '*': the databases */

typedef struct FoundDatabase
{
	Oid			oid;
	char		name[NAMEDATALEN];
} FoundDatabase;

/*
 * The databases a worker can connect to, from pg_database (a shared
 * catalog: the launcher reads it connected to no database).
 */
static int
list_databases(FoundDatabase *found, int max)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	int			n = 0;
	static bool warned = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tuple = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);

		if (!db->datallowconn || db->datistemplate)
			continue;
#ifdef DATCONNLIMIT_INVALID_DB
		/* left by a DROP DATABASE that was interrupted */
		if (db->datconnlimit == DATCONNLIMIT_INVALID_DB)
			continue;
#endif
		if (n == max)
		{
			if (!warned)
				ereport(WARNING,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("payment launcher looks at the first %d databases only", max)));
			warned = true;
			break;
		}
		found[n].oid = db->oid;
		strlcpy(found[n].name, NameStr(db->datname), NAMEDATALEN);
		n++;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(true);
	return n;
}

/* Bring the pools in line with pg_database: new databases get one, gone ones lose it. */
static void
scan_databases(LauncherPool *lps)
{
	FoundDatabase found[PAYMENT_MAX_DATABASES];
	MemoryContext context = CurrentMemoryContext;
	int			nfound = list_databases(found, PAYMENT_MAX_DATABASES);

	MemoryContextSwitchTo(context);
	for (int p = 0; p < PAYMENT_MAX_DATABASES; p++)
	{
		Oid			oid = pg_atomic_read_u32(&pool->dbs[p].dboid);

		lps[p].present = false;
		if (!OidIsValid(oid))
			continue;
		for (int i = 0; i < nfound; i++)
			if (found[i].oid == oid)
			{
				lps[p].present = true;
				/* a rename: the next workers connect by the new name */
				strlcpy(lps[p].name, found[i].name, NAMEDATALEN);
				found[i].oid = InvalidOid;
				break;
			}
		/* a database gone: its pool is forgotten once its last worker left */
		if (!lps[p].present && count_pool_slots(p, -1) == 0)
			pg_atomic_write_u32(&pool->dbs[p].dboid, InvalidOid);
	}
	for (int i = 0; i < nfound; i++)
	{
		int			p;
		PaymentDbPool *db;

		if (!OidIsValid(found[i].oid))
			continue;
		for (p = 0; p < PAYMENT_MAX_DATABASES; p++)
			if (!OidIsValid(pg_atomic_read_u32(&pool->dbs[p].dboid)) &&
				count_pool_slots(p, -1) == 0)
				break;
		if (p == PAYMENT_MAX_DATABASES)
			break;				/* cannot happen: as many pools as databases listed */
		db = &pool->dbs[p];
		pg_atomic_write_u32(&db->dropping, 0);
		pg_atomic_write_u32(&db->absent, 0);
		pg_atomic_write_u32(&db->excess, 0);
		pg_atomic_write_u64(&db->backlog_since, 0);
		pg_atomic_write_u64(&db->last_backlog, 0);
		memset(&lps[p], 0, sizeof(LauncherPool));
		lps[p].present = true;
		strlcpy(lps[p].name, found[i].name, NAMEDATALEN);
		pg_write_barrier();
		pg_atomic_write_u32(&db->dboid, found[i].oid);
	}
}

/* pool p is to be served: in pg_database, not being dropped, not known to lack the extension */
static bool
pool_is_served(int p, const LauncherPool *lps, uint32 created)
{
	PaymentDbPool *db = &pool->dbs[p];

	return lps[p].present && OidIsValid(pg_atomic_read_u32(&db->dboid)) &&
		pg_atomic_read_u32(&db->dropping) == 0 &&
		pg_atomic_read_u32(&db->absent) != created + 1;
}

/*
 * Every database served: each gets its base workers (payment.workers, within
 * its share), which look for the extension first; a base worker that died
 * is started again after BASE_RESTART_MS.  Returns the share of each.
 */
static int
serve_databases(LauncherPool *lps, FreeSlots *slots, TimestampTz now, uint32 created)
{
	int			nserved = 0;
	int			share;
	int			base;
	bool		waiting = false;

	for (int p = 0; p < PAYMENT_MAX_DATABASES; p++)
		nserved += pool_is_served(p, lps, created);
	share = Max(1, pool_max_size() / Max(nserved, 1));
	base = Max(1, Min(payment_workers, share));

	for (int p = 0; p < PAYMENT_MAX_DATABASES; p++)
	{
		int			size;

		if (!pool_is_served(p, lps, created))
			continue;
		size = count_pool_slots(p, -1);
		if (size >= base)
			continue;
		if (lps[p].base_started != 0 &&
			!TimestampDifferenceExceeds(lps[p].base_started, now, BASE_RESTART_MS))
			continue;
		if (start_workers(p, base - size, false, lps[p].name, slots) > 0)
			lps[p].base_started = now;
		else
			waiting = true;
	}

	/* a database waits for a slot: the pools above their share give theirs back */
	for (int p = 0; p < PAYMENT_MAX_DATABASES && waiting; p++)
	{
		int			over = count_pool_slots(p, -1) - share;

		if (over > 0 && pg_atomic_read_u32(&pool->dbs[p].excess) == 0)
			pg_atomic_write_u32(&pool->dbs[p].excess, over);
	}
	return share;
}

static void
forget_launcher(int code, Datum arg)
{
	pg_atomic_write_u32(&pool->launcher_procno, PG_UINT32_MAX);
}

void
payment_launcher_main(Datum main_arg)
{
	static LauncherPool lps[PAYMENT_MAX_DATABASES];
	bool		every = payment_serves_every_database();
	TimestampTz last_scan = 0;
	uint32		last_created = 0;
	char	   *depth_error = NULL;
	MemoryContext tick_context;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	pg_atomic_write_u32(&pool->launcher_procno, MyProc->pgprocno);
	before_shmem_exit(forget_launcher, (Datum) 0);
	tick_context = AllocSetContextCreate(TopMemoryContext, "payment launcher tick",
										 ALLOCSET_DEFAULT_SIZES);
	if (every)
		ereport(LOG,
				(errmsg("payment launcher serves every database that has the extension")));

	for (;;)
	{
		TimestampTz now;
		FreeSlots	slots;
		bool		backlog = false;
		const QueueBackend *backend;

		drain_handle_signals(NULL);
		now = GetCurrentTimestamp();
		MemoryContextReset(tick_context);
		MemoryContextSwitchTo(tick_context);
		/* with '*' no queue's depth is asked (nor is SQS allowed: queue_backend) */
		backend = every ? NULL : queue_backend();

		collect_free_slots(&slots, every ? 0 : payment_workers, now);

		if (!every)
			backlog = grow_pool(0, &lps[0], backend, now, slots.n, &slots, &depth_error);
		else
		{
			uint32		created = payment_extensions_created();
			int			share;

			/* a CREATE EXTENSION: every database is looked at again */
			if (created != last_created)
				for (int p = 0; p < PAYMENT_MAX_DATABASES; p++)
					lps[p].base_started = 0;
			if (created != last_created ||
				pg_atomic_exchange_u32(&pool->rescan, 0) != 0 ||
				TimestampDifferenceExceeds(last_scan, now, RESCAN_EVERY_MS))
			{
				scan_databases(lps);
				MemoryContextSwitchTo(tick_context);
				last_scan = now;
			}
			last_created = created;
			share = serve_databases(lps, &slots, now, created);
			for (int p = 0; p < PAYMENT_MAX_DATABASES; p++)
				if (pool_is_served(p, lps, created))
					backlog |= grow_pool(p, &lps[p], backend, now,
										 share - count_pool_slots(p, -1), &slots,
										 &depth_error);
		}

		MemoryContextSwitchTo(TopMemoryContext);
		(void) drain_wait(backlog ? BUSY_TICK_MS : IDLE_TICK_MS, false, NULL);
	}
}
