/*-------------------------------------------------------------------------
 * sqs.c
 *	  The Amazon SQS queue backend: its settings and the SQS operations the
 *	  entry points and the workers use when payment.queue_url is set.
 *
 * Owns: the payment.queue_url, sqs_endpoint, aws_* , wait_time and
 * http_timeout settings; building AWS JSON 1.0 requests (escape_json),
 * signing them (sigv4.c) with the credentials of aws_credentials.c,
 * sending them (http.c), parsing answers with PostgreSQL's JSON code, and
 * turning AWS errors into SQLSTATEs.  Every operation raises an ERROR when
 * it fails; the workers catch it and back off, and the entry points let
 * it reach the client.  No message ever includes a credential.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>

#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "aws_credentials.h"
#include "http.h"
#include "sigv4.h"
#include "sqs.h"

/* AWS's limits per batch request */
#define SQS_MAX_BATCH 10
#define SQS_MAX_BATCH_BYTES (256 * 1024)
#define SQS_MAX_VISIBILITY (12 * 60 * 60)

char	   *payment_queue_url = "";
char	   *payment_sqs_endpoint = "";
char	   *payment_aws_region = "";
char	   *payment_aws_access_key_id = "";
char	   *payment_aws_secret_access_key = "";
char	   *payment_aws_session_token = "";
int			payment_wait_time = 20;

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
payment_sqs_init(void)
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

	DefineCustomStringVariable("payment.aws_region",
							   gettext_noop("AWS region of the SQS queue; empty takes it from the environment."),
							   NULL,
							   &payment_aws_region,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("payment.aws_access_key_id",
							   gettext_noop("AWS access key id for SQS; empty takes credentials from the environment."),
							   NULL,
							   &payment_aws_access_key_id,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("payment.aws_secret_access_key",
							   gettext_noop("AWS secret access key for SQS."),
							   NULL,
							   &payment_aws_secret_access_key,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("payment.aws_session_token",
							   gettext_noop("AWS session token for temporary SQS credentials."),
							   NULL,
							   &payment_aws_session_token,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("payment.wait_time",
							gettext_noop("Seconds a worker's SQS receive waits for messages (long poll)."),
							NULL,
							&payment_wait_time,
							20, 0, 20,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payment.http_timeout",
							gettext_noop("Time an SQS request may take, beyond the long poll."),
							NULL,
							&payment_http_timeout,
							10000, 100, 10 * 60 * 1000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}

bool
payment_use_sqs(void)
{
	return payment_queue_url != NULL && payment_queue_url[0] != '\0';
}

/* ------------------------------------------------------------------ */
/* JSON answers */

static JsonbValue *
json_get(JsonbContainer *obj, const char *key)
{
	if (obj == NULL || !JsonContainerIsObject(obj))
		return NULL;
	return getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);
}

static char *
json_get_string(JsonbContainer *obj, const char *key)
{
	JsonbValue *v = json_get(obj, key);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

static JsonbContainer *
json_get_container(JsonbContainer *obj, const char *key)
{
	JsonbValue *v = json_get(obj, key);

	if (v == NULL || v->type != jbvBinary)
		return NULL;
	return v->val.binary.data;
}

/* number of elements of an array member; 0 when absent */
static int
json_array_size(JsonbContainer *arr)
{
	if (arr == NULL || !JsonContainerIsArray(arr))
		return 0;
	return JsonContainerSize(arr);
}

static JsonbContainer *
json_array_object(JsonbContainer *arr, int i)
{
	JsonbValue *v = getIthJsonbValueFromContainer(arr, i);

	if (v == NULL || v->type != jbvBinary)
		return NULL;
	return v->val.binary.data;
}

/* the body as a Jsonb object container, or NULL if it is not JSON */
static JsonbContainer *
parse_json_object(char *text, size_t len)
{
	JsonLexContext *lex;
	Jsonb	   *jb;

	if (len == 0)
		return NULL;
	/* validate without throwing, so that garbage gets our own SQLSTATE */
	lex = makeJsonLexContextCstringLen(text, len, GetDatabaseEncoding(), false);
	if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
		return NULL;
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
	if (!JB_ROOT_IS_OBJECT(jb))
		return NULL;
	return &jb->root;
}

/* a short, printable excerpt of an answer for errdetail */
static char *
excerpt(const char *text, size_t len)
{
	size_t		n = Min(len, 200);

	n = pg_mbcliplen(text, n, n);
	return psprintf("%.*s%s", (int) n, text, len > n ? "..." : "");
}

static void
md5_hex(const char *data, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!EVP_Digest(data, len, md, &mdlen, EVP_md5(), NULL) || mdlen != 16)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute an MD5 digest")));
	for (int i = 0; i < 16; i++)
	{
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 0xf];
	}
	out[32] = '\0';
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
static int
aws_error_sqlstate(const char *code, long status)
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
	JsonbContainer *err = parse_json_object(resp->body, resp->body_len);
	const char *type = short_type(json_get_string(err, "__type"));
	char	   *message = json_get_string(err, "message");
	char	   *query_code = NULL;

	if (message == NULL)
		message = json_get_string(err, "Message");
	/* "AWS.SimpleQueueService.NonExistentQueue;Sender" */
	if (resp->query_error != NULL)
	{
		char	   *semi = strchr(resp->query_error, ';');

		query_code = semi ? pnstrdup(resp->query_error, semi - resp->query_error)
			: resp->query_error;
	}
	if (message == NULL && err == NULL)
		message = excerpt(resp->body, resp->body_len);
	/* the legacy code only adds something when it differs */
	if (type != NULL && query_code != NULL && strcmp(type, query_code) == 0)
		query_code = NULL;

	ereport(ERROR,
			(errcode(aws_error_sqlstate(type ? type : query_code, resp->status)),
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
region_from_queue_url(void)
{
	static const char prefix[] = "://sqs.";
	const char *p = strstr(payment_queue_url, prefix);
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
require_queue(void)
{
	if (!payment_use_sqs())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("payment.queue_url is not set")));
}

/*
 * Send one signed AWS JSON 1.0 request and return the answer's top-level
 * object.  Raises an ERROR for transport failures, non-200 answers and
 * answers that are not a JSON object.
 */
static JsonbContainer *
sqs_call(const char *operation, StringInfo request, int extra_wait_ms)
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
	HttpResponse resp;
	JsonbContainer *answer;

	require_queue();

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
		region = region_from_queue_url();
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
											request->data, request->len,
											amz_date, region, "sqs",
											creds.access_key_id,
											creds.secret_access_key);
		headers[nheaders++] = (HttpHeader) {"Authorization", authorization};
		http_post(url, headers, nheaders, request->data, request->len,
				  extra_wait_ms, &resp);
	}
	PG_FINALLY();
	{
		aws_free_credentials(&creds);
	}
	PG_END_TRY();

	if (resp.status != 200)
		report_aws_error(operation, &resp);

	answer = parse_json_object(resp.body, resp.body_len);
	if (answer == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("SQS %s answered with something other than a JSON object",
						operation),
				 errdetail("The answer began: %s",
						   excerpt(resp.body, resp.body_len))));
	return answer;
}

