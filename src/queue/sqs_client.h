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

/*
 * A request to one queue: its URL (which also names the region when no
 * setting does) and the JSON body, begun as {"QueueUrl": "<url>" by
 * sqs_start_request; the caller appends the rest and the closing brace.
 * A replaced queue is asked as the configured one is, by its own URL.
 */
typedef struct SqsRequest
{
	const char *queue_url;
	StringInfoData body;
} SqsRequest;

extern void sqs_start_request(SqsRequest *req, const char *queue_url);

/*
 * Send operation's request, signed; return the answer's top-level object.
 * extra_wait_ms lengthens the timeout (long polls).  Raises on failure.
 */
extern JsonbContainer *sqs_call(const char *operation, SqsRequest *request,
								int extra_wait_ms);

/*
 * The same in two steps, so that other work overlaps the round trip:
 * sqs_call_start signs and sends; sqs_call_finish waits and returns what
 * sqs_call would.  A started call ends in exactly one finish or cancel.
 */
typedef struct SqsCall SqsCall;

extern SqsCall *sqs_call_start(const char *operation, SqsRequest *request,
							   int extra_wait_ms);
extern bool sqs_call_done(SqsCall *call);
extern JsonbContainer *sqs_call_finish(SqsCall *call);
extern void sqs_call_cancel(SqsCall *call);

/* SQLSTATE for an AWS error code, falling back on the HTTP status */
extern int	sqs_error_sqlstate(const char *code, long status);

#endif							/* PAYMENT_SQS_CLIENT_H */
