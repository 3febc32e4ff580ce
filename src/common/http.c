/*-------------------------------------------------------------------------
 * http.c
 *	  The extension's one HTTP client (SQS requests, JWKS fetches), on
 *	  libcurl.
 *
 * Owns: the per-process libcurl multi handle (kept, so connections are
 * reused), the payment.http_timeout setting, TLS verification,
 * cancellation, and turning transport failures into ERRORs with a
 * SQLSTATE.  It knows no protocol above HTTP: messages name the peer the
 * caller says it asks.
 *
 * Every request is a transfer on the multi handle: http_start sends it and
 * returns, http_finish waits for its answer.  The synchronous
 * http_perform/http_try are start followed by finish, so both forms share
 * the request building, the TLS settings and the error reporting, and any
 * wait for one transfer moves the others on.
 *
 * No ereport may happen while libcurl is on the stack (a longjmp would
 * leave the handles inconsistent), so the callbacks only record state and
 * every error is raised after curl_multi_perform has returned.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "common/http.h"

#define HTTP_USER_AGENT		"payment-postgresql-extension/1.0"

int			payment_http_timeout = 10000;

void
http_define_settings(void)
{
	DefineCustomIntVariable("payment.http_timeout",
							gettext_noop("Time an SQS request may take, beyond the long poll."),
							NULL,
							&payment_http_timeout,
							10000, 100, 10 * 60 * 1000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}

typedef struct ResponseBuffer
{
	MemoryContext cxt;
	char	   *data;
	size_t		len;
	size_t		cap;
	size_t		max;			/* larger responses are refused */
	bool		too_large;
	bool		out_of_memory;
	const char *capture;		/* header name to keep, or NULL */
	char	   *captured;
} ResponseBuffer;

static bool
buffer_reserve(ResponseBuffer *buf, size_t extra)
{
	size_t		need = buf->len + extra + 1;
	size_t		newcap;
	char	   *newdata;

	if (need <= buf->cap)
		return true;
	if (need > buf->max)
	{
		buf->too_large = true;
		return false;
	}
	newcap = Max(Max(buf->cap * 2, need), 8192);
	/* NO_OOM: a failed allocation must not longjmp through libcurl */
	newdata = MemoryContextAllocExtended(buf->cxt, newcap, MCXT_ALLOC_NO_OOM);
	if (newdata == NULL)
	{
		buf->out_of_memory = true;
		return false;
	}
	if (buf->data != NULL)
	{
		memcpy(newdata, buf->data, buf->len);
		pfree(buf->data);
	}
	buf->data = newdata;
	buf->cap = newcap;
	return true;
}

static size_t
write_callback(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	ResponseBuffer *buf = (ResponseBuffer *) userdata;
	size_t		n = size * nmemb;

	if (!buffer_reserve(buf, n))
		return 0;				/* makes curl fail with CURLE_WRITE_ERROR */
	memcpy(buf->data + buf->len, ptr, n);
	buf->len += n;
	buf->data[buf->len] = '\0';
	return n;
}

/* Keeps the value of the one response header the caller asked for. */
static size_t
header_callback(char *ptr, size_t size, size_t nitems, void *userdata)
{
	ResponseBuffer *buf = (ResponseBuffer *) userdata;
	size_t		n = size * nitems;
	size_t		namelen = buf->capture ? strlen(buf->capture) : 0;

	if (namelen > 0 && n > namelen + 1 && n < 1024 &&
		pg_strncasecmp(ptr, buf->capture, namelen) == 0 && ptr[namelen] == ':')
	{
		size_t		start = namelen + 1;
		size_t		end = n;
		char	   *value;

		while (start < end && (ptr[start] == ' ' || ptr[start] == '\t'))
			start++;
		while (end > start && (ptr[end - 1] == '\r' || ptr[end - 1] == '\n' ||
							   ptr[end - 1] == ' '))
			end--;
		value = MemoryContextAllocExtended(buf->cxt, end - start + 1,
										   MCXT_ALLOC_NO_OOM);
		if (value != NULL)
		{
			memcpy(value, ptr + start, end - start);
			value[end - start] = '\0';
			buf->captured = value;
		}
	}
	return n;
}

/*
 * Called by libcurl about once a second, and more often while data flows:
 * abort the transfer when the backend has been asked to cancel or die, so
 * that neither a query cancel nor SIGTERM waits for a long poll or a slow
 * endpoint.  The interrupt itself is serviced after curl returns.
 */
