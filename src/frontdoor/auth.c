/*-------------------------------------------------------------------------
 * auth.c
 *	  Front-door security of the entry points: the payment.auth mode
 *	  ('role', 'api_key' or 'jwt'), the credential (the argument, else the
 *	  PostgREST request.headers setting), throttling, binding the caller to
 *	  a user, the JSON depth check, and the audit log of every refusal.
 *
 *	  Clients learn only what they can act on; the server log gets the
 *	  reason (never the credential) with the statement hidden, because the
 *	  statement may carry the credential (redact.c masks it elsewhere).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/jsonb.h"

#include "common/json_util.h"
#include "frontdoor/apikey.h"
#include "frontdoor/auth.h"
#include "frontdoor/jwks.h"
#include "frontdoor/jwt.h"
#include "frontdoor/redact.h"
#include "frontdoor/throttle.h"

/* the SQLSTATE of every throttling and quota refusal (documented) */
#define ERRCODE_PAYMENT_THROTTLED ERRCODE_CONFIGURATION_LIMIT_EXCEEDED

typedef enum AuthMode
{
	AUTH_ROLE,
	AUTH_API_KEY,
	AUTH_JWT
} AuthMode;

static const struct config_enum_entry auth_mode_options[] = {
	{"role", AUTH_ROLE, false},
	{"api_key", AUTH_API_KEY, false},
	{"jwt", AUTH_JWT, false},
	{NULL, 0, false}
};

static int	payment_auth_mode = AUTH_ROLE;
static int	payment_max_json_depth = 8;

/* entry point being authenticated, for audit lines written later */
static const char *current_operation = "a call";

/* payment id noted by the entry point before authentication, or "" */
static char noted_payment_id[65] = "";

static bool xact_callback_registered = false;

/* at the end of the transaction its payment is done */
static void
forget_credential(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		noted_payment_id[0] = '\0';
}

void
payment_auth_init(void)
{
	DefineCustomEnumVariable("payment.auth",
							 gettext_noop("How callers of the entry points authenticate: role, api_key or jwt."),
							 NULL,
							 &payment_auth_mode,
							 AUTH_ROLE,
							 auth_mode_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("payment.max_json_depth",
							gettext_noop("Deepest nesting of arrays and objects accepted in a payload."),
							NULL,
							&payment_max_json_depth,
							8, 1, 1000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	jwt_define_settings();
	jwks_define_settings();
	throttle_define_settings();

	redact_install_hooks();
}

Size
payment_auth_shmem_size(void)
{
	return throttle_shmem_size();
}

void
payment_auth_shmem_startup(void)
{
	throttle_shmem_startup();
}

/*
 * A client-supplied value made fit for a log line: at most 64 bytes, control
 * characters and quotes replaced, so a crafted paymentId cannot forge lines.
 */
static const char *
log_safe(const char *value)
{
	char	   *copy;

	if (value == NULL)
		return NULL;
	copy = pnstrdup(value, 64);
	for (char *c = copy; *c; c++)
		if ((unsigned char) *c < 0x20 || *c == 0x7f || *c == '"' || *c == '\\')
			*c = '?';
	return copy;
}

void
payment_audit_note_payment(const char *payment_id)
{
	strlcpy(noted_payment_id, payment_id ? payment_id : "", sizeof(noted_payment_id));
}

/*
 * The audit line of a refused call: who called (the role outside the
 * SECURITY DEFINER entry point, and the session role if different), what,
 * and why.  Never the credential.
 */
static void
audit_refusal(const char *operation, const char *reason,
			  const char *key_name, const char *user_id, const char *payment_id)
{
	Oid			outer = GetOuterUserId();
	Oid			session = GetSessionUserId();
	StringInfoData who;

	initStringInfo(&who);
	appendStringInfo(&who, "role \"%s\"", GetUserNameFromId(outer, true));
	if (session != outer)
		appendStringInfo(&who, " (session role \"%s\")",
						 GetUserNameFromId(session, true));
	if (payment_id == NULL && noted_payment_id[0] != '\0')
		payment_id = noted_payment_id;
	if (key_name)
		appendStringInfo(&who, ", API key \"%s\"", log_safe(key_name));
	if (user_id)
		appendStringInfo(&who, ", user \"%s\"", log_safe(user_id));
	if (payment_id)
		appendStringInfo(&who, ", payment \"%s\"", log_safe(payment_id));

	ereport(LOG,
			(errmsg("payment: refused %s by %s: %s", operation, who.data, reason),
			 errhidestmt(true)));
	pfree(who.data);
}

/* Header value from PostgREST's request.headers (lower-case names). */
char *
payment_request_header(const char *header)
{
	const char *headers = GetConfigOption("request.headers", true, false);
	Jsonb	   *obj;

	if (headers == NULL || headers[0] == '\0')
		return NULL;
	obj = json_parse_object(headers, strlen(headers));
	return obj ? json_get_string(&obj->root, header) : NULL;
}

static void refuse_throttled(const char *operation, ThrottleResult result,
							 const ThrottleRefusal *refusal, int calls,
							 const PaymentCaller *caller) pg_attribute_noreturn();
static void refuse_credential(const char *operation, const char *reason,
							  int sqlstate, const char *message,
							  const char *detail, const char *key_name) pg_attribute_noreturn();

static void
refuse_throttled(const char *operation, ThrottleResult result,
				 const ThrottleRefusal *refusal, int calls,
				 const PaymentCaller *caller)
{
	const char *what = refusal->server ? "server-wide" : "API key";
	const char *limit = result == THROTTLE_QUOTA ? "quota" : "rate limit";

	if (result == THROTTLE_NO_SLOT)
	{
		audit_refusal(operation, "no free throttling slot for the API key",
					  caller->key_name, caller->user_id, NULL);
		ereport(ERROR,
				(errcode(ERRCODE_PAYMENT_THROTTLED),
				 errmsg("too many API keys in use at once"),
				 errhint("Try again later; an administrator may revoke unused keys."),
				 errhidestmt(true)));
	}

	audit_refusal(operation, psprintf("%s %s exceeded", what, limit),
				  caller->key_name, caller->user_id, NULL);
	if (refusal->retry_after < 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAYMENT_THROTTLED),
				 errmsg("%s exceeded", limit),
				 errdetail("The batch counts as %d calls; the %s %s allows at most %d %s.",
						   calls, what, limit, refusal->most,
						   result == THROTTLE_QUOTA ? "per period" : "at once"),
				 errhint("Submit smaller batches."),
				 errhidestmt(true)));
	else if (calls > 1)
		ereport(ERROR,
				(errcode(ERRCODE_PAYMENT_THROTTLED),
				 errmsg("%s exceeded", limit),
				 errdetail("The batch counts as %d calls; the %s %s allows fewer now.",
						   calls, what, limit),
				 errhint("Retry after %.3f seconds.", refusal->retry_after),
				 errhidestmt(true)));
	else
		ereport(ERROR,
				(errcode(ERRCODE_PAYMENT_THROTTLED),
				 errmsg("%s exceeded", limit),
				 errdetail("The %s %s allows no more calls now.", what, limit),
				 errhint("Retry after %.3f seconds.", refusal->retry_after),
				 errhidestmt(true)));
	pg_unreachable();
}

