/*-------------------------------------------------------------------------
 * http.c
 *	  The extension's one HTTP client (SQS requests, JWKS fetches), on
 *	  libcurl.
 *
 * Owns: the per-process curl handle (kept, so connections are reused),
 * the payment.http_timeout setting, TLS verification, cancellation, and
 * turning transport failures into ERRORs with a SQLSTATE.  It knows no
 * protocol above HTTP: messages name the peer the caller says it asks.
 *
 * No ereport may happen while libcurl is on the stack (a longjmp would
 * leave the handle inconsistent), so the callbacks only record state and
 * every error is raised after curl_easy_perform has returned.
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

static CURL *curl_handle = NULL;

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

static CURL *
get_handle(void)
{
	if (curl_handle != NULL)
		return curl_handle;

	/* once per process; backends are single-threaded */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialize libcurl")));
	curl_handle = curl_easy_init();
	if (curl_handle == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	return curl_handle;
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

/* Raise the ERROR for a failed transfer; never returns. */
static void
report_transfer_error(CURLcode rc, const char *errbuf, const HttpRequest *req,
					  ResponseBuffer *buf)
{
	const char *detail = errbuf[0] ? errbuf : curl_easy_strerror(rc);
	const char *url = req->url;
	const char *peer = req->peer;

	switch (rc)
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
					 errdetail("No complete response within %ld ms.", req->timeout_ms),
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
			if (buf->too_large)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("response from %s endpoint \"%s\" is too large", peer, url),
						 errdetail("The limit is %zu bytes.", buf->max)));
			if (buf->out_of_memory)
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

/*
 * Run the request on the kept handle.  Returns libcurl's result; errbuf
 * holds its message.  Nothing here may raise once libcurl runs.
 */
static CURLcode
perform(const HttpRequest *req, HttpResponse *response, char *errbuf,
		ResponseBuffer *buf)
{
	CURL	   *h = get_handle();
	struct curl_slist *list = NULL;
	char	  **lines;
	bool		list_ok = true;
	bool		post = strcmp(req->method, "POST") == 0;
	CURLcode	rc;

	/* everything that can ereport happens before libcurl runs */
	lines = palloc((req->nheaders + 1) * sizeof(char *));
	for (int i = 0; i < req->nheaders; i++)
		lines[i] = psprintf("%s: %s", req->headers[i].name, req->headers[i].value);
	/* no "Expect: 100-continue" round trip before larger bodies */
	lines[req->nheaders] = "Expect:";
	memset(buf, 0, sizeof(*buf));
	buf->cxt = CurrentMemoryContext;
	buf->max = req->max_response;
	buf->capture = req->capture_header;
	errbuf[0] = '\0';

	for (int i = 0; i <= req->nheaders && list_ok; i++)
	{
		struct curl_slist *next = curl_slist_append(list, lines[i]);

		if (next == NULL)
			list_ok = false;
		else
			list = next;
	}
	if (!list_ok)
	{
		curl_slist_free_all(list);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory building a %s request", req->peer)));
	}

	/* back to defaults; the connection cache survives a reset */
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, req->url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	if (post)
	{
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
	}
	else
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(h, CURLOPT_USERAGENT, HTTP_USER_AGENT);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	/* libcurl must not use signals (SIGALRM is PostgreSQL's) */
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, req->timeout_ms);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_callback);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, buf);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_callback);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, buf);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress_callback);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, NULL);

	rc = curl_easy_perform(h);

	/* the handle must not keep pointers into this frame or its memory */
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	curl_slist_free_all(list);
	for (int i = 0; i < req->nheaders; i++)
		pfree(lines[i]);
	pfree(lines);

	if (rc != CURLE_OK)
	{
		if (buf->data)
			pfree(buf->data);
		return rc;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &response->status);
	if (buf->data == NULL)
		buf->data = pstrdup("");
	response->body = buf->data;
	response->body_len = buf->len;
	response->captured_header = buf->captured;
	return CURLE_OK;
}

void
http_perform(const HttpRequest *req, HttpResponse *response)
{
	char		errbuf[CURL_ERROR_SIZE];
	ResponseBuffer buf;
	CURLcode	rc = perform(req, response, errbuf, &buf);

	if (rc != CURLE_OK)
		report_transfer_error(rc, errbuf, req, &buf);
}

bool
http_try(const HttpRequest *req, HttpResponse *response, char **error)
{
	char		errbuf[CURL_ERROR_SIZE];
	ResponseBuffer buf;
	CURLcode	rc = perform(req, response, errbuf, &buf);

	if (rc == CURLE_OK)
		return true;
	/* a cancel or shutdown is still the backend's to report */
	CHECK_FOR_INTERRUPTS();
	*error = pstrdup(errbuf[0] ? errbuf : curl_easy_strerror(rc));
	return false;
}
