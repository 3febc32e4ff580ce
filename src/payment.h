/*-------------------------------------------------------------------------
 * payment.h
 *	  The extension's core (payment.c), below every layer: the core
 *	  settings, the shared-memory state every layer counts in and how a
 *	  layer's own struct joins shared memory (PaymentShmem), waking the
 *	  workers, and preparing SPI plans.  Each layer's own interface is in
 *	  its folder; module start-up is module.c.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_H
#define PAYMENT_H

#include "nodes/pg_list.h"
#include "port/atomics.h"
#include "utils/jsonb.h"

#define PAYMENT_MAX_WORKERS 32
#define PAYMENT_WORKER_TYPE "payment worker"

/* settings owned by payment.c */
extern char *payment_database;
extern int	payment_workers;
extern int	payment_batch_size;
extern int	payment_visibility_timeout;
extern int	payment_max_receive_count;
extern int	payment_max_payload_size;
extern int	payment_max_batch_payments;
extern bool payment_paused;
extern int	payment_batch_window;

/* true when loaded through shared_preload_libraries */
extern bool payment_preloaded;

/* DeadLetterReason's values (queue/backend.h), 0 (none) included */
#define PAYMENT_DEAD_LETTER_REASONS 4

/* Counters since server start, kept in shared memory (see payment.stats). */
typedef struct PaymentCounters
{
	pg_atomic_uint64 submitted;
	pg_atomic_uint64 stored;
	pg_atomic_uint64 duplicates;
	pg_atomic_uint64 conflicts;
	pg_atomic_uint64 dead_lettered;
	pg_atomic_uint64 retried;
	pg_atomic_uint64 redriven;
	pg_atomic_uint64 scale_events;	/* dynamic workers started or retired */
	/* dead_lettered by DeadLetterReason (payment.metrics()) */
	pg_atomic_uint64 dead_lettered_by_reason[PAYMENT_DEAD_LETTER_REASONS];
} PaymentCounters;

/* the databases payment.database '*' serves at most (the launcher's, the counters') */
#define PAYMENT_MAX_DATABASES 64

typedef struct PaymentShared
{
	/* the server's counters (payment.database '*': what no database owns, scale_events) */
	PaymentCounters counters;
	/* payment.database '*': each database's, the slot taken by its oid (0: free) */
	pg_atomic_uint32 counted_database[PAYMENT_MAX_DATABASES];
	PaymentCounters database_counters[PAYMENT_MAX_DATABASES];
	/* pgprocno of each running worker, or -1; a latch is found through it */
	pg_atomic_uint32 worker_procno[PAYMENT_MAX_WORKERS];
	/* 1 from before a worker's claim until it has work: a commit may wake it */
	pg_atomic_uint32 worker_wakeable[PAYMENT_MAX_WORKERS];
	/* 1 while a worker stores a batch (payment.stats.workers_busy) */
	pg_atomic_uint32 worker_busy[PAYMENT_MAX_WORKERS];
	/* TimestampTz of a wake not yet followed by a claim, or 0 */
	pg_atomic_uint64 wake_pending_since;
	/* with payment.database '*': the same, per worker (wakes stay in a database) */
	pg_atomic_uint64 worker_wake_pending[PAYMENT_MAX_WORKERS];
	/* bumped at the commit of each CREATE EXTENSION payment (payment.database '*') */
	pg_atomic_uint32 extensions_created;
} PaymentShared;

extern PaymentShared *payment_shared;

/*
 * The counters this process adds to and payment.stats shows: the server's,
 * or with payment.database '*' its database's (the server's again for the
 * launcher, in no database, and past PAYMENT_MAX_DATABASES databases).
 * NULL when the library is not preloaded.  scale_events is always the
 * server's.
 */
extern PaymentCounters *payment_counters_here(void);

/*
 * A layer's struct in shared memory (the core's, the pool's, the queue's):
 * module.c reserves its size, and at shared-memory start-up (with
 * AddinShmemInitLock held) payment_shmem_attach finds or makes it and calls
 * attach, which points the layer at it; first: no process set it up yet.
 */
typedef struct PaymentShmem
{
	const char *name;
	Size		size;
	void		(*attach) (void *shared, bool first);
} PaymentShmem;

extern const PaymentShmem payment_core_shmem;
extern void payment_shmem_attach(const PaymentShmem *part);

extern void payment_define_settings(void);

extern void payment_count(pg_atomic_uint64 *counter, uint64 n);

/*
 * A worker's life as the commits that wake it and payment.stats see it.
 * payment_worker_index is this process's worker slot (worker number - 1),
 * or -1 in any other process.
 */
extern int	payment_worker_index;
extern void payment_worker_attach(int worker_index);
extern void payment_worker_detach(int worker_index);
extern void payment_worker_set_busy(int worker_index, bool busy);

extern void payment_wake_workers(void);
extern void payment_worker_about_to_claim(int worker_index);
extern void payment_worker_has_work(int worker_index);
extern void payment_worker_will_claim(void);
extern void payment_note_enqueued(uint64 n);

/*
 * Whether the workers serve the current database (payment.database), and a
 * WARNING (55000) when they do not: what is queued here would wait forever.
 */
extern bool payment_serves_this_database(void);
extern void payment_warn_if_unserved(void);

/*
 * payment.database '*': the launcher serves every database that has the
 * extension.  CREATE EXTENSION tells it at commit (a generation number the
 * launcher and the workers read: a look at a database is stale once the
 * number moved).
 */
extern bool payment_serves_every_database(void);
extern void payment_note_extension_created(void);
/* DROP EXTENSION payment (pool_hooks.c): at commit this database's workers look again */
extern void payment_note_extension_dropped(void);
extern uint32 payment_extensions_created(void);

/* workers storing a batch right now (payment.stats.workers_busy) */
extern int	payment_workers_busy(void);


/* random version 4 UUIDs (as gen_random_uuid()), and one as text */
struct pg_uuid_t;
extern void payment_random_uuids(struct pg_uuid_t *ids, int count);
extern char *payment_random_uuid_text(void);

/* a one-dimensional array Datum of count items (nulls may be NULL) */
extern Datum payment_array(Datum *items, bool *nulls, int count, Oid type);

/* SPI_prepare + SPI_keepplan of sql into *plan, once per process */
struct _SPI_plan;
extern struct _SPI_plan *payment_prepare(struct _SPI_plan **plan, const char *sql,
										 int nargs, Oid *argtypes);

#endif							/* PAYMENT_H */