static void
require_shared_throttling(const char *why)
{
	if (!throttle_available())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s requires the payment library in shared_preload_libraries", why),
				 errdetail("Throttling state must be shared by all backends."),
				 errhint("Add payment to shared_preload_libraries and restart the server.")));
}

/*
 * Refuse a failed authentication.  Failures are counted in a server-wide
 * bucket of their own (payment.auth_failure_rate_limit), never in the one
 * of valid callers; once it is empty they get 53400 instead of their own
 * SQLSTATE.
 */
static void
refuse_credential(const char *operation, const char *reason, int sqlstate,
				  const char *message, const char *detail, const char *key_name)
{
	double		wait;

	if (payment_auth_failure_rate_limit > 0)
	{
		require_shared_throttling("payment.auth_failure_rate_limit");
		if (throttle_auth_failure(&wait) != THROTTLE_OK)
		{
			audit_refusal(operation,
						  psprintf("%s; server-wide failed-authentication rate limit exceeded", reason),
						  key_name, NULL, NULL);
			ereport(ERROR,
					(errcode(ERRCODE_PAYMENT_THROTTLED),
					 errmsg("too many failed authentications"),
					 errdetail("The server-wide limit of failed authentications allows no more now."),
					 errhint("Retry after %.3f seconds.", wait),
					 errhidestmt(true)));
		}
	}
	audit_refusal(operation, reason, key_name, NULL, NULL);
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("%s", message),
			 detail ? errdetail("%s", detail) : 0,
			 errhidestmt(true)));
	pg_unreachable();
}

static void
authenticate_api_key(const char *credential, const char *operation,
					 PaymentCaller *caller)
{
	ApiKey		key;
	ApiKeyResult result;

	if (credential == NULL)
		refuse_credential(operation, "no API key presented",
						  ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
						  "API key required",
						  "Pass the key as the credential argument or in the x-api-key header.",
						  NULL);

	key.name = NULL;
	result = apikey_check(credential, &key);
	if (result != APIKEY_OK)
		refuse_credential(operation, apikey_result_text(result),
						  ERRCODE_INVALID_PASSWORD, "invalid API key", NULL,
						  key.name);

	caller->key_name = key.name;
	strlcpy(caller->key_id, key.key_id, sizeof(caller->key_id));
	caller->key_limits = key.limits;
}

