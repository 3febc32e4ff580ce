/*-------------------------------------------------------------------------
 * http.h
 *	  The extension's HTTP client, on libcurl: one multi handle per process
 *	  (connections kept alive), TLS verification on, cancellable; requests
 *	  either waited for or left in flight while the caller works.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_HTTP_H
#define PAYMENT_HTTP_H

#include "lib/stringinfo.h"

/* set by payment.http_timeout (milliseconds) */
extern int	payment_http_timeout;

extern void http_define_settings(void);

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
	char	   *captured_header;	/* value of req->capture_header, or NULL */
} HttpResponse;

/* The parts of a URL a request needs; palloc'd strings. */
typedef struct HttpUrl
{
	char	   *scheme;			/* "http" or "https" */
	char	   *host;			/* host[:port] as the Host header says it */
	char	   *hostname;		/* host alone */
	char	   *path;			/* at least "/" */
} HttpUrl;

extern bool http_parse_url(const char *url, HttpUrl *parsed, char **problem);

typedef struct HttpRequest
{
	const char *peer;			/* whom it asks, for messages: "SQS", "JWKS" */
	const char *method;			/* "GET" or "POST" */
	const char *url;
	const HttpHeader *headers;
	int			nheaders;
	const char *body;			/* POST only */
	size_t		body_len;
	long		connect_timeout_ms;
	long		timeout_ms;		/* the whole exchange */
	size_t		max_response;	/* longer answers are refused */
	const char *capture_header; /* a response header to keep, or NULL */
} HttpRequest;

/*
 * Send the request; any HTTP status is returned.  Transport failures raise
 * an ERROR (08xxx, 54000 for a too large answer), as do cancellation (57014)
 * and shutdown.
 */
extern void http_perform(const HttpRequest *req, HttpResponse *response);

/*
 * The same, but a transport failure returns false with its description in
 * *error instead of raising; cancellation and shutdown still raise.
 */
extern bool http_try(const HttpRequest *req, HttpResponse *response, char **error);

/*
 * The asynchronous form.  http_start sends the request and returns; the
 * transfer then moves on whenever any transfer is waited for, or
 * http_progress is called.  Every started transfer must end in exactly one
 * of http_finish, http_finish_try (same results as http_perform and
 * http_try, the answer in the caller's memory context) or http_cancel.  A
 * transfer lives in its own memory and outlives the caller's contexts.
 */
typedef struct HttpTransfer HttpTransfer;

extern HttpTransfer *http_start(const HttpRequest *req);
extern void http_progress(void);
extern bool http_done(HttpTransfer *transfer);	/* answered (or failed) */
extern void http_finish(HttpTransfer *transfer, HttpResponse *response);
extern bool http_finish_try(HttpTransfer *transfer, HttpResponse *response,
							char **error);
extern void http_cancel(HttpTransfer *transfer);

#endif							/* PAYMENT_HTTP_H */