static int
progress_callback(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
				  curl_off_t ultotal, curl_off_t ulnow)
{
	if (InterruptPending &&
		(QueryCancelPending || ProcDiePending))
		return 1;
	if (ShutdownRequestPending)
		return 1;
	return 0;
}

bool
http_parse_url(const char *url, HttpUrl *parsed, char **problem)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *port = NULL;
	char	   *path = NULL;
	bool		ok = false;

	*problem = NULL;
	if (u == NULL)
	{
		*problem = "out of memory";
		return false;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		*problem = "not an absolute URL";
	else if (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0)
		*problem = "the scheme must be https or http";
	else
	{
		/* an explicit port only, as the Host header carries it */
		if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
			port = NULL;
		if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
			path = NULL;
		if (parsed != NULL)
		{
			parsed->scheme = pstrdup(scheme);
			parsed->host = port ? psprintf("%s:%s", host, port) : pstrdup(host);
			parsed->hostname = pstrdup(host);
			parsed->path = pstrdup(path && path[0] ? path : "/");
		}
		ok = true;
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_url_cleanup(u);
	return ok;
}

/* ------------------------------------------------------------------ */
/* handles */

/*
 * One multi handle per process holds every transfer, synchronous or not,
 * and the connection cache they share; finished easy handles are kept for
 * reuse.  Backends are single-threaded.
 */
#define HTTP_SPARE_HANDLES 4

static CURLM *multi_handle = NULL;
static CURL *spare_handles[HTTP_SPARE_HANDLES];
static int	nspare = 0;

static CURLM *
get_multi(void)
{
	if (multi_handle != NULL)
		return multi_handle;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialize libcurl")));
	multi_handle = curl_multi_init();
	if (multi_handle == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	return multi_handle;
}

static CURL *
get_easy_handle(void)
{
	CURL	   *h;

	(void) get_multi();
	if (nspare > 0)
		h = spare_handles[--nspare];
	else
		h = curl_easy_init();
	if (h == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	return h;
}

static void
put_easy_handle(CURL *h)
{
	if (nspare < HTTP_SPARE_HANDLES)
		spare_handles[nspare++] = h;
	else
		curl_easy_cleanup(h);
}

/* ------------------------------------------------------------------ */
/* transfers */

/*
 * A request under way.  It owns a memory context (under TopMemoryContext,
 * so that it outlives the caller's per-batch memory) holding copies of
 * everything libcurl points to, and the answer until it is collected.
 */
struct HttpTransfer
{
	MemoryContext cxt;
	CURL	   *easy;
	struct curl_slist *headers;
	char	   *peer;
	char	   *url;
	char	   *body;
	long		timeout_ms;
	bool		in_multi;
	bool		done;
	CURLcode	rc;
	long		status;
	ResponseBuffer buf;
	char		errbuf[CURL_ERROR_SIZE];
};

/* What is left of a finished transfer to report on it, in the caller's memory. */
typedef struct TransferOutcome
{
	CURLcode	rc;
	char	   *peer;
	char	   *url;
	char	   *error;			/* libcurl's message */
	long		timeout_ms;
	size_t		max_response;
	bool		too_large;
	bool		out_of_memory;
} TransferOutcome;

/* Raise the ERROR for a failed transfer; never returns. */
static void
report_transfer_error(const TransferOutcome *o)
{
	const char *detail = o->error;
	const char *url = o->url;
	const char *peer = o->peer;

	switch (o->rc)
	{
		case CURLE_ABORTED_BY_CALLBACK:
			/* cancel or die: let PostgreSQL report it as usual */
			CHECK_FOR_INTERRUPTS();
			/* still here: a worker's shutdown request, or interrupts held off */
			ereport(ERROR,
					(errcode(ShutdownRequestPending ? ERRCODE_ADMIN_SHUTDOWN : ERRCODE_QUERY_CANCELED),
					 errmsg("%s request to \"%s\" was interrupted", peer, url)));
			break;
		case CURLE_OPERATION_TIMEDOUT:
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("%s request to \"%s\" timed out", peer, url),
					 errdetail("No complete response within %ld ms.", o->timeout_ms),
					 errhint("Check the endpoint, or raise payment.http_timeout.")));
			break;
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_COULDNT_CONNECT:
			ereport(ERROR,
					(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
					 errmsg("could not connect to %s endpoint \"%s\"", peer, url),
					 errdetail_internal("%s", detail)));
			break;
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CACERT_BADFILE:
			ereport(ERROR,
					(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
					 errmsg("TLS handshake with %s endpoint \"%s\" failed", peer, url),
					 errdetail_internal("%s", detail),
					 errhint("The server's certificate must verify against the system's trusted CAs.")));
			break;
		case CURLE_WRITE_ERROR:
			if (o->too_large)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("response from %s endpoint \"%s\" is too large", peer, url),
						 errdetail("The limit is %zu bytes.", o->max_response)));
			if (o->out_of_memory)
				ereport(ERROR,
						(errcode(ERRCODE_OUT_OF_MEMORY),
						 errmsg("out of memory reading a response from %s endpoint \"%s\"",
								peer, url)));
			/* FALLTHROUGH */
		default:
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("%s request to \"%s\" failed", peer, url),
					 errdetail_internal("%s", detail)));
	}
}