static void
authenticate_jwt(const char *credential, const char *operation,
				 PaymentCaller *caller)
{
	JwtResult	result;
	char	   *user_id;

	if (credential == NULL)
		refuse_credential(operation, "no token presented",
						  ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
						  "bearer token required",
						  "Pass the token as the credential argument or in the Authorization header.",
						  NULL);
	/* RFC 6750: the scheme name is case-insensitive */
	if (pg_strncasecmp(credential, "Bearer ", 7) == 0)
		credential += 7;

	result = jwt_verify(credential, &user_id);
	if (result == JWT_EXPIRED)
		refuse_credential(operation, jwt_result_text(result),
						  ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
						  "token expired", "Obtain a new token.", NULL);
	if (result != JWT_OK)
		refuse_credential(operation, jwt_result_text(result),
						  ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
						  "invalid token", NULL, NULL);
	caller->user_id = user_id;
}

void
payment_identify(const char *credential, const char *operation,
				 PaymentCaller *caller)
{
	memset(caller, 0, sizeof(*caller));
	caller->key_limits.quota_limit = -1;	/* no key, no limits of its own */
	current_operation = operation;
	if (!xact_callback_registered)
	{
		RegisterXactCallback(forget_credential, NULL);
		xact_callback_registered = true;
	}
	redact_note_call(credential != NULL);

	switch ((AuthMode) payment_auth_mode)
	{
		case AUTH_ROLE:
			/* PostgreSQL authenticated the session; EXECUTE grants decide */
			break;
		case AUTH_API_KEY:
			require_shared_throttling("payment.auth = 'api_key'");
			authenticate_api_key(credential ? credential : payment_request_header("x-api-key"),
								 operation, caller);
			break;
		case AUTH_JWT:
			authenticate_jwt(credential ? credential : payment_request_header("authorization"),
							 operation, caller);
			break;
	}
}

void
payment_throttle(const PaymentCaller *caller, int calls)
{
	ThrottleResult result;
	ThrottleRefusal refusal;

	calls = Max(calls, 1);
	/* only authenticated calls get here: failures cannot use up this limit */
	if (payment_rate_limit > 0)
		require_shared_throttling("payment.rate_limit");
	result = throttle_calls(caller->key_id[0] != '\0' ? caller->key_id : NULL,
							&caller->key_limits, calls, &refusal);
	if (result != THROTTLE_OK)
		refuse_throttled(current_operation, result, &refusal, calls, caller);
	noted_payment_id[0] = '\0';
}

void
payment_authenticate(const char *credential, const char *operation,
					 PaymentCaller *caller)
{
	payment_identify(credential, operation, caller);
	payment_throttle(caller, 1);
}

char *
payment_caller_name(const PaymentCaller *caller)
{
	if (caller->key_id[0] != '\0')
		return pstrdup(caller->key_id);
	if (caller->user_id != NULL)
		return pstrdup(caller->user_id);
	return GetUserNameFromId(GetOuterUserId(), false);
}

/*
 * Cognito's sub is a UUID, as is userId; compare UUID-shaped strings
 * case-insensitively, anything else exactly.
 */
static bool
same_user(const char *a, const char *b)
{
	if (strlen(a) == 36 && strlen(b) == 36)
		return pg_strcasecmp(a, b) == 0;
	return strcmp(a, b) == 0;
}

void
payment_authorize_user(const PaymentCaller *caller, const char *user_id,
					   const char *payment_id)
{
	/* callers not bound to a user (roles, API keys) may act for any user */
	if (caller->user_id == NULL || user_id == NULL)
		return;
	if (same_user(caller->user_id, user_id))
		return;

	audit_refusal(current_operation,
				  psprintf("token user does not match the payment's user \"%s\"", log_safe(user_id)),
				  caller->key_name, caller->user_id, payment_id);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for the payments of another user"),
			 errdetail("The token's user may act only on payments whose userId is that user."),
			 errhidestmt(true)));
}

/* depth of nested arrays and objects, stopping early past the limit */
static int
json_depth(Jsonb *payload, int limit)
{
	JsonbIterator *it = JsonbIteratorInit(&payload->root);
	JsonbIteratorToken tok;
	JsonbValue	v;
	int			depth = 0;
	int			deepest = 0;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_ARRAY || tok == WJB_BEGIN_OBJECT)
		{
			if (++depth > deepest)
				deepest = depth;
			if (deepest > limit)
				break;
		}
		else if (tok == WJB_END_ARRAY || tok == WJB_END_OBJECT)
			depth--;
	}
	return deepest;
}

/*
 * In place of a WAF: refuse payloads nested deeper than
 * payment.max_json_depth.  (Size is limited by payment.max_payload_size; NUL
 * and control characters outside strings never get past the JSON parser.)
 */
void
payment_defence_check(Jsonb *payload)
{
	if (json_depth(payload, payment_max_json_depth) > payment_max_json_depth)
	{
		char	   *payment_id = NULL;

		if (JB_ROOT_IS_OBJECT(payload) && !JB_ROOT_IS_SCALAR(payload))
			payment_id = json_get_string(&payload->root, "paymentId");
		audit_refusal(current_operation, "payload nested too deeply", NULL, NULL, payment_id);
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("payment document nested too deeply"),
				 errdetail("Arrays and objects may nest at most %d levels.",
						   payment_max_json_depth)));
	}
}
