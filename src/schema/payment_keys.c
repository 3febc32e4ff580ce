/*-------------------------------------------------------------------------
 * payment_keys.c
 *	  paymentId and userId of any message body, valid or not (a dead
 *	  letter's, a listed message's): parsed with PostgreSQL's JSON parser,
 *	  never raising, so that no body makes its caller fail.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "schema/json_schema.h"
#include "schema/payment_schema.h"

/*
 * paymentId and userId of any message body, as uuids (or 0 where absent or
 * not uuids), without raising: bodies that jsonb refuses reach here too.
 */
typedef struct KeyFinder
{
	int			depth;
	char	  **target;			/* where the next scalar goes, or NULL */
	char	   *payment_id;
	char	   *user_id;
} KeyFinder;

static void
finder_nest(void *state)
{
	KeyFinder  *f = state;

	f->depth++;
	f->target = NULL;
}

static void
finder_unnest(void *state)
{
	((KeyFinder *) state)->depth--;
}

static void
finder_field(void *state, char *fname, bool isnull)
{
	KeyFinder  *f = state;

	f->target = NULL;
	if (f->depth == 1 && strcmp(fname, "paymentId") == 0)
		f->target = &f->payment_id;
	else if (f->depth == 1 && strcmp(fname, "userId") == 0)
		f->target = &f->user_id;
}

static void
finder_scalar(void *state, char *token, JsonTokenType tokentype)
{
	KeyFinder  *f = state;

	if (f->target != NULL && tokentype == JSON_TOKEN_STRING)
		*f->target = token;
	f->target = NULL;
}

static void
find_keys(const char *body, size_t length, Datum *payment_id, Datum *user_id)
{
	KeyFinder	finder = {0};
	JsonSemAction sem = {0};
	JsonLexContext *lex = makeJsonLexContextCstringLen((char *) body, length,
													   GetDatabaseEncoding(), true);

	sem.semstate = &finder;
	sem.object_start = finder_nest;
	sem.object_end = finder_unnest;
	sem.array_start = finder_nest;
	sem.array_end = finder_unnest;
	sem.object_field_start = finder_field;
	sem.scalar = finder_scalar;

	*payment_id = (Datum) 0;
	*user_id = (Datum) 0;
	if (pg_parse_json(lex, &sem) != JSON_SUCCESS)
		return;
	if (finder.payment_id && json_is_canonical_uuid(finder.payment_id, strlen(finder.payment_id)))
		*payment_id = DirectFunctionCall1(uuid_in, CStringGetDatum(finder.payment_id));
	if (finder.user_id && json_is_canonical_uuid(finder.user_id, strlen(finder.user_id)))
		*user_id = DirectFunctionCall1(uuid_in, CStringGetDatum(finder.user_id));
}

/*
 * The parser raises only when nesting exhausts the stack, which a body this
 * short cannot do (a level costs it a few hundred bytes of stack): it is
 * parsed directly, a longer one in a subtransaction, so that no body (a
 * dead letter's, a listed message's) makes the caller fail.
 */
#define KEYS_PARSED_DIRECTLY 2048

void
payment_find_keys(const char *body, Datum *payment_id, Datum *user_id)
{
	size_t		length = strlen(body);
	MemoryContext context = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	if (length <= KEYS_PARSED_DIRECTLY)
	{
		find_keys(body, length, payment_id, user_id);
		return;
	}
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(context);
	PG_TRY();
	{
		find_keys(body, length, payment_id, user_id);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		*payment_id = (Datum) 0;
		*user_id = (Datum) 0;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(context);
	CurrentResourceOwner = owner;
}