/* The request options, the same for every transfer: TLS, timeouts, callbacks. */
static void
configure_handle(HttpTransfer *t, const HttpRequest *req)
{
	CURL	   *h = t->easy;

	/* back to defaults; connections live in the multi handle's cache */
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_PRIVATE, t);
	curl_easy_setopt(h, CURLOPT_URL, t->url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	if (strcmp(req->method, "POST") == 0)
	{
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, t->body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
	}
	else
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, t->headers);
	curl_easy_setopt(h, CURLOPT_USERAGENT, HTTP_USER_AGENT);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	/* libcurl must not use signals (SIGALRM is PostgreSQL's) */
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, req->timeout_ms);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_callback);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &t->buf);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_callback);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &t->buf);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress_callback);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, NULL);
}

/*
 * Let libcurl move every transfer on as far as it can without blocking, and
 * mark the finished ones done.  Nothing here raises.
 */
static void
drive(void)
{
	int			running;
	int			queued;
	CURLMsg    *msg;

	if (multi_handle == NULL)
		return;
	(void) curl_multi_perform(multi_handle, &running);
	while ((msg = curl_multi_info_read(multi_handle, &queued)) != NULL)
	{
		HttpTransfer *t = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
		if (t == NULL)
			continue;
		t->done = true;
		t->rc = msg->data.result;
		if (t->rc == CURLE_OK)
			curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
		curl_multi_remove_handle(multi_handle, t->easy);
		t->in_multi = false;
	}
}

/* Take the transfer out of libcurl's hands (aborting it if under way) and free it. */
static void
release_transfer(HttpTransfer *t)
{
	if (t->in_multi)
		curl_multi_remove_handle(multi_handle, t->easy);
	/* the handle must not keep pointers into the transfer's memory */
	curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, NULL);
	curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(t->easy, CURLOPT_PRIVATE, NULL);
	put_easy_handle(t->easy);
	curl_slist_free_all(t->headers);
	MemoryContextDelete(t->cxt);
}

HttpTransfer *
http_start(const HttpRequest *req)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "HTTP transfer",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext caller = MemoryContextSwitchTo(cxt);
	HttpTransfer *t = palloc0(sizeof(HttpTransfer));
	struct curl_slist *list = NULL;
	bool		list_ok = true;
	CURLMcode	mrc;

	/* everything that can ereport happens before libcurl holds the transfer */
	t->cxt = cxt;
	t->peer = pstrdup(req->peer);
	t->url = pstrdup(req->url);
	t->timeout_ms = req->timeout_ms;
	if (req->body != NULL)
	{
		t->body = palloc(req->body_len + 1);
		memcpy(t->body, req->body, req->body_len);
		t->body[req->body_len] = '\0';
	}
	t->buf.cxt = cxt;
	t->buf.max = req->max_response;
	t->buf.capture = req->capture_header ? pstrdup(req->capture_header) : NULL;

	/* no "Expect: 100-continue" round trip before larger bodies */
	for (int i = 0; i <= req->nheaders && list_ok; i++)
	{
		char	   *line = i < req->nheaders ?
			psprintf("%s: %s", req->headers[i].name, req->headers[i].value) : "Expect:";
		struct curl_slist *next = curl_slist_append(list, line);

		if (next == NULL)
			list_ok = false;
		else
			list = next;
	}
	MemoryContextSwitchTo(caller);
	if (!list_ok)
	{
		curl_slist_free_all(list);
		MemoryContextDelete(cxt);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory building a %s request", req->peer)));
	}
	t->headers = list;

	PG_TRY();
	{
		t->easy = get_easy_handle();
	}
	PG_CATCH();
	{
		curl_slist_free_all(list);
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();

	configure_handle(t, req);
	mrc = curl_multi_add_handle(multi_handle, t->easy);
	if (mrc != CURLM_OK)
	{
		release_transfer(t);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not start a %s request", req->peer),
				 errdetail_internal("%s", curl_multi_strerror(mrc))));
	}
	t->in_multi = true;

	/* send it now: the answer can then come while the caller does other work */
	drive();
	return t;
}

