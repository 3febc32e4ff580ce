/*-------------------------------------------------------------------------
 * layout.h
 *	  Which tables the extension's version made in this database
 *	  (layout.c): the one place every layer asks.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_LAYOUT_H
#define PAYMENT_LAYOUT_H

/*
 * 1.0's tables, 1.1's or 1.2's, as the extension's version made them.  Read once
 * per process and again after ALTER EXTENSION payment UPDATE changed them.
 * queue_layout() needs a transaction.
 */
typedef struct QueueLayout
{
	/*
	 * payment.queue and payment.dead_letters record each message's schema
	 * version; at 1.0 a message is checked against the active schema
	 */
	bool		schema_versions;

	/*
	 * the embedded queue's event tables, payment.queue being a view over
	 * them and payment.queue_retry; at 1.0 payment.queue is the one table
	 */
	bool		event_tables;

	/* payment.retired_queues: the replaced SQS queue, kept across restarts */
	bool		retired_queues;

	/*
	 * payment.idempotency_keys (1.2), and with it request_id and
	 * submitted_by on payment.payments and payment.dead_letters
	 */
	bool		idempotency_keys;
} QueueLayout;

extern const QueueLayout *queue_layout(void);

#endif							/* PAYMENT_LAYOUT_H */
