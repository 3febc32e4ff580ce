/*-------------------------------------------------------------------------
 * backend.h
 *	  What a queue backend is: the payment handed to it, the message as it
 *	  hands it to the store, and the operations it implements
 *	  (QueueBackend).  Each backend (embedded.c, sqs.c, sqs_retired.c)
 *	  implements it; queue.h brings it to the front door and the drain.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_BACKEND_H
#define PAYMENT_BACKEND_H

#include "common/digest.h"
#include "datatype/timestamp.h"

/*
 * A payment handed to a queue: its JSON text and its keys (uuid Datums),
 * with who sent it and under which request id (NULL: not known).
 */
typedef struct QueuedPayment
{
	const char *body;
	Datum		payment_id;
	Datum		user_id;
	int			schema_version; /* the schema it was accepted under; -1: none */
	const char *request_id;
	const char *submitted_by;
	/* the id the message is to get (NULL: the backend's); see names_messages */
	const char *message_id;
	/* for the key record: json_digest of the body */
	unsigned char body_digest[SHA256_BYTES];
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
	char	   *request_id;		/* as the front door took it; NULL: none */
	char	   *submitted_by;
	/* the body's keys, once the store has read them; 0: not read or absent */
	Datum		payment_id;
	Datum		user_id;
	bool		key_settled;	/* its key record was looked for (intake_keys.h) */
	TimestampTz enqueued_at;	/* when it was queued (submitted); 0: unknown */
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
	 * true when the backend names its messages itself (SQS: its MessageId),
	 * known only once enqueue returns; false when it takes
	 * QueuedPayment.message_id
	 */
	bool		names_messages;

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

#endif							/* PAYMENT_BACKEND_H */
