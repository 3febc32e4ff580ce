/*-------------------------------------------------------------------------
 * queue.c
 *	  Choosing the queue backend, and what every backend does the same way:
 *	  the queue settings and shared memory, what a worker claims from next
 *	  (the backend in use, or what a previous configuration left: see
 *	  QueueSource), the backends' start, reload and give-back at a worker's
 *	  request, dead-letter reason names, and redriving dead letters onto
 *	  whichever queue is in use.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "payment.h"
#include "queue/aws_credentials.h"
#include "queue/embedded.h"
#include "queue/event_log.h"
#include "queue/intake_keys.h"
#include "queue/queue.h"
#include "queue/sqs.h"
#include "queue/sqs_client.h"
#include "queue/sqs_retired.h"
#include "queue/standby_flush.h"

/* every backend, in the order a round looks at their leftovers */
static const QueueBackend *const backends[] = {&embedded_queue, &sqs_queue, &sqs_retired_queue};

/* the leftovers are looked at again at least this often */
#define LEFTOVER_EVERY_SECONDS 10.0

/* when a worker's round looks at the leftovers next; 0: at once */
static TimestampTz leftovers_due = 0;

/*
 * The backend in use.  One SQS queue is a server-wide setting: with every
 * database served, the workers of one database would store what was
 * submitted in another, so that combination is refused (the front door
 * submits nothing, the workers drain nothing) until one of the two changes.
 */
const QueueBackend *
queue_backend(void)
{
	if (!sqs_configured())
		return &embedded_queue;
	if (payment_serves_every_database())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("payment.queue_url cannot be used with payment.database = '*'"),
				 errdetail("One SQS queue would be drained by the workers of every database, and a payment submitted in one database could be stored in another."),
				 errhint("Serve one database with SQS (payment.database = '<name>'), or use the embedded queue in every database (payment.queue_url = '').")));
	return &sqs_queue;
}

void
queue_define_settings(void)
{
	sqs_client_define_settings();
	aws_define_settings();
	sqs_define_settings();
	standby_flush_define_settings();
	event_log_define_settings();
}

/* the replaced SQS queue's URL is all the queue layer shares */
const PaymentShmem *
queue_shmem(void)
{
	return &sqs_retired_shmem;
}

/* ------------------------------------------------------------------ */
/* what a worker claims from */

/* the backend in use: the round's last source */
static void
source_in_use(QueueSource *source)
{
	source->backend = queue_backend();
	source->in_use = true;
	source->next = lengthof(backends);
}

/* the first backend from source->next on that may hold leftovers, if any */
static bool
source_leftover(QueueSource *source)
{
	const QueueBackend *in_use = queue_backend();

	for (int i = source->next; i < lengthof(backends); i++)
	{
		const QueueBackend *b = backends[i];

		if (b->has_leftover != NULL && b->has_leftover(b == in_use))
		{
			source->backend = b;
			source->in_use = false;
			source->next = i + 1;
			return true;
		}
	}
	return false;
}

/* every leftover was looked at and none had messages: not again for a while */
static void
leftovers_done(QueueSource *source)
{
	leftovers_due = TimestampTzPlusMilliseconds(source->started,
												(int) (source->leftover_idle * 1000));
	source_in_use(source);
}

void
queue_first_source(QueueSource *source)
{
	source->started = GetCurrentTimestamp();
	source->next = 0;
	source->leftover_idle = LEFTOVER_EVERY_SECONDS;
	if (source->started < leftovers_due)
		source_in_use(source);
	else if (!source_leftover(source))
		leftovers_done(source);
}

bool
queue_next_source(QueueSource *source, int handled, double idle_seconds)
{
	/* a leftover's messages end the round: the next one looks at it again */
	if (source->in_use || handled > 0)
		return false;
	source->leftover_idle = Min(source->leftover_idle, idle_seconds);
	if (!source_leftover(source))
		leftovers_done(source);
	return true;
}

/* ------------------------------------------------------------------ */
/* a worker's start, reload and leaving */

void
queue_start(void)
{
	for (int i = 0; i < lengthof(backends); i++)
		if (backends[i]->start != NULL)
			backends[i]->start();
}

