/*-------------------------------------------------------------------------
 * queue.c
 *	  Choosing the queue backend, and what every backend does the same way:
 *	  the queue settings, dead-letter reason names, and redriving dead
 *	  letters onto whichever queue is in use.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "payment.h"
#include "queue/aws_credentials.h"
#include "queue/event_log.h"
#include "queue/queue.h"
#include "queue/sqs.h"
#include "queue/sqs_client.h"

const QueueBackend *
queue_backend(void)
{
	return sqs_configured() ? &sqs_queue : &embedded_queue;
}

void
queue_define_settings(void)
{
	sqs_client_define_settings();
	aws_define_settings();
	sqs_define_settings();
	event_log_define_settings();
}

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
		backend->enqueue_batch(payments, (int) moved, message_ids);
	SPI_finish();
	return moved;
}
