/*-------------------------------------------------------------------------
 * payment.c
 *	  The extension's core, below every layer: the core settings (payment.*),
 *	  the shared-memory counters behind payment.stats, waking the workers at
 *	  the commit of an enqueue, and preparing SPI plans once.  Module
 *	  start-up, which calls into every layer, is module.c.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "commands/dbcommands.h"
#include "utils/array.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "payment.h"

char	   *payment_database = NULL;
int			payment_workers = 2;
int			payment_batch_size = 100;
int			payment_visibility_timeout = 30;
int			payment_max_receive_count = 3;
int			payment_max_payload_size = 1024 * 1024;
int			payment_max_batch_payments = 1000;
bool		payment_paused = false;
int			payment_batch_window = 5;

bool		payment_preloaded = false;
int			payment_worker_index = -1;
PaymentShared *payment_shared = NULL;

/* set when this transaction enqueued something; workers are woken at commit */
static bool wake_at_commit = false;
static uint64 submitted_in_xact = 0;
/* set when this transaction ran CREATE EXTENSION payment; the launcher is told at commit */
static bool extension_created_in_xact = false;
/* set when this transaction ran DROP EXTENSION payment; this database's workers are woken at commit */
static bool extension_dropped_in_xact = false;
static bool xact_callback_registered = false;

static void payment_xact_callback(XactEvent event, void *arg);

