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

/* settings owned by sqs.c */
extern char *payment_queue_url;
extern char *payment_sqs_endpoint;

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

/* reading answers: NULL / 0 where a member is absent or of another type */
extern char *sqs_json_string(JsonbContainer *obj, const char *key);
extern JsonbContainer *sqs_json_container(JsonbContainer *obj, const char *key);
extern int	sqs_json_array_size(JsonbContainer *arr);
extern JsonbContainer *sqs_json_array_object(JsonbContainer *arr, int i);

/* lower-case hex MD5 of data into out (33 bytes) */
extern void sqs_md5_hex(const char *data, size_t len, char *out);

#endif							/* PAYMENT_SQS_CLIENT_H */
