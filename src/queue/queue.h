/*-------------------------------------------------------------------------
 * queue.h
 *	  The queue-backend interface: what the front door and the drain ask of
 *	  a queue, whichever holds the messages (the embedded table or Amazon
 *	  SQS), and the message as a backend hands it to the store.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_QUEUE_H
#define PAYMENT_QUEUE_H

/* A payment handed to a queue: its JSON text and its keys (uuid Datums). */
typedef struct QueuedPayment
{
	const char *body;
	Datum		payment_id;
	Datum		user_id;
	int			schema_version; /* the schema it was accepted under; -1: none */
} QueuedPayment;

/* What the store made of a message; the backend then settles it. */
typedef enum StoreOutcome
{
	STORE_PENDING = 0,
	STORE_STORED,				/* written to payment.payments */
	STORE_DUPLICATE,			/* identical payment already stored */
	STORE_DEAD_LETTERED,		/* written to payment.dead_letters */
	STORE_RETRY					/* transient failure: deliver again later */
} StoreOutcome;

/* payment.dead_letters.reason; the names are part of the SQL interface */
typedef enum DeadLetterReason
{
	DEAD_LETTER_NONE = 0,
	DEAD_LETTER_INVALID,		/* "invalid": unreadable or refused by the schema */
	DEAD_LETTER_CONFLICT,		/* "conflict": another payment has its keys */
	DEAD_LETTER_MAX_RECEIVES	/* "max_receives": payment.max_receive_count used up */
} DeadLetterReason;

extern const char *dead_letter_reason_name(DeadLetterReason reason);

/*
 * A claimed message.  handle is the backend's own (what it settles the
 * message by: a row, a batch, a receipt handle); nothing outside the
 * backend reads it.
 */
typedef struct QueueMessage
{
	void	   *handle;
	char	   *message_id;
	char	   *body;			/* as received */
	int			receive_count;	/* including this delivery */
	StoreOutcome outcome;
	int			retry_delay;	/* seconds, for STORE_RETRY */
	DeadLetterReason reason;	/* for STORE_DEAD_LETTERED */
	char	   *error;			/* what went wrong, for dead letters / logs */
	int			schema_version; /* the schema it was accepted under; -1: none */
} QueueMessage;

typedef struct QueueBackend
{
	const char *name;

	/*
	 * Accept payments; message_ids[i] receives each message id (palloc'd).
	 * Raises when the queue refuses: then nothing may be assumed queued.
	 * The embedded queue joins the caller's transaction; SQS has them once
	 * this returns.
	 */
	char	   *(*enqueue) (const QueuedPayment *payment);
	void		(*enqueue_batch) (const QueuedPayment *payments, int count,
								  char **message_ids);

	/* true when enqueued messages commit or roll back with the caller */
	bool		transactional;

	/*
	 * Claim up to max_messages in the caller's memory context.  When there
	 * are none, *idle_seconds (in: the longest sleep wanted) says how long
	 * the caller may sleep before asking again.
	 */
	int			(*claim) (QueueMessage **messages, int max_messages,
						  double *idle_seconds);

	/* most messages one claim returns whatever is asked (0: no limit) */
	int			max_claim;

	/*
	 * Messages waiting to be claimed, approximately, outside any
	 * transaction; raises when the queue cannot say.  NULL when the
	 * backend's claims show the backlog well enough (the embedded queue
	 * always returns full batches while one lasts).
	 */
	int64		(*depth) (void);

	/*
	 * Settle stored messages (delete, or delay the retried ones): either in
	 * the store's transaction, atomically with the store, or only after the
	 * store committed durably.  Exactly one of the two is set.
	 */
	void		(*settle_with_store) (QueueMessage *messages, int count);
	void		(*settle_after_commit) (QueueMessage *messages, int count);

	/*
	 * Give a claimed batch back at once, this receive not counted, after the
	 * database (not the messages) failed; in a transaction of its own.  NULL
	 * where the queue cannot: the batch then returns after the visibility
	 * timeout.
	 */
	void		(*release) (QueueMessage *messages, int count);

	/*
	 * A worker that leaves (not one that is stopped or killed) gives back
	 * what it asked for in advance, and waits for its settling requests.
	 * Outside any transaction; may raise.  NULL where a backend keeps
	 * nothing between claims.
	 */
	void		(*give_back) (void);
} QueueBackend;

extern const QueueBackend embedded_queue;
extern const QueueBackend sqs_queue;

/* the backend in use: SQS when payment.queue_url is set */
extern const QueueBackend *queue_backend(void);

/*
 * Make the SQS backend's requests go to url instead of payment.queue_url
 * (NULL: back to the setting), to drain a queue that was replaced.
 */
extern void sqs_drain_queue_url(const char *url);

/* define the queue backends' settings; called from _PG_init */
extern void queue_define_settings(void);

/*
 * The extension's tables in this database (layout.c): 1.0's or 1.1's, as
 * the extension's version made them.  Read once per process and again
 * after ALTER EXTENSION payment UPDATE changed them.  Needs a transaction.
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
} QueueLayout;

extern const QueueLayout *queue_layout(void);

/*
 * Move dead letters (those with the given ids and/or reason; all when both
 * are NULL) back onto the queue in use.  Returns how many were moved.
 */
extern uint64 queue_redrive(Datum ids, bool ids_null, Datum reason, bool reason_null);

#endif							/* PAYMENT_QUEUE_H */
