/*-------------------------------------------------------------------------
 * payment.h
 *	  The extension's core (payment.c), below every layer: the core
 *	  settings, the shared-memory state every layer counts in, waking the
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
extern bool payment_paused;
extern int	payment_batch_window;

/* true when loaded through shared_preload_libraries */
extern bool payment_preloaded;

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
} PaymentCounters;

typedef struct PaymentShared
{
	PaymentCounters counters;
	/* pgprocno of each running worker, or -1; a latch is found through it */
	pg_atomic_uint32 worker_procno[PAYMENT_MAX_WORKERS];
} PaymentShared;

extern PaymentShared *payment_shared;

extern void payment_define_settings(void);
extern Size payment_shmem_size(void);
extern void payment_shmem_init(void);

extern void payment_count(pg_atomic_uint64 *counter, uint64 n);
extern void payment_wake_workers(void);
extern void payment_note_enqueued(uint64 n);

/* validate.c: the payment schema engine */
typedef struct PaymentFields
{
	Datum		payment_id;		/* uuid */
	Datum		user_id;		/* uuid */
	Datum		amount;			/* numeric */
	char	   *currency;
	char	   *description;
	char	   *date_timestamp;
} PaymentFields;

extern bool payment_validate(Jsonb *payload, char **problems);
extern void payment_check_payload(Jsonb *payload, Size text_length);
extern void payment_extract_fields(Jsonb *payload, PaymentFields *fields);
extern char *payment_try_get_string(Jsonb *payload, const char *key);
extern bool payment_try_get_uuid(Jsonb *payload, const char *key, Datum *uuid);
extern void payment_find_keys(const char *body, Datum *payment_id, Datum *user_id);

/* SPI_prepare + SPI_keepplan of sql into *plan, once per process */
struct _SPI_plan;
extern struct _SPI_plan *payment_prepare(struct _SPI_plan **plan, const char *sql,
										 int nargs, Oid *argtypes);

#endif							/* PAYMENT_H */
