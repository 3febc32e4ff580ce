/*-------------------------------------------------------------------------
 * request_id.c
 *	  Which request a payment came with, so that an operator can trace a
 *	  stored payment back to an API Gateway-style access log line: the
 *	  caller's x-request-id header (PostgREST's request.headers), else its
 *	  W3C traceparent, else an id made here.  A header value is taken only
 *	  when well formed (bounded, of the characters request ids are made
 *	  of), so that nothing a client sends lands unchecked in the tables and
 *	  the answers.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/uuid.h"

#include "frontdoor/auth.h"
#include "frontdoor/request_id.h"
#include "payment.h"

/* longer than any UUID, ULID, AWS or X-Ray id */
#define MAX_REQUEST_ID_LEN 128

/* letters, digits and the punctuation of UUIDs, base64 and AWS request ids */
static bool
well_formed_request_id(const char *id)
{
	size_t		len = strlen(id);

	if (len == 0 || len > MAX_REQUEST_ID_LEN)
		return false;
	for (const char *c = id; *c; c++)
		if (!(isalnum((unsigned char) *c) || strchr("-_.:/+=@", *c) != NULL))
			return false;
	return true;
}

static bool
all_hex(const char *s, int len, bool *zero)
{
	*zero = true;
	for (int i = 0; i < len; i++)
	{
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
		if (s[i] != '0')
			*zero = false;
	}
	return true;
}

/*
 * W3C Trace Context, version 00: "00-" 32 hex (trace id) "-" 16 hex
 * (parent id) "-" 2 hex (flags), lower case, neither id all zeros.
 */
static bool
well_formed_traceparent(const char *tp)
{
	bool		zero;

	if (strlen(tp) != 55 || strncmp(tp, "00-", 3) != 0 || tp[35] != '-' || tp[52] != '-')
		return false;
	if (!all_hex(tp + 3, 32, &zero) || zero)
		return false;
	if (!all_hex(tp + 36, 16, &zero) || zero)
		return false;
	return all_hex(tp + 53, 2, &zero);
}

char *
payment_request_id(void)
{
	char	   *id = payment_request_header("x-request-id");

	if (id != NULL && well_formed_request_id(id))
		return id;
	id = payment_request_header("traceparent");
	if (id != NULL && well_formed_traceparent(id))
		return id;
	return payment_random_uuid_text();
}
