/*-------------------------------------------------------------------------
 * module.c
 *	  Module start-up, the top of the extension: _PG_init defines every
 *	  layer's settings, and, when preloaded, reserves shared memory and
 *	  registers the background workers.  Nothing includes this file.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "common/http.h"
#include "drain/pool.h"
#include "drain/pool_hooks.h"
#include "drain/worker.h"
#include "drain/worker_session.h"
#include "frontdoor/auth.h"
#include "latency.h"
#include "payment.h"
#include "queue/queue.h"
#include "schema/json_schema.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* each layer owns its struct in shared memory: here they are only gathered */
#define NUM_SHMEM_PARTS 4

static void
shmem_parts(const PaymentShmem *parts[NUM_SHMEM_PARTS])
{
	parts[0] = &payment_core_shmem;
	parts[1] = &pool_shmem;
	parts[2] = queue_shmem();
	parts[3] = &payment_latency_shmem;
}

static void
payment_shmem_request(void)
{
	const PaymentShmem *parts[NUM_SHMEM_PARTS];
	Size		size = payment_auth_shmem_size();

	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	shmem_parts(parts);
	for (int i = 0; i < NUM_SHMEM_PARTS; i++)
		size = add_size(size, MAXALIGN(parts[i]->size));
	RequestAddinShmemSpace(size);
}

static void
payment_shmem_startup(void)
{
	const PaymentShmem *parts[NUM_SHMEM_PARTS];

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	shmem_parts(parts);
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	for (int i = 0; i < NUM_SHMEM_PARTS; i++)
		payment_shmem_attach(parts[i]);
	LWLockRelease(AddinShmemInitLock);

	payment_auth_shmem_startup();
}

void
_PG_init(void)
{
	payment_define_settings();
	pool_define_settings();
	worker_session_define_settings();
	http_define_settings();
	payment_auth_init();
	queue_define_settings();
	json_schema_define_settings();

	/*
	 * Only after every payment.* setting is defined: reserving the prefix
	 * removes the placeholders that postgresql.conf created for settings not
	 * yet defined, and their values with them.
	 */
	MarkGUCPrefixReserved("payment");

	if (!process_shared_preload_libraries_in_progress)
		return;

	payment_preloaded = true;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = payment_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = payment_shmem_startup;

	payment_register_workers();
	pool_install_hooks();
}
