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

/*
 * Send operation's request, signed; return the answer's top-level object.
 * extra_wait_ms lengthens the timeout (long polls).  Raises on failure.
 */
extern JsonbContainer *sqs_call(const char *operation, StringInfo request,
								int extra_wait_ms);

/* SQLSTATE for an AWS error code, falling back on the HTTP status */
extern int	sqs_error_sqlstate(const char *code, long status);

#endif							/* PAYMENT_SQS_CLIENT_H */
