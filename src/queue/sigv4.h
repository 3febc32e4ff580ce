/*-------------------------------------------------------------------------
 * sigv4.h
 *	  AWS Signature Version 4 for request headers.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_SIGV4_H
#define PAYMENT_SIGV4_H

#include "common/http.h"

/* "YYYYMMDDTHHMMSSZ" */
#define SIGV4_DATE_LEN 16

/* the current time as X-Amz-Date wants it; buf holds SIGV4_DATE_LEN + 1 */
extern void sigv4_now(char *buf);

/*
 * The Authorization header value for a request.  headers are exactly the
 * headers to sign (they must include host and x-amz-date, and
 * x-amz-security-token when a session token is used); query is the raw
 * query string without '?', or "".
 */
extern char *sigv4_authorization(const char *method, const char *path,
								 const char *query,
								 const HttpHeader *headers, int nheaders,
								 const char *payload, size_t payload_len,
								 const char *amz_date, const char *region,
								 const char *service,
								 const char *access_key_id,
								 const char *secret_access_key);

#endif							/* PAYMENT_SIGV4_H */
