/*-------------------------------------------------------------------------
 * payment.h
 *	  Declarations shared by the payment extension's source files: settings,
 *	  shared-memory state, and the interfaces between intake, queue
 *	  backends, the store and the workers.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_H
#define PAYMENT_H

#include "postgres.h"

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

extern void payment_count(pg_atomic_uint64 *counter, uint64 n);
extern void payment_wake_workers(void);
extern void payment_note_enqueued(uint64 n);

/*
 * A message as a queue backend hands it to the store.  The store fills in
 * the outcome; the backend then acknowledges, retries or drops it.
 */
typedef enum StoreOutcome
{
	STORE_PENDING = 0,
	STORE_STORED,				/* written to payment.payments */
	STORE_DUPLICATE,			/* identical payment already stored */
	STORE_DEAD_LETTERED,		/* written to payment.dead_letters */
	STORE_RETRY					/* transient failure: deliver again later */
} StoreOutcome;

typedef struct QueueMessage
{
	int64		seq;			/* embedded queue row; 0 for SQS */
	char	   *message_id;
	char	   *receipt_handle; /* SQS only */
	char	   *body;			/* as received */
	int			receive_count;	/* including this delivery */
	StoreOutcome outcome;
	int			retry_delay;	/* seconds, for STORE_RETRY */
	const char *reason;			/* dead letter reason */
	char	   *error;			/* what went wrong, for dead letters / logs */
} QueueMessage;

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

/* queue_embedded.c: the durable queue table */
struct _SPI_plan;
extern struct _SPI_plan *payment_prepare(struct _SPI_plan **plan, const char *sql,
										 int nargs, Oid *argtypes);
extern char *embedded_enqueue(const char *body, PaymentFields *fields);
extern int	embedded_claim(QueueMessage **messages, int max_messages,
						   double *idle_seconds);
extern void embedded_settle(QueueMessage *messages, int count);
extern void embedded_release(QueueMessage *messages, int count);

/* store.c: idempotent writes of a claimed batch (caller holds SPI + xact) */
extern void store_batch(QueueMessage *messages, int count, bool isolate);
extern void store_count_outcomes(QueueMessage *messages, int count);
extern void store_dead_letter(const char *message_id, const char *body,
							  const char *reason, const char *error,
							  int receive_count);
extern int	store_retry_delay(int receive_count);

/* worker.c */
extern void payment_register_workers(void);
extern PGDLLEXPORT void payment_worker_main(Datum main_arg);

#endif							/* PAYMENT_H */
