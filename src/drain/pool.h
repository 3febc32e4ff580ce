/*-------------------------------------------------------------------------
 * pool.h
 *	  The elastic pool of payment workers (pool.c): its settings, the
 *	  launcher that starts dynamic workers while a backlog lasts, and what
 *	  the workers tell it.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_POOL_H
#define PAYMENT_POOL_H

#include "fmgr.h"
#include "postmaster/bgworker.h"

#include "payment.h"

/* with payment.database '*': most databases the launcher keeps a pool for */

extern int	payment_max_workers;
extern int	payment_scale_up_after;
extern int	payment_scale_down_after;

extern void pool_define_settings(void);

/* the pool's struct in shared memory (see PaymentShmem) */
extern const PaymentShmem pool_shmem;

/* register the launcher; from _PG_init while preloading */
extern void pool_register_launcher(void);

/* fill in a background worker of the pool: any process, or the worker of a slot */
extern void pool_describe_process(BackgroundWorker *worker, const char *function,
								  int restart_time);
extern void pool_describe_worker(BackgroundWorker *worker, int slot, int restart_time);

extern PGDLLEXPORT void payment_launcher_main(Datum main_arg);

/* slots below payment.workers are static: restarted, never retired */
extern bool pool_slot_is_dynamic(int slot);

/* the database a worker connects to: payment.database, or with '*' the launcher's pick */
extern const char *pool_worker_database(void);

/* a worker's life in its slot */
extern void pool_worker_started(int slot);
extern void pool_worker_exiting(int slot);

/*
 * With '*', after the worker is attached: false when its database is being
 * dropped (the worker exits); and a worker that found no extension exits
 * through pool_worker_no_extension(payment_extensions_created() read before
 * it looked), the database remembered until the next CREATE EXTENSION.
 */
extern bool pool_worker_may_serve(void);
extern void pool_worker_no_extension(uint32 looked_at) pg_attribute_noreturn();

/*
 * DROP DATABASE (pool_hooks.c): stop the workers of dboid and wait up to
 * timeout_ms for them to exit; returns its pool, or -1 when none serves it.
 * Then pool_database_changed(pool, whether the database is still there).
 */
extern int	pool_stop_database(Oid dboid, int timeout_ms);
extern void pool_database_changed(int p, bool still_there);

/* after each claim: full batches are the backlog signal */
extern void pool_note_claim(int count, int wanted);

/* whether a dynamic worker should exit, and why */
typedef enum PoolRetire
{
	POOL_STAY,
	POOL_RETIRE_IDLE,			/* no backlog for scale_down_after */
	POOL_RETIRE_FOR_ANOTHER_DATABASE	/* with '*': its slot goes to a database waiting for one */
} PoolRetire;

extern PoolRetire pool_should_retire(void);

#endif							/* PAYMENT_POOL_H */