void
http_progress(void)
{
	drive();
}

bool
http_done(HttpTransfer *t)
{
	if (!t->done)
		drive();
	return t->done;
}

void
http_cancel(HttpTransfer *t)
{
	release_transfer(t);
}

/*
 * How long one curl_multi_poll may sleep.  PostgreSQL's signal handlers
 * only set flags and the latch, neither of which wakes curl_multi_poll, so
 * the wait is cut into slices and the flags are looked at between them.
 * This bounds how late a query cancel or SIGTERM is noticed while a long
 * poll is under way, at the cost of a few idle wake-ups a second; waiting
 * on the latch and curl's sockets together (WaitLatchOrSocket with a
 * socket callback) would avoid them, but needs a wait set rebuilt
 * whenever libcurl changes its sockets, for no gain in throughput.
 */
#define HTTP_WAIT_SLICE_MS 100

static bool
interrupt_wanted(void)
{
	return (InterruptPending && (QueryCancelPending || ProcDiePending)) ||
		ShutdownRequestPending;
}

/*
 * Wait for the transfer, moving the others on meanwhile.  The transfer is
 * given up (and the interrupt serviced) on a cancel or a shutdown.
 */
static void
wait_for(HttpTransfer *t)
{
	drive();
	while (!t->done)
	{
		if (interrupt_wanted())
		{
			TransferOutcome o = {.rc = CURLE_ABORTED_BY_CALLBACK,
				.peer = pstrdup(t->peer), .url = pstrdup(t->url), .error = ""};

			release_transfer(t);
			report_transfer_error(&o);
		}
		(void) curl_multi_poll(multi_handle, NULL, 0, HTTP_WAIT_SLICE_MS, NULL);
		drive();
	}
}

/*
 * Wait for the transfer, free it, and return how it ended; on success the
 * answer is copied into the caller's memory.
 */
static TransferOutcome
collect(HttpTransfer *t, HttpResponse *response)
{
	TransferOutcome o;

	wait_for(t);
	o.rc = t->rc;
	o.peer = pstrdup(t->peer);
	o.url = pstrdup(t->url);
	o.error = pstrdup(t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->rc));
	o.timeout_ms = t->timeout_ms;
	o.max_response = t->buf.max;
	o.too_large = t->buf.too_large;
	o.out_of_memory = t->buf.out_of_memory;
	if (t->rc == CURLE_OK)
	{
		response->status = t->status;
		response->body_len = t->buf.len;
		response->body = palloc(t->buf.len + 1);
		if (t->buf.len > 0)
			memcpy(response->body, t->buf.data, t->buf.len);
		response->body[t->buf.len] = '\0';
		response->captured_header = t->buf.captured ? pstrdup(t->buf.captured) : NULL;
	}
	release_transfer(t);
	return o;
}

void
http_finish(HttpTransfer *t, HttpResponse *response)
{
	TransferOutcome o = collect(t, response);

	if (o.rc != CURLE_OK)
		report_transfer_error(&o);
}

bool
http_finish_try(HttpTransfer *t, HttpResponse *response, char **error)
{
	TransferOutcome o = collect(t, response);

	if (o.rc == CURLE_OK)
		return true;
	/* a cancel or shutdown is still the backend's to report */
	CHECK_FOR_INTERRUPTS();
	*error = o.error;
	return false;
}

void
http_perform(const HttpRequest *req, HttpResponse *response)
{
	http_finish(http_start(req), response);
}

bool
http_try(const HttpRequest *req, HttpResponse *response, char **error)
{
	return http_finish_try(http_start(req), response, error);
}
