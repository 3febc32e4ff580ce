/*-------------------------------------------------------------------------
 * sqs_client.c
 *	  One SQS request: an AWS JSON 1.0 call signed with Signature Version 4
 *	  (sigv4.c) with the credentials of aws_credentials.c, sent with
 *	  common/http.c, its answer parsed with PostgreSQL's JSON code, and AWS
 *	  errors turned into SQLSTATEs.  Owns the settings naming the queue and
 *	  the endpoint.  The operations built on it are in sqs.c.  No message
 *	  ever includes a credential.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "common/http.h"
#include "common/json_util.h"
#include "queue/aws_credentials.h"
#include "queue/sigv4.h"
#include "queue/sqs_client.h"

/* SQS answers are far smaller; this only bounds a misbehaving endpoint */
#define SQS_MAX_RESPONSE (64 * 1024 * 1024)

char	   *payment_queue_url = "";
char	   *payment_sqs_endpoint = "";

/* ------------------------------------------------------------------ */
/* settings */

static bool
check_url(char **newval, void **extra, GucSource source)
{
	char	   *problem;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (!http_parse_url(*newval, NULL, &problem))
	{
		GUC_check_errdetail("%s.", problem);
		return false;
	}
	return true;
}

void
sqs_client_define_settings(void)
{
	/*
	 * Where messages go is a security decision, and the workers and every
	 * backend must agree on it: PGC_SIGHUP, so only the server's
	 * configuration sets them.
	 */
	DefineCustomStringVariable("payment.queue_url",
							   gettext_noop("URL of the Amazon SQS queue; empty uses the embedded queue."),
							   NULL,
							   &payment_queue_url,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   check_url, NULL, NULL);

	DefineCustomStringVariable("payment.sqs_endpoint",
							   gettext_noop("URL SQS requests are sent to; empty means https://sqs.<region>.amazonaws.com."),
							   NULL,
							   &payment_sqs_endpoint,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   check_url, NULL, NULL);
}

bool
sqs_configured(void)
{
	return payment_queue_url != NULL && payment_queue_url[0] != '\0';
}

/* ------------------------------------------------------------------ */
/* answers */

/* the body as a Jsonb object container, or NULL if it is not one */
static JsonbContainer *
answer_object(const char *text, size_t len)
{
	Jsonb	   *jb = json_parse_object(text, len);

	return jb ? &jb->root : NULL;
}

/* a short, printable excerpt of an answer for errdetail */
static char *
excerpt(const char *text, size_t len)
{
	size_t		n = Min(len, 200);

	n = pg_mbcliplen(text, n, n);
	return psprintf("%.*s%s", (int) n, text, len > n ? "..." : "");
}

/* ------------------------------------------------------------------ */
/* AWS errors */

typedef struct AwsErrorMap
{
	const char *code;
	int			sqlstate;
} AwsErrorMap;

static const AwsErrorMap aws_errors[] = {
	/* the credentials are wrong, unknown or expired */
	{"InvalidClientTokenId", ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION},
	{"UnrecognizedClientException", ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION},
	{"SignatureDoesNotMatch", ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION},
	{"InvalidSignatureException", ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION},
	{"IncompleteSignature", ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION},
	{"MissingAuthenticationToken", ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION},
	{"MissingClientTokenId", ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION},
	{"InvalidAccessKeyId", ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION},
	{"InvalidSecurity", ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION},
	{"ExpiredToken", ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION},
	{"ExpiredTokenException", ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION},
	{"RequestExpired", ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION},
	/* the credentials are fine but not allowed */
	{"AccessDenied", ERRCODE_INSUFFICIENT_PRIVILEGE},
	{"AccessDeniedException", ERRCODE_INSUFFICIENT_PRIVILEGE},
	{"KmsAccessDenied", ERRCODE_INSUFFICIENT_PRIVILEGE},
	{"KMS.AccessDeniedException", ERRCODE_INSUFFICIENT_PRIVILEGE},
	/* slow down */
	{"ThrottlingException", ERRCODE_INSUFFICIENT_RESOURCES},
	{"Throttling", ERRCODE_INSUFFICIENT_RESOURCES},
	{"RequestThrottled", ERRCODE_INSUFFICIENT_RESOURCES},
	{"OverLimit", ERRCODE_INSUFFICIENT_RESOURCES},
	{"KmsThrottled", ERRCODE_INSUFFICIENT_RESOURCES},
	{"KMS.ThrottlingException", ERRCODE_INSUFFICIENT_RESOURCES},
	/* the queue */
	{"QueueDoesNotExist", ERRCODE_UNDEFINED_OBJECT},
	{"AWS.SimpleQueueService.NonExistentQueue", ERRCODE_UNDEFINED_OBJECT},
	{"QueueDeletedRecently", ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE},
	{"KmsDisabled", ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE},
	{"KmsInvalidState", ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE},
	{"KmsNotFound", ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE},
	{"KmsOptInRequired", ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE},
	/* the request */
	{"MessageTooLong", ERRCODE_PROGRAM_LIMIT_EXCEEDED},
	{"BatchRequestTooLong", ERRCODE_PROGRAM_LIMIT_EXCEEDED},
	{"TooManyEntriesInBatchRequest", ERRCODE_PROGRAM_LIMIT_EXCEEDED},
	{"InvalidMessageContents", ERRCODE_CHARACTER_NOT_IN_REPERTOIRE},
	{"InvalidParameterValue", ERRCODE_INVALID_PARAMETER_VALUE},
	{"MissingParameter", ERRCODE_INVALID_PARAMETER_VALUE},
	{"ReceiptHandleIsInvalid", ERRCODE_INVALID_PARAMETER_VALUE},
	{"InvalidBatchEntryId", ERRCODE_INVALID_PARAMETER_VALUE},
	{"BatchEntryIdsNotDistinct", ERRCODE_INVALID_PARAMETER_VALUE},
	{"EmptyBatchRequest", ERRCODE_INVALID_PARAMETER_VALUE},
	{"UnsupportedOperation", ERRCODE_INVALID_PARAMETER_VALUE},
	/* the service */
	{"ServiceUnavailable", ERRCODE_CONNECTION_FAILURE},
	{"KmsUnavailable", ERRCODE_CONNECTION_FAILURE},
	{"RequestTimeout", ERRCODE_CONNECTION_FAILURE},
	{"InternalError", ERRCODE_SYSTEM_ERROR},
	{"InternalFailure", ERRCODE_SYSTEM_ERROR},
	{NULL, 0}
};

