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
#include "utils/guc.h"

#include "payment.h"

char	   *payment_database = NULL;
int			payment_workers = 2;
int			payment_batch_size = 10;
int			payment_visibility_timeout = 30;
int			payment_max_receive_count = 3;
int			payment_max_payload_size = 1024 * 1024;
bool		payment_paused = false;
int			payment_batch_window = 5;

bool		payment_preloaded = false;
PaymentShared *payment_shared = NULL;

/* set when this transaction enqueued something; workers are woken at commit */
static bool wake_at_commit = false;
static uint64 submitted_in_xact = 0;
static bool xact_callback_registered = false;

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
							   gettext_noop("Database the payment workers serve."),
							   NULL,
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
							NULL,
							&payment_batch_size,
							10, 1, 1000,
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
}

Size
payment_shmem_size(void)
{
	return MAXALIGN(sizeof(PaymentShared));
}

/* At shared-memory start-up, AddinShmemInitLock held. */
void
payment_shmem_init(void)
{
	bool		found;

	payment_shared = ShmemInitStruct("payment", payment_shmem_size(), &found);
	if (!found)
	{
		PaymentCounters *c = &payment_shared->counters;

		pg_atomic_init_u64(&c->submitted, 0);
		pg_atomic_init_u64(&c->stored, 0);
		pg_atomic_init_u64(&c->duplicates, 0);
		pg_atomic_init_u64(&c->conflicts, 0);
		pg_atomic_init_u64(&c->dead_lettered, 0);
		pg_atomic_init_u64(&c->retried, 0);
		pg_atomic_init_u64(&c->redriven, 0);
		for (int i = 0; i < PAYMENT_MAX_WORKERS; i++)
			pg_atomic_init_u32(&payment_shared->worker_procno[i], PG_UINT32_MAX);
	}
}

void
payment_count(pg_atomic_uint64 *counter, uint64 n)
{
	if (payment_shared != NULL && n > 0)
		pg_atomic_fetch_add_u64(counter, n);
}

/* Set the latch of every running worker; they share the work by SKIP LOCKED. */
void
payment_wake_workers(void)
{
	if (payment_shared == NULL)
		return;
	for (int i = 0; i < PAYMENT_MAX_WORKERS; i++)
	{
		uint32		procno = pg_atomic_read_u32(&payment_shared->worker_procno[i]);

		if (procno < ProcGlobal->allProcCount)
			SetLatch(&ProcGlobal->allProcs[procno].procLatch);
	}
}

/* Only a committed enqueue wakes workers or counts; a rollback does nothing. */
static void
payment_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit)
			{
				if (payment_shared != NULL)
					payment_count(&payment_shared->counters.submitted,
								  submitted_in_xact);
				payment_wake_workers();
			}
			wake_at_commit = false;
			submitted_in_xact = 0;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
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
