/*-------------------------------------------------------------------------
 * http.h
 *	  A small HTTP client for the SQS backend, on libcurl: one keep-alive
 *	  handle per process, TLS verification on, cancellable.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_HTTP_H
#define PAYMENT_HTTP_H

#include "lib/stringinfo.h"

/* set by payment.http_timeout (milliseconds) */
extern int	payment_http_timeout;

typedef struct HttpHeader
{
	const char *name;
	const char *value;
} HttpHeader;

typedef struct HttpResponse
{
	long		status;			/* HTTP status code */
	char	   *body;			/* NUL-terminated, palloc'd */
	size_t		body_len;
	char	   *query_error;	/* x-amzn-query-error header, or NULL */
} HttpResponse;

/* The parts of a URL a request needs; palloc'd strings. */
typedef struct HttpUrl
{
	char	   *scheme;			/* "http" or "https" */
	char	   *host;			/* host[:port] as the Host header says it */
	char	   *path;			/* at least "/" */
} HttpUrl;

extern bool http_parse_url(const char *url, HttpUrl *parsed, char **problem);

/*
 * POST body to url with the given headers.  Waits at most extra_wait_ms plus
 * payment.http_timeout.  Raises an ERROR on transport failures (08xxx),
 * cancellation (57014) and shutdown; any HTTP status is returned.
 */
extern void http_post(const char *url, const HttpHeader *headers, int nheaders,
					  const char *body, size_t body_len, int extra_wait_ms,
					  HttpResponse *response);

#endif							/* PAYMENT_HTTP_H */