/* SQLSTATE for an AWS error code, falling back on the HTTP status */
int
sqs_error_sqlstate(const char *code, long status)
{
	if (code != NULL)
	{
		for (const AwsErrorMap *m = aws_errors; m->code != NULL; m++)
			if (strcmp(m->code, code) == 0)
				return m->sqlstate;
	}
	if (status == 401)
		return ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
	if (status == 403)
		return ERRCODE_INSUFFICIENT_PRIVILEGE;
	if (status == 404)
		return ERRCODE_UNDEFINED_OBJECT;
	if (status == 413)
		return ERRCODE_PROGRAM_LIMIT_EXCEEDED;
	if (status == 429)
		return ERRCODE_INSUFFICIENT_RESOURCES;
	if (status == 502 || status == 503 || status == 504)
		return ERRCODE_CONNECTION_FAILURE;
	if (status >= 400 && status < 500)
		return ERRCODE_INVALID_PARAMETER_VALUE;
	return ERRCODE_SYSTEM_ERROR;
}

/* "com.amazonaws.sqs#QueueDoesNotExist" -> "QueueDoesNotExist" */
static const char *
short_type(const char *type)
{
	const char *hash = type ? strrchr(type, '#') : NULL;
	const char *colon;

	if (hash)
		type = hash + 1;
	/* some services append ":http://internal.amazon.com/..." */
	if (type && (colon = strchr(type, ':')) != NULL)
		return pnstrdup(type, colon - type);
	return type;
}

static void
report_aws_error(const char *operation, HttpResponse *resp)
{
	JsonbContainer *err = answer_object(resp->body, resp->body_len);
	const char *type = short_type(json_get_string(err, "__type"));
	char	   *message = json_get_string(err, "message");
	char	   *query_code = NULL;

	if (message == NULL)
		message = json_get_string(err, "Message");
	/* "AWS.SimpleQueueService.NonExistentQueue;Sender" */
	if (resp->captured_header != NULL)
	{
		char	   *semi = strchr(resp->captured_header, ';');

		query_code = semi ? pnstrdup(resp->captured_header, semi - resp->captured_header)
			: resp->captured_header;
	}
	if (message == NULL && err == NULL)
		message = excerpt(resp->body, resp->body_len);
	/* the legacy code only adds something when it differs */
	if (type != NULL && query_code != NULL && strcmp(type, query_code) == 0)
		query_code = NULL;

	ereport(ERROR,
			(errcode(sqs_error_sqlstate(type ? type : query_code, resp->status)),
			 errmsg("SQS %s failed with HTTP status %ld", operation, resp->status),
			 errdetail("AWS error %s%s%s%s: %s",
					   type ? type : "(none)",
					   query_code ? " (" : "",
					   query_code ? query_code : "",
					   query_code ? ")" : "",
					   message ? message : "(no message)")));
}

/* ------------------------------------------------------------------ */
/* requests */

/* the endpoint's URL: the setting, else the region's public endpoint */
static char *
endpoint_url(const char *region)
{
	if (payment_sqs_endpoint[0] != '\0')
		return payment_sqs_endpoint;
	return psprintf("https://sqs.%s.amazonaws.com", region);
}

/* region from "https://sqs.<region>.amazonaws.com/..." queue URLs */
static char *
region_from_queue_url(const char *queue_url)
{
	static const char prefix[] = "://sqs.";
	const char *p = strstr(queue_url, prefix);
	const char *end;

	if (p == NULL)
		return NULL;
	p += sizeof(prefix) - 1;
	end = strstr(p, ".amazonaws.com");
	if (end == NULL || end == p || memchr(p, '/', end - p) != NULL)
		return NULL;
	return pnstrdup(p, end - p);
}

