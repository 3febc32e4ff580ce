/*-------------------------------------------------------------------------
 * queue.h
 *	  The queue-backend interface: what the front door and the drain ask of
 *	  a queue, whichever holds the messages (the embedded table or Amazon
 *	  SQS), and the message as a backend hands it to the store.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_QUEUE_H
#define PAYMENT_QUEUE_H

#include "datatype/timestamp.h"

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
	 * store committed.  Exactly one of the two is set.
	 */
	void		(*settle_with_store) (QueueMessage *messages, int count);
	void		(*settle_after_commit) (QueueMessage *messages, int count);

	/*
	 * The store must commit durably (synchronous_commit on) before the
	 * backend settles, as a settled message is forgotten by a queue that
	 * does not share the store's transaction.  When settling commits with
	 * the store, a commit lost in a crash only means a delivery again.
	 */
	bool		durable_store;

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

	/*
	 * Whether the backend may hold what a previous configuration left, to
	 * drain though it is not the queue configured now (the embedded queue's
	 * messages while SQS is in use; a replaced SQS queue).  in_use: this is
	 * the backend queue_backend() picks.  NULL: it never holds any.
	 */
	bool		(*has_leftover) (bool in_use);

	/*
	 * A worker finds the extension in its database (at its start, and again
	 * after a failure): outside any transaction.  NULL: nothing to do.
	 */
	void		(*start) (void);

	/*
	 * Around a worker's reading of the configuration file, outside any
	 * transaction: after_reload notes what a change left to drain, and
	 * returns true when the leftovers are to be looked at at once.  NULL:
	 * nothing to note.
	 */
	void		(*before_reload) (void);
	bool		(*after_reload) (void);
} QueueBackend;

/* the backend in use: SQS when payment.queue_url is set */
extern const QueueBackend *queue_backend(void);

/*
 * Where a worker claims from next.  A round of claims starts with
 * queue_first_source and goes on while queue_next_source, told what the
 * last claim handled and its idle time, gives another source.  Every so
 * often (and at once after a reload that left something new) the round
 * first looks at the leftovers: one that had messages ends the round, an
 * empty one passes on to the next; the backend in use comes last.
 */
typedef struct QueueSource
{
	const QueueBackend *backend;	/* claim, store and settle through it */
	bool		in_use;			/* the queue configured now, not a leftover */
	/* queue.c's own */
	int			next;			/* the backend to ask for leftovers next */
	double		leftover_idle;	/* the shortest idle time of the empty ones */
	TimestampTz started;
} QueueSource;

extern void queue_first_source(QueueSource *source);
extern bool queue_next_source(QueueSource *source, int handled, double idle_seconds);

/* a worker's start in its database, once the extension is there (the backends' start) */
extern void queue_start(void);

/*
 * A worker's SIGHUP: reads the configuration file again (ProcessConfigFile),
 * and has each backend note what a change left to drain.
 */
extern void queue_reload_settings(void);

/*
 * A worker that leaves: every backend gives back what it holds (give_back);
 * a failure only delays those messages, and is a warning.
 */
extern void queue_give_back(void);

/* define the queue backends' settings; called from _PG_init */
extern void queue_define_settings(void);

/* the queue layer's shared memory: reserved and set up by module.c */
extern Size queue_shmem_size(void);
extern void queue_shmem_init(void);

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