void
payment_define_settings(void)
{
	/*
	 * Restart-only settings can be defined only while preloading; a backend
	 * that loads the library later (not preloaded: no workers) shows them as
	 * reload settings instead of failing.
	 */
	GucContext	restart_only = process_shared_preload_libraries_in_progress ?
		PGC_POSTMASTER : PGC_SIGHUP;

	DefineCustomStringVariable("payment.database",
							   gettext_noop("Database the payment workers serve; '*': every database that has the extension."),
							   gettext_noop("With '*', payment.max_workers is shared between the databases served."),
							   &payment_database,
							   "postgres",
							   restart_only,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("payment.workers",
							gettext_noop("Number of payment background workers."),
							NULL,
							&payment_workers,
							2, 0, PAYMENT_MAX_WORKERS,
							restart_only,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payment.batch_size",
							gettext_noop("Messages a worker claims and stores per transaction."),
							gettext_noop("A receive from SQS takes at most 10."),
							&payment_batch_size,
							100, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payment.batch_window",
							gettext_noop("How long a worker woken by a commit waits for more messages before it claims a batch."),
							gettext_noop("0 claims at once: lowest latency, one transaction per message under a light load."),
							&payment_batch_window,
							5, 0, 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payment.visibility_timeout",
							gettext_noop("Seconds a claimed message stays invisible to other workers."),
							NULL,
							&payment_visibility_timeout,
							30, 1, 12 * 60 * 60,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payment.max_receive_count",
							gettext_noop("Receives after which an unstorable message is dead-lettered."),
							NULL,
							&payment_max_receive_count,
							3, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("payment.paused",
							 gettext_noop("Stops the workers from draining the queue; submissions still queue."),
							 NULL,
							 &payment_paused,
							 false,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("payment.max_payload_size",
							gettext_noop("Largest accepted payment document, in bytes of JSON text."),
							NULL,
							&payment_max_payload_size,
							1024 * 1024, 64, 1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payment.max_batch_payments",
							gettext_noop("Most payments accepted in one call of submit_payments."),
							NULL,
							&payment_max_batch_payments,
							1000, 1, 1000000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
}

void
payment_shmem_attach(const PaymentShmem *part)
{
	bool		found;
	void	   *shared = ShmemInitStruct(part->name, part->size, &found);

	part->attach(shared, !found);
}

static void
init_counters(PaymentCounters *c)
{
	pg_atomic_init_u64(&c->submitted, 0);
	pg_atomic_init_u64(&c->stored, 0);
	pg_atomic_init_u64(&c->duplicates, 0);
	pg_atomic_init_u64(&c->conflicts, 0);
	pg_atomic_init_u64(&c->dead_lettered, 0);
	pg_atomic_init_u64(&c->retried, 0);
	pg_atomic_init_u64(&c->redriven, 0);
	pg_atomic_init_u64(&c->scale_events, 0);
	for (int i = 0; i < PAYMENT_DEAD_LETTER_REASONS; i++)
		pg_atomic_init_u64(&c->dead_lettered_by_reason[i], 0);
}

static void
core_shmem_attach(void *shared, bool first)
{
	payment_shared = shared;
	if (first)
	{
		init_counters(&payment_shared->counters);
		for (int d = 0; d < PAYMENT_MAX_DATABASES; d++)
		{
			pg_atomic_init_u32(&payment_shared->counted_database[d], InvalidOid);
			init_counters(&payment_shared->database_counters[d]);
		}
		for (int i = 0; i < PAYMENT_MAX_WORKERS; i++)
		{
			pg_atomic_init_u32(&payment_shared->worker_procno[i], PG_UINT32_MAX);
			pg_atomic_init_u32(&payment_shared->worker_wakeable[i], 0);
			pg_atomic_init_u32(&payment_shared->worker_busy[i], 0);
			pg_atomic_init_u64(&payment_shared->worker_wake_pending[i], 0);
		}
		pg_atomic_init_u64(&payment_shared->wake_pending_since, 0);
		pg_atomic_init_u32(&payment_shared->extensions_created, 0);
	}
}

const PaymentShmem payment_core_shmem = {"payment", sizeof(PaymentShared), core_shmem_attach};

void
payment_count(pg_atomic_uint64 *counter, uint64 n)
{
	if (payment_shared != NULL && n > 0)
		pg_atomic_fetch_add_u64(counter, n);
}

/* A worker that runs: a commit finds its latch through its pgprocno. */
void
payment_worker_attach(int worker_index)
{
	payment_worker_index = worker_index;
	pg_atomic_write_u32(&payment_shared->worker_procno[worker_index], MyProc->pgprocno);
}

/* A worker that exits: nobody wakes it, and it stores nothing. */
void
payment_worker_detach(int worker_index)
{
	pg_atomic_write_u32(&payment_shared->worker_procno[worker_index], PG_UINT32_MAX);
	pg_atomic_write_u32(&payment_shared->worker_busy[worker_index], 0);
}

void
payment_worker_set_busy(int worker_index, bool busy)
{
	pg_atomic_write_u32(&payment_shared->worker_busy[worker_index], busy ? 1 : 0);
}

/*
 * Wake one worker for new messages, as a commit does.  Waking every worker
 * at every commit had them all claim a share of the same few messages: many
 * small batches, each costing two transactions.  So one wakeable worker is
 * woken, unless a wake is pending: the worker woken earlier has not taken
 * its claim's snapshot yet, which will include this commit.  A pending wake
 * older than a few batching windows is ignored, so a worker that died
 * before its claim delays nothing.  A claim that comes back full wakes
 * another worker (see run_batch), so a backlog engages them all.  No worker
 * wakeable means each is busy, and claims again before it sleeps.
 */
/* worker slot i runs, connected to this backend's database */
static bool
is_worker_of_this_database(int i)
{
	uint32		procno = pg_atomic_read_u32(&payment_shared->worker_procno[i]);

	return procno < ProcGlobal->allProcCount &&
		ProcGlobal->allProcs[procno].databaseId == MyDatabaseId;
}

/*
 * With payment.database '*': the same within this database.  A commit here
 * must wake a worker of this database, and a wake pending in another
 * database says nothing of this one's: the pending wake is kept per worker.
 */
static void
wake_worker_of_this_database(TimestampTz now)
{
	static int	next = 0;

	for (int i = 0; i < PAYMENT_MAX_WORKERS; i++)
	{
		TimestampTz pending;

		if (!is_worker_of_this_database(i))
			continue;
		pending = (TimestampTz) pg_atomic_read_u64(&payment_shared->worker_wake_pending[i]);
		if (pending != 0 &&
			!TimestampDifferenceExceeds(pending, now, 3 * payment_batch_window + 10))
			return;
	}
	for (int n = 0; n < PAYMENT_MAX_WORKERS; n++)
	{
		int			i = (next + n) % PAYMENT_MAX_WORKERS;

		if (!is_worker_of_this_database(i) ||
			pg_atomic_exchange_u32(&payment_shared->worker_wakeable[i], 0) == 0)
			continue;
		pg_atomic_write_u64(&payment_shared->worker_wake_pending[i], (uint64) now);
		SetLatch(&ProcGlobal->allProcs[pg_atomic_read_u32(&payment_shared->worker_procno[i])].procLatch);
		next = i + 1;
		return;
	}
}

void
payment_wake_workers(void)
{
	static int	next = 0;
	TimestampTz now;
	TimestampTz pending;

	if (payment_shared == NULL)
		return;
	now = GetCurrentTimestamp();
	if (payment_serves_every_database())
	{
		wake_worker_of_this_database(now);
		return;
	}
	pending = (TimestampTz) pg_atomic_read_u64(&payment_shared->wake_pending_since);
	if (pending != 0 &&
		!TimestampDifferenceExceeds(pending, now, 3 * payment_batch_window + 10))
		return;
	for (int n = 0; n < PAYMENT_MAX_WORKERS; n++)
	{
		int			i = (next + n) % PAYMENT_MAX_WORKERS;
		uint32		procno = pg_atomic_read_u32(&payment_shared->worker_procno[i]);

		if (procno >= ProcGlobal->allProcCount ||
			pg_atomic_exchange_u32(&payment_shared->worker_wakeable[i], 0) == 0)
			continue;
		pg_atomic_write_u64(&payment_shared->wake_pending_since, (uint64) now);
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
		next = i + 1;
		return;
	}
}

/*
 * A worker about to claim: from now on a commit may wake it, and a pending
 * wake is answered by this claim, whose snapshot is taken after (the
 * exchanges are full barriers).
 */
void
payment_worker_about_to_claim(int worker_index)
{
	pg_atomic_exchange_u32(&payment_shared->worker_wakeable[worker_index], 1);
	pg_atomic_exchange_u64(&payment_shared->wake_pending_since, 0);
	pg_atomic_exchange_u64(&payment_shared->worker_wake_pending[worker_index], 0);
}

/* A worker that will claim within the batching window, unwoken: a commit wakes no other. */
void
payment_worker_will_claim(void)
{
	TimestampTz now = GetCurrentTimestamp();

	pg_atomic_write_u64(&payment_shared->wake_pending_since, (uint64) now);
	if (payment_worker_index >= 0)
		pg_atomic_write_u64(&payment_shared->worker_wake_pending[payment_worker_index],
							(uint64) now);
}

/* A worker that claimed a batch: it claims again before it sleeps. */
void
payment_worker_has_work(int worker_index)
{
	pg_atomic_write_u32(&payment_shared->worker_wakeable[worker_index], 0);
}

PaymentCounters *
payment_counters_here(void)
{
	static PaymentCounters *here = NULL;

	if (payment_shared == NULL)
		return NULL;
	if (here != NULL)
		return here;
	if (!payment_serves_every_database() || !OidIsValid(MyDatabaseId))
		return &payment_shared->counters;

	/* a process serves one database: the slot found (or taken) once is kept */
	for (int d = 0; d < PAYMENT_MAX_DATABASES && here == NULL; d++)
	{
		uint32		owner = InvalidOid;

		if (pg_atomic_compare_exchange_u32(&payment_shared->counted_database[d], &owner,
										   MyDatabaseId) || owner == MyDatabaseId)
			here = &payment_shared->database_counters[d];
	}
	return here ? here : &payment_shared->counters;
}

bool
payment_serves_every_database(void)
{
	return payment_database != NULL && strcmp(payment_database, "*") == 0;
}

uint32
payment_extensions_created(void)
{
	return payment_shared != NULL ?
		pg_atomic_read_u32(&payment_shared->extensions_created) : 0;
}

void
payment_note_extension_created(void)
{
	if (!payment_preloaded || !payment_serves_every_database())
		return;
	if (!xact_callback_registered)
	{
		RegisterXactCallback(payment_xact_callback, NULL);
		xact_callback_registered = true;
	}
	extension_created_in_xact = true;
}

void
payment_note_extension_dropped(void)
{
	if (!payment_preloaded || !payment_serves_every_database())
		return;
	if (!xact_callback_registered)
	{
		RegisterXactCallback(payment_xact_callback, NULL);
		xact_callback_registered = true;
	}
	extension_dropped_in_xact = true;
}

/* After DROP EXTENSION: each worker here looks, finds no extension and leaves. */
static void
wake_every_worker_of_this_database(void)
{
	for (int i = 0; i < PAYMENT_MAX_WORKERS; i++)
		if (is_worker_of_this_database(i))
			SetLatch(&ProcGlobal->allProcs[pg_atomic_read_u32(&payment_shared->worker_procno[i])].procLatch);
}

bool
payment_serves_this_database(void)
{
	static int	serves = -1;	/* a backend never changes database */

	/* every database with the extension has a pool (drain/pool.c) */
	if (payment_serves_every_database())
		return true;
	if (serves < 0)
	{
		char	   *name = get_database_name(MyDatabaseId);

		serves = name != NULL && payment_database != NULL &&
			strcmp(name, payment_database) == 0;
	}
	return serves == 1;
}

void
payment_warn_if_unserved(void)
{
	if (!payment_preloaded || payment_serves_this_database())
		return;
	ereport(WARNING,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("no payment worker serves database \"%s\"",
					get_database_name(MyDatabaseId)),
			 errdetail("The payment workers serve database \"%s\": payments queued here stay queued, and with SQS they are stored there.",
					   payment_database),
			 errhint("Use the payment extension in database \"%s\", or set payment.database to this database and restart the server.",
					 payment_database)));
}

/* with payment.database '*', only the workers of this database count */
int
payment_workers_busy(void)
{
	int			busy = 0;
	bool		every = payment_serves_every_database();

	if (payment_shared == NULL)
		return 0;
	for (int i = 0; i < PAYMENT_MAX_WORKERS; i++)
	{
		if (pg_atomic_read_u32(&payment_shared->worker_busy[i]) == 0)
			continue;
		if (every && !is_worker_of_this_database(i))
			continue;
		busy++;
	}
	return busy;
}

/*
 * Only a committed enqueue wakes workers or counts; a rollback does nothing.
 * A committed CREATE EXTENSION is visible to a worker that looks after this.
 */
static void
payment_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (extension_created_in_xact && payment_shared != NULL)
				pg_atomic_fetch_add_u32(&payment_shared->extensions_created, 1);
			extension_created_in_xact = false;
			if (extension_dropped_in_xact && payment_shared != NULL)
				wake_every_worker_of_this_database();
			extension_dropped_in_xact = false;
			if (wake_at_commit)
			{
				if (payment_shared != NULL)
					payment_count(&payment_counters_here()->submitted,
								  submitted_in_xact);
				payment_wake_workers();
			}
			wake_at_commit = false;
			submitted_in_xact = 0;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			extension_created_in_xact = false;
			extension_dropped_in_xact = false;
			wake_at_commit = false;
			submitted_in_xact = 0;
			break;
		default:
			break;
	}
}

/* Called by the entry points after an enqueue in the current transaction. */
void
payment_note_enqueued(uint64 n)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(payment_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit = true;
	submitted_in_xact += n;
}

/* UUIDs as gen_random_uuid() makes them (version 4), from one call to the random source. */
void
payment_random_uuids(pg_uuid_t *ids, int count)
{
	if (!pg_strong_random(ids, sizeof(pg_uuid_t) * count))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random values")));
	for (int i = 0; i < count; i++)
	{
		ids[i].data[6] = (ids[i].data[6] & 0x0f) | 0x40;	/* version 4 */
		ids[i].data[8] = (ids[i].data[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
	}
}

char *
payment_random_uuid_text(void)
{
	pg_uuid_t	id;

	payment_random_uuids(&id, 1);
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&id)));
}

/* A one-dimensional array of count items of type (nulls may be NULL), for an SPI parameter. */
Datum
payment_array(Datum *items, bool *nulls, int count, Oid type)
{
	int			dims[1] = {count};
	int			lbs[1] = {1};
	int16		typlen;
	bool		byval;
	char		align;

	get_typlenbyvalalign(type, &typlen, &byval, &align);
	return PointerGetDatum(construct_md_array(items, nulls, 1, dims, lbs, type, typlen, byval, align));
}

/* SPI_prepare + SPI_keepplan, once per process */
SPIPlanPtr
payment_prepare(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, argtypes);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s",
				 sql, SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*plan = p;
	}
	return *plan;
}