static void
start_request(StringInfo req)
{
	initStringInfo(req);
	appendStringInfoString(req, "{\"QueueUrl\":");
	escape_json(req, payment_queue_url);
}

/* ------------------------------------------------------------------ */
/* operations */

char *
sqs_send_message(const char *body)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt = AllocSetContextCreate(caller, "SQS SendMessage",
											  ALLOCSET_DEFAULT_SIZES);
	StringInfoData req;
	JsonbContainer *answer;
	char	   *message_id;
	char	   *md5;
	char		expected[33];
	char	   *result;

	MemoryContextSwitchTo(cxt);
	start_request(&req);
	appendStringInfoString(&req, ",\"MessageBody\":");
	escape_json(&req, body);
	appendStringInfoChar(&req, '}');

	answer = sqs_call("SendMessage", &req, 0);
	message_id = json_get_string(answer, "MessageId");
	md5 = json_get_string(answer, "MD5OfMessageBody");
	md5_hex(body, strlen(body), expected);
	if (message_id == NULL || md5 == NULL || pg_strcasecmp(md5, expected) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("SQS did not confirm the message body"),
				 errdetail("MessageId %s, MD5OfMessageBody %s, expected %s.",
						   message_id ? message_id : "(none)",
						   md5 ? md5 : "(none)", expected),
				 errhint("The message may have been enqueued damaged; the store dead-letters what it cannot read.")));

	MemoryContextSwitchTo(caller);
	result = pstrdup(message_id);
	MemoryContextDelete(cxt);
	return result;
}

/*
 * Send bodies[first..] until 10 entries or the batch size limit; returns
 * the index after the last one sent.
 */
