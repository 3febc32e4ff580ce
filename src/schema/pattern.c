/*-------------------------------------------------------------------------
 * pattern.c
 *	  The regular expressions of "pattern" and "patternProperties", with
 *	  PostgreSQL's regex engine (advanced syntax, C collation): compiled
 *	  once per schema, freed with the schema's memory context, and matched
 *	  directly rather than through the backend's regex cache, which holds 32
 *	  and would recompile every pattern of a schema with more at each match.
 *
 *	  The regex library checks for a cancel, a timeout or a terminate while
 *	  it compiles and matches, and then returns REG_CANCEL: the interrupt's
 *	  own error is raised for it (CHECK_FOR_INTERRUPTS), never a regex error.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation_d.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "schema/json_schema.h"

/* the library allocates with malloc: free every regex when the schema goes */
static void
free_regexes(void *arg)
{
	JsonSchema *owner = arg;
	ListCell   *lc;

	foreach(lc, owner->regexes)
		pg_regfree((regex_t *) lfirst(lc));
	owner->regexes = NIL;
}

/*
 * Compile source (database encoding) for owner, in owner's context; NULL
 * and *error set when it is not a valid regex.
 */
regex_t *
json_schema_regex_compile(JsonSchema *owner, const char *source, int len, char **error)
{
	MemoryContext old = MemoryContextSwitchTo(owner->context);
	pg_wchar   *wide = palloc((len + 1) * sizeof(pg_wchar));
	int			wlen = pg_mb2wchar_with_len(source, wide, len);
	regex_t    *re = palloc(sizeof(regex_t));
	int			rc;

	if (owner->regexes == NIL)
	{
		MemoryContextCallback *cb = palloc(sizeof(MemoryContextCallback));

		cb->func = free_regexes;
		cb->arg = owner;
		MemoryContextRegisterResetCallback(owner->context, cb);
	}
	/* room first, so that a compiled regex is never left out of the list */
	owner->regexes = lappend(owner->regexes, NULL);
	/* REG_NOSUB: only whether it matches is asked */
	rc = pg_regcomp(re, wide, wlen, REG_ADVANCED | REG_NOSUB, C_COLLATION_OID);
	pfree(wide);
	MemoryContextSwitchTo(old);
	if (rc == REG_OKAY)
	{
		llast(owner->regexes) = re;
		return re;
	}
	/* a failed compile has freed what it allocated */
	owner->regexes = list_delete_last(owner->regexes);
	CHECK_FOR_INTERRUPTS();
	{
		char		msg[256];

		pg_regerror(rc, re, msg, sizeof(msg));
		*error = pstrdup(msg);
	}
	return NULL;
}

/* Does re match anywhere in s (len bytes, database encoding)? */
bool
json_schema_regex_match(regex_t *re, const char *s, int len)
{
	pg_wchar	local[128];
	pg_wchar   *wide = (len < lengthof(local)) ? local : palloc((len + 1) * sizeof(pg_wchar));
	int			wlen = pg_mb2wchar_with_len(s, wide, len);
	int			rc = pg_regexec(re, wide, wlen, 0, NULL, 0, NULL, 0);

	if (wide != local)
		pfree(wide);
	if (rc == REG_OKAY)
		return true;
	if (rc == REG_NOMATCH)
		return false;
	CHECK_FOR_INTERRUPTS();
	{
		char		msg[256];

		pg_regerror(rc, re, msg, sizeof(msg));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_REGULAR_EXPRESSION),
				 errmsg("regular expression failed: %s", msg)));
	}
	return false;
}