void
queue_reload_settings(void)
{
	for (int i = 0; i < lengthof(backends); i++)
		if (backends[i]->before_reload != NULL)
			backends[i]->before_reload();
	ProcessConfigFile(PGC_SIGHUP);
	for (int i = 0; i < lengthof(backends); i++)
		if (backends[i]->after_reload != NULL && backends[i]->after_reload())
			leftovers_due = 0;
}

void
queue_give_back(void)
{
	for (int i = 0; i < lengthof(backends); i++)
	{
		MemoryContext context = CurrentMemoryContext;

		if (backends[i]->give_back == NULL)
			continue;
		PG_TRY();
		{
			backends[i]->give_back();
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(context);
			edata = CopyErrorData();
			FlushErrorState();
			edata->elevel = WARNING;
			ThrowErrorData(edata);
		}
		PG_END_TRY();
	}
}

/* ------------------------------------------------------------------ */
/* what every backend does the same way */

const char *
dead_letter_reason_name(DeadLetterReason reason)
{
	switch (reason)
	{
		case DEAD_LETTER_INVALID:
			return "invalid";
		case DEAD_LETTER_CONFLICT:
			return "conflict";
		case DEAD_LETTER_MAX_RECEIVES:
			return "max_receives";
		case DEAD_LETTER_NONE:
			break;
	}
	elog(ERROR, "no dead-letter reason set");
	return NULL;				/* keep compiler quiet */
}

/*
 * The dead letters are deleted and enqueued in the caller's transaction: if
 * the queue refuses them (SQS), the error rolls the deletion back and
 * nothing is lost.  A rollback after SQS accepted them only means they are
 * delivered twice, which the store recognises.
 */
uint64
queue_redrive(Datum ids, bool ids_null, Datum reason, bool reason_null)
{
	static SPIPlanPtr take_plans[2] = {NULL, NULL};
	const QueueBackend *backend = queue_backend();
	bool		versioned = queue_layout()->schema_versions;
	Datum		values[2] = {ids, reason};
	char		nulls[2] = {ids_null ? 'n' : ' ', reason_null ? 'n' : ' '};
	QueuedPayment *payments;
	char	  **message_ids;
	uint64		moved;

	SPI_connect();
	payment_prepare(&take_plans[versioned],
					versioned ?
					"WITH moved AS ("
					"  DELETE FROM payment.dead_letters"
					"   WHERE ($1 IS NULL OR id = ANY ($1))"
					"     AND ($2 IS NULL OR reason = $2)"
					"  RETURNING id, payment_id, user_id, body, schema_version)"
					" SELECT payment_id, user_id, body, schema_version FROM moved ORDER BY id" :
					"WITH moved AS ("
					"  DELETE FROM payment.dead_letters"
					"   WHERE ($1 IS NULL OR id = ANY ($1))"
					"     AND ($2 IS NULL OR reason = $2)"
					"  RETURNING id, payment_id, user_id, body)"
					" SELECT payment_id, user_id, body FROM moved ORDER BY id",
					2, (Oid[]) {INT8ARRAYOID, TEXTOID});
	if (SPI_execute_plan(take_plans[versioned], values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "redriving dead letters failed");
	moved = SPI_processed;

	payments = palloc0(sizeof(QueuedPayment) * Max(moved, 1));
	message_ids = palloc0(sizeof(char *) * Max(moved, 1));
	for (uint64 i = 0; i < moved; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;

		/* keys stay absent (0) where the dead letter has none */
		d = SPI_getbinval(row, desc, 1, &isnull);
		payments[i].payment_id = isnull ? (Datum) 0 : d;
		d = SPI_getbinval(row, desc, 2, &isnull);
		payments[i].user_id = isnull ? (Datum) 0 : d;
		payments[i].body = SPI_getvalue(row, desc, 3);
		payments[i].schema_version = -1;
		if (versioned)
		{
			d = SPI_getbinval(row, desc, 4, &isnull);
			if (!isnull)
				payments[i].schema_version = DatumGetInt32(d);
		}
	}
	if (moved > 0)
	{
		backend->enqueue_batch(payments, (int) moved, message_ids);
		intake_keys_note(payments, message_ids, (int) moved);
	}
	SPI_finish();
	return moved;
}