static int
send_batch_chunk(char **bodies, int first, int count, char **message_ids)
{
	StringInfoData req;
	JsonbContainer *answer;
	JsonbContainer *ok;
	JsonbContainer *failed;
	size_t		bytes = 0;
	int			end = first;
	int			nfailed;

	start_request(&req);
	appendStringInfoString(&req, ",\"Entries\":[");
	while (end < count && end - first < SQS_MAX_BATCH)
	{
		size_t		len = strlen(bodies[end]);

		/* a lone oversized body still goes, for SQS to name the problem */
		if (end > first && bytes + len > SQS_MAX_BATCH_BYTES)
			break;
		bytes += len;
		appendStringInfo(&req, "%s{\"Id\":\"%d\",\"MessageBody\":",
						 end > first ? "," : "", end);
		escape_json(&req, bodies[end]);
		appendStringInfoChar(&req, '}');
		end++;
	}
	appendStringInfoString(&req, "]}");

	answer = sqs_call("SendMessageBatch", &req, 0);

	failed = json_get_container(answer, "Failed");
	nfailed = json_array_size(failed);
	if (nfailed > 0)
	{
		StringInfoData detail;
		char	   *first_code = NULL;

		initStringInfo(&detail);
		for (int i = 0; i < nfailed; i++)
		{
			JsonbContainer *f = json_array_object(failed, i);
			char	   *id = json_get_string(f, "Id");
			char	   *code = json_get_string(f, "Code");
			char	   *msg = json_get_string(f, "Message");

			if (first_code == NULL)
				first_code = code;
			appendStringInfo(&detail, "%sentry %s: %s%s%s",
							 i > 0 ? "; " : "", id ? id : "?",
							 code ? code : "(no code)",
							 msg ? ": " : "", msg ? msg : "");
		}
		ereport(ERROR,
				(errcode(aws_error_sqlstate(first_code, 400)),
				 errmsg("SQS rejected %d of the payments %d to %d", nfailed,
						first, end - 1),
				 errdetail("Entries are numbered from 0 in the order given: %s.",
						   detail.data),
				 errhint("Entries before %d and accepted entries of this batch were enqueued.",
						 first)));
	}

	ok = json_get_container(answer, "Successful");
	for (int i = 0; i < json_array_size(ok); i++)
	{
		JsonbContainer *s = json_array_object(ok, i);
		char	   *id = json_get_string(s, "Id");
		char	   *message_id = json_get_string(s, "MessageId");
		char	   *md5 = json_get_string(s, "MD5OfMessageBody");
		char		expected[33];
		int			index = id ? atoi(id) : -1;

		if (index < first || index >= end || message_id == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("SQS answered SendMessageBatch with an unknown entry \"%s\"",
							id ? id : "(none)")));
		md5_hex(bodies[index], strlen(bodies[index]), expected);
		if (md5 == NULL || pg_strcasecmp(md5, expected) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("SQS did not confirm the body of entry %d", index),
					 errdetail("MessageId %s, MD5OfMessageBody %s, expected %s.",
							   message_id, md5 ? md5 : "(none)", expected)));
		message_ids[index] = message_id;
	}
	for (int i = first; i < end; i++)
		if (message_ids[i] == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("SQS answered SendMessageBatch without entry %d", i)));
	return end;
}

void
sqs_send_message_batch(char **bodies, int count, char **message_ids)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt = AllocSetContextCreate(caller, "SQS SendMessageBatch",
											  ALLOCSET_DEFAULT_SIZES);
	int			next = 0;

	for (int i = 0; i < count; i++)
		message_ids[i] = NULL;
	while (next < count)
	{
		int			first = next;

		MemoryContextSwitchTo(cxt);
		next = send_batch_chunk(bodies, first, count, message_ids);
		MemoryContextSwitchTo(caller);
		for (int i = first; i < next; i++)
			message_ids[i] = pstrdup(message_ids[i]);
		MemoryContextReset(cxt);
	}
	MemoryContextDelete(cxt);
}

int
sqs_receive_messages(QueueMessage **messages, int max_messages)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt = AllocSetContextCreate(caller, "SQS ReceiveMessage",
											  ALLOCSET_DEFAULT_SIZES);
	int			want = Max(1, Min(max_messages, SQS_MAX_BATCH));
	StringInfoData req;
	JsonbContainer *answer;
	JsonbContainer *list;
	QueueMessage *out;
	int			n = 0;

	MemoryContextSwitchTo(cxt);
	start_request(&req);
	appendStringInfo(&req,
					 ",\"MaxNumberOfMessages\":%d,\"WaitTimeSeconds\":%d,"
					 "\"VisibilityTimeout\":%d,"
					 "\"MessageSystemAttributeNames\":[\"ApproximateReceiveCount\"]}",
					 want, payment_wait_time,
					 Min(payment_visibility_timeout, SQS_MAX_VISIBILITY));

	answer = sqs_call("ReceiveMessage", &req, payment_wait_time * 1000);
	list = json_get_container(answer, "Messages");

	out = MemoryContextAllocZero(caller,
								 sizeof(QueueMessage) * Max(1, json_array_size(list)));
	for (int i = 0; i < json_array_size(list); i++)
	{
		JsonbContainer *m = json_array_object(list, i);
		char	   *message_id = json_get_string(m, "MessageId");
		char	   *receipt = json_get_string(m, "ReceiptHandle");
		char	   *body = json_get_string(m, "Body");
		char	   *md5 = json_get_string(m, "MD5OfBody");
		char	   *count = json_get_string(json_get_container(m, "Attributes"),
											"ApproximateReceiveCount");
		int			receive_count = count ? atoi(count) : 1;
		char		expected[33];

		if (message_id == NULL || receipt == NULL || body == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("SQS ReceiveMessage answered with an incomplete message")));

		/*
		 * A body damaged in transit is left to come back after the
		 * visibility timeout, until its receives are used up and the store
		 * dead-letters it as received.
		 */
		md5_hex(body, strlen(body), expected);
		if (md5 != NULL && pg_strcasecmp(md5, expected) != 0 &&
			receive_count <= payment_max_receive_count)
		{
			ereport(WARNING,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("SQS message %s failed its MD5 check; leaving it on the queue",
							message_id)));
			continue;
		}

		out[n].seq = 0;
		out[n].message_id = MemoryContextStrdup(caller, message_id);
		out[n].receipt_handle = MemoryContextStrdup(caller, receipt);
		out[n].body = MemoryContextStrdup(caller, body);
		out[n].receive_count = Max(receive_count, 1);
		out[n].outcome = STORE_PENDING;
		out[n].retry_delay = 0;
		out[n].error = NULL;
		n++;
	}

	MemoryContextSwitchTo(caller);
	MemoryContextDelete(cxt);
	*messages = out;
	return n;
}