static void
require_queue(const char *queue_url)
{
	if (queue_url == NULL || queue_url[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("payment.queue_url is not set")));
}

/* A signed request under way, and the operation it is, for messages. */
struct SqsCall
{
	HttpTransfer *transfer;
	char		operation[64];
};

/*
 * Sign and send one AWS JSON 1.0 request without waiting for the answer.
 * Raises when the request cannot be built or sent.
 */
SqsCall *
sqs_call_start(const char *operation, SqsRequest *request, int extra_wait_ms)
{
	AwsCredentials creds;
	char	   *region;
	char	   *url;
	HttpUrl		endpoint;
	char	   *problem;
	char		amz_date[SIGV4_DATE_LEN + 1];
	char	   *target = psprintf("AmazonSQS.%s", operation);
	HttpHeader	headers[6];
	int			nheaders = 0;
	char	   *authorization;
	HttpRequest http;
	HttpTransfer *transfer = NULL;
	SqsCall    *call;

	require_queue(request->queue_url);

	/*
	 * SQS speaks UTF-8, and message bodies pass through untranslated so that
	 * their MD5 sums hold.
	 */
	if (GetDatabaseEncoding() != PG_UTF8 && GetDatabaseEncoding() != PG_SQL_ASCII)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the SQS backend requires a UTF8 database"),
				 errdetail("The database encoding is %s.", GetDatabaseEncodingName())));

	region = aws_get_region();
	if (region == NULL)
		region = region_from_queue_url(request->queue_url);
	if (region == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no AWS region configured for the SQS backend"),
				 errhint("Set payment.aws_region, or AWS_REGION in the server's environment.")));
	url = endpoint_url(region);
	if (!http_parse_url(url, &endpoint, &problem))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid SQS endpoint \"%s\"", url),
				 errdetail("%s.", problem)));

	sigv4_now(amz_date);
	headers[nheaders++] = (HttpHeader) {"Host", endpoint.host};
	headers[nheaders++] = (HttpHeader) {"Content-Type", "application/x-amz-json-1.0"};
	headers[nheaders++] = (HttpHeader) {"X-Amz-Date", amz_date};
	headers[nheaders++] = (HttpHeader) {"X-Amz-Target", target};

	/* the credentials are wiped however this ends */
	aws_get_credentials(&creds);
	PG_TRY();
	{
		if (creds.session_token)
			headers[nheaders++] = (HttpHeader) {"X-Amz-Security-Token", creds.session_token};
		authorization = sigv4_authorization("POST", endpoint.path, "",
											headers, nheaders,
											request->body.data, request->body.len,
											amz_date, region, "sqs",
											creds.access_key_id,
											creds.secret_access_key);
		headers[nheaders++] = (HttpHeader) {"Authorization", authorization};
		http = (HttpRequest) {
			.peer = "SQS",
			.method = "POST",
			.url = url,
			.headers = headers,
			.nheaders = nheaders,
			.body = request->body.data,
			.body_len = request->body.len,
			.connect_timeout_ms = payment_http_timeout,
			.timeout_ms = (long) payment_http_timeout + extra_wait_ms,
			.max_response = SQS_MAX_RESPONSE,
			.capture_header = "x-amzn-query-error",
		};

		transfer = http_start(&http);
	}
	PG_FINALLY();
	{
		aws_free_credentials(&creds);
	}
	PG_END_TRY();

	call = MemoryContextAlloc(TopMemoryContext, sizeof(SqsCall));
	call->transfer = transfer;
	strlcpy(call->operation, operation, sizeof(call->operation));
	return call;
}

bool
sqs_call_done(SqsCall *call)
{
	return http_done(call->transfer);
}

void
sqs_call_cancel(SqsCall *call)
{
	http_cancel(call->transfer);
	pfree(call);
}

/*
 * Wait for the answer and return its top-level object, in the caller's
 * memory.  Raises an ERROR for transport failures, non-200 answers and
 * answers that are not a JSON object.  The call is freed either way.
 */
JsonbContainer *
sqs_call_finish(SqsCall *call)
{
	HttpTransfer *transfer = call->transfer;
	char	   *operation = pstrdup(call->operation);
	HttpResponse resp;
	JsonbContainer *answer;

	pfree(call);
	http_finish(transfer, &resp);

	if (resp.status != 200)
		report_aws_error(operation, &resp);

	answer = answer_object(resp.body, resp.body_len);
	if (answer == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("SQS %s answered with something other than a JSON object",
						operation),
				 errdetail("The answer began: %s",
						   excerpt(resp.body, resp.body_len))));
	return answer;
}

JsonbContainer *
sqs_call(const char *operation, SqsRequest *request, int extra_wait_ms)
{
	return sqs_call_finish(sqs_call_start(operation, request, extra_wait_ms));
}

void
sqs_start_request(SqsRequest *req, const char *queue_url)
{
	req->queue_url = queue_url;
	initStringInfo(&req->body);
	appendStringInfoString(&req->body, "{\"QueueUrl\":");
	escape_json(&req->body, queue_url);
}
