/*-------------------------------------------------------------------------
 * sqs_client.h
 *	  One signed AWS JSON 1.0 request to SQS and helpers to read its answer
 *	  (sqs_client.c); the operations are in sqs.c.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_SQS_CLIENT_H
#define PAYMENT_SQS_CLIENT_H

#include "lib/stringinfo.h"
#include "utils/jsonb.h"

extern char *payment_queue_url;
extern char *payment_sqs_endpoint;

extern void sqs_client_define_settings(void);

/* true when payment.queue_url is set: the SQS backend is in use */
extern bool sqs_configured(void);

/* a request body that starts {"QueueUrl": "<payment.queue_url>" */
extern void sqs_start_request(StringInfo req);
/* the same for another queue (receipt handles belong to the queue that gave them) */
extern void sqs_start_request_to(StringInfo req, const char *queue_url);

/*
 * Send operation's request, signed; return the answer's top-level object.
 * extra_wait_ms lengthens the timeout (long polls).  Raises on failure.
 */
extern JsonbContainer *sqs_call(const char *operation, StringInfo request,
								int extra_wait_ms);

/*
 * The same in two steps, so that other work overlaps the round trip:
 * sqs_call_start signs and sends; sqs_call_finish waits and returns what
 * sqs_call would.  A started call ends in exactly one finish or cancel.
 */
typedef struct SqsCall SqsCall;

extern SqsCall *sqs_call_start(const char *operation, StringInfo request,
							   int extra_wait_ms);
extern bool sqs_call_done(SqsCall *call);
extern JsonbContainer *sqs_call_finish(SqsCall *call);
extern void sqs_call_cancel(SqsCall *call);

/* the queue requests now go to (payment.queue_url, or a replaced one) */
extern const char *sqs_current_queue_url(void);

/* SQLSTATE for an AWS error code, falling back on the HTTP status */
extern int	sqs_error_sqlstate(const char *code, long status);

#endif							/* PAYMENT_SQS_CLIENT_H */