/*
 * One DeleteMessageBatch or ChangeMessageVisibilityBatch for up to 10
 * messages.  Entries SQS refuses are only warned about: such a message
 * comes back after its visibility timeout and the store recognises it.
 */
static void
settle_chunk(const char *operation, QueueMessage **chunk, int n, bool delete)
{
	StringInfoData req;
	JsonbContainer *answer;
	JsonbContainer *failed;
	int			nfailed;

	start_request(&req);
	appendStringInfoString(&req, ",\"Entries\":[");
	for (int i = 0; i < n; i++)
	{
		appendStringInfo(&req, "%s{\"Id\":\"%d\",\"ReceiptHandle\":",
						 i > 0 ? "," : "", i);
		escape_json(&req, chunk[i]->receipt_handle);
		if (!delete)
			appendStringInfo(&req, ",\"VisibilityTimeout\":%d",
							 Max(0, Min(chunk[i]->retry_delay, SQS_MAX_VISIBILITY)));
		appendStringInfoChar(&req, '}');
	}
	appendStringInfoString(&req, "]}");

	answer = sqs_call(operation, &req, 0);
	failed = json_get_container(answer, "Failed");
	nfailed = json_array_size(failed);
	for (int i = 0; i < nfailed; i++)
	{
		JsonbContainer *f = json_array_object(failed, i);
		char	   *id = json_get_string(f, "Id");
		char	   *code = json_get_string(f, "Code");
		char	   *msg = json_get_string(f, "Message");
		int			index = id ? atoi(id) : -1;

		ereport(WARNING,
				(errcode(aws_error_sqlstate(code, 400)),
				 errmsg("SQS %s refused message %s", operation,
						index >= 0 && index < n ? chunk[index]->message_id : "?"),
				 errdetail("AWS error %s: %s", code ? code : "(none)",
						   msg ? msg : "(no message)"),
				 errhint("The message becomes visible again after its visibility timeout.")));
	}
}

static void
settle_all(const char *operation, QueueMessage *messages, int count,
		   bool delete, MemoryContext cxt)
{
	QueueMessage *chunk[SQS_MAX_BATCH];
	int			n = 0;

	for (int i = 0; i < count; i++)
	{
		QueueMessage *m = &messages[i];
		bool		wanted;

		if (m->receipt_handle == NULL)
			continue;
		if (delete)
			wanted = m->outcome == STORE_STORED ||
				m->outcome == STORE_DUPLICATE ||
				m->outcome == STORE_DEAD_LETTERED;
		else
			wanted = m->outcome == STORE_RETRY;
		if (!wanted)
			continue;
		chunk[n++] = m;
		if (n == SQS_MAX_BATCH)
		{
			settle_chunk(operation, chunk, n, delete);
			MemoryContextReset(cxt);
			n = 0;
		}
	}
	if (n > 0)
		settle_chunk(operation, chunk, n, delete);
	MemoryContextReset(cxt);
}

void
sqs_settle(QueueMessage *messages, int count)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt = AllocSetContextCreate(caller, "SQS settle",
											  ALLOCSET_DEFAULT_SIZES);

	/* messages left STORE_PENDING simply reappear after the timeout */
	MemoryContextSwitchTo(cxt);
	settle_all("DeleteMessageBatch", messages, count, true, cxt);
	settle_all("ChangeMessageVisibilityBatch", messages, count, false, cxt);
	MemoryContextSwitchTo(caller);
	MemoryContextDelete(cxt);
}
