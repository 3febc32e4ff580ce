/*-------------------------------------------------------------------------
 * redact_log.c
 *	  Masking the text fields of one log line of a statement that names the
 *	  front door: the emit_log_hook's work, once redact.c has chosen what
 *	  stands for the statement (its masked copy).
 *
 *	  The embedded statement text is replaced by its masked copy, the bind
 *	  parameter values of a "parameters:" detail become '***', and, until an
 *	  entry point has started, whatever the statement's masked parts would
 *	  show (an echoed literal, a credential-shaped word) is replaced too.
 *
 *	  This runs inside error reporting and must not fail: every allocation
 *	  is MCXT_ALLOC_NO_OOM, a failed one blanking the field in place.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "frontdoor/redact_log.h"
#include "frontdoor/redact_scan.h"

/* masked parts shorter than this are not searched for in messages */
#define MIN_ECHO_LEN 4

/*
 * Bytes compared at most while looking for a statement's masked parts in one
 * log field; past that (a statement of very many literals) the field is
 * blanked rather than searched further.
 */
#define ECHO_SEARCH_BUDGET (64 * 1024 * 1024)

/* When allocation fails: the field becomes *** (or shorter) in place. */
static void
blank_field(char *field)
{
	size_t		len = strlen(field);

	memcpy(field, MASK, Min(len, MASK_LEN));
	field[Min(len, MASK_LEN)] = '\0';
}

/* replace *field (allocated in the current context, the error's) */
static void
set_field(char **field, char *value)
{
	pfree(*field);
	*field = value;
}

/* *field with every occurrence of original replaced by shown; whether any */
static bool
replace_statement(char **field, const char *original, const char *shown)
{
	size_t		field_len = strlen(*field);
	size_t		original_len = strlen(original);
	size_t		shown_len = strlen(shown);
	size_t		count = 0;
	const char *p;
	const char *from;
	char	   *out;
	char	   *w;

	for (p = *field;
		 (p = redact_find_bytes(p, *field + field_len - p, original, original_len)) != NULL;
		 p += original_len)
		count++;
	if (count == 0)
		return false;
	out = redact_alloc_no_oom(CurrentMemoryContext,
							  field_len - count * original_len + count * shown_len + 1);
	if (out == NULL)
	{
		blank_field(*field);
		return true;
	}
	w = out;
	from = *field;
	while ((p = redact_find_bytes(from, *field + field_len - from, original,
								  original_len)) != NULL)
	{
		memcpy(w, from, p - from);
		w += p - from;
		memcpy(w, shown, shown_len);
		w += shown_len;
		from = p + original_len;
	}
	strcpy(w, from);
	set_field(field, out);
	return true;
}

/*
 * The values of a "parameters: $1 = '...', $2 = NULL" detail (the extended
 * protocol's bind parameters) become '***'.
 */
static void
mask_parameters(char **field)
{
	const char *format = _("parameters: %s");
	size_t		prefix_len = strcspn(format, "%");
	const char *s = *field;
	char	   *out;
	char	   *w;

	if (s == NULL ||
		(strncmp(s, "parameters: ", 12) != 0 && strncmp(s, format, prefix_len) != 0))
		return;
	/* a value of 2 bytes or more ('') becomes 5 ('***'): at most 5/2 as long */
	out = redact_alloc_no_oom(CurrentMemoryContext, strlen(s) * 5 / 2 + MASK_LEN + 3);
	if (out == NULL)
	{
		blank_field(*field);
		return;
	}
	w = out;
	while (*s)
	{
		if (*s != '\'')
		{
			*w++ = *s++;
			continue;
		}
		/* a quoted value, '' doubling a quote; unterminated runs to the end */
		for (s++; *s; s++)
		{
			if (*s == '\'')
			{
				if (s[1] == '\'')
					s++;
				else
					break;
			}
		}
		memcpy(w, "'" MASK "'", MASK_LEN + 2);
		w += MASK_LEN + 2;
		if (*s)
			s++;
	}
	*w = '\0';
	set_field(field, out);
}

/* whether seg occurs in a masked part of the statement */
static bool
in_masked_part(const char *stmt, size_t stmt_len, const char *seg, size_t seg_len,
			   size_t *budget)
{
	size_t		pos = 0;
	Region		r;

	while (redact_next_region(stmt, stmt_len, &pos, &r))
	{
		if (r.end - r.start < seg_len)
			continue;
		if (*budget < r.end - r.start)
			return true;		/* out of budget: assume the worst */
		*budget -= r.end - r.start;
		if (redact_find_bytes(stmt + r.start, r.end - r.start, seg, seg_len) != NULL)
			return true;
	}
	return false;
}

/*
 * Replace in *field what the statement's masked parts would show: each part
 * of MIN_ECHO_LEN bytes or more wherever it occurs, each "quoted" stretch
 * that is a piece of one (the JSON parser quotes the token it rejects), and
 * each credential-shaped word (a bind parameter in the wrong place).
 */
static void
scrub_field(char **field, const char *stmt)
{
	const char *text = *field;
	size_t		len;
	size_t		stmt_len = strlen(stmt);
	size_t		budget = ECHO_SEARCH_BUDGET;
	size_t		pos = 0;
	bool		any = false;
	bool	   *marks;
	Region		r;
	char	   *out;
	char	   *w;

	if (text == NULL || text[0] == '\0')
		return;
	len = strlen(text);
	marks = (bool *) MemoryContextAllocExtended(CurrentMemoryContext, len,
												MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM |
												MCXT_ALLOC_ZERO);
	if (marks == NULL)
	{
		blank_field(*field);
		return;
	}

	while (redact_next_region(stmt, stmt_len, &pos, &r))
	{
		size_t		part_len = r.end - r.start;

		if (part_len < MIN_ECHO_LEN || part_len > len)
			continue;
		if (budget < len)
		{
			pfree(marks);
			blank_field(*field);
			return;
		}
		budget -= len;
		for (const char *p = text;
			 (p = redact_find_bytes(p, text + len - p, stmt + r.start, part_len)) != NULL; p++)
		{
			memset(marks + (p - text), true, part_len);
			any = true;
		}
	}

	/* every stretch between two double quotes, trimmed of single quotes */
	for (const char *q = strchr(text, '"'); q != NULL;)
	{
		const char *close = strchr(q + 1, '"');
		const char *a = q + 1;
		const char *b = close ? close : text + len;

		while (a < b && *a == '\'')
			a++;
		while (b > a && b[-1] == '\'')
			b--;
		if (b - a >= MIN_ECHO_LEN && in_masked_part(stmt, stmt_len, a, b - a, &budget))
		{
			memset(marks + (a - text), true, b - a);
			any = true;
		}
		q = close;
	}

	for (size_t i = 0; i < len; i++)
	{
		size_t		n;

		if ((text[i] == 'p' || text[i] == 'e') &&
			(i == 0 || (!ident_byte(text[i - 1]) && !b64url_byte(text[i - 1]))) &&
			(n = redact_credential_len(text + i)) > 0)
		{
			memset(marks + i, true, n);
			any = true;
			i += n - 1;
		}
	}

	if (!any)
	{
		pfree(marks);
		return;
	}
	out = redact_alloc_no_oom(CurrentMemoryContext, len + 1);
	if (out == NULL)
	{
		pfree(marks);
		blank_field(*field);
		return;
	}
	w = out;
	for (size_t i = 0; i < len;)
	{
		if (!marks[i])
		{
			*w++ = text[i++];
			continue;
		}
		while (i < len && marks[i])
			i++;
		/* a marked run is MIN_ECHO_LEN or more bytes, or a credential */
		memcpy(w, MASK, MASK_LEN);
		w += MASK_LEN;
	}
	*w = '\0';
	pfree(marks);
	set_field(field, out);
}

/*
 * The text fields of a log line of a statement that names the front door:
 * original is the statement's text, shown what stands for it in the line
 * (NULL: nothing to replace it by); scrub, when no entry point has started
 * yet, replaces what the statement's masked parts would show as well.
 */
void
redact_mask_fields(ErrorData *edata, const char *original, const char *shown, bool scrub)
{
	bool		embedded = false;

	/* "statement: ...", "duration: ... statement: ...", "execute ...: ..." */
	if (shown != NULL && edata->message != NULL && original[0] != '\0')
		embedded = replace_statement(&edata->message, original, shown);
	mask_parameters(&edata->detail);
	mask_parameters(&edata->detail_log);

	if (scrub)
	{
		/* the rest of a line embedding the statement is PostgreSQL's own */
		if (!embedded && edata->message != NULL)
			scrub_field(&edata->message, original);
		if (edata->detail != NULL)
			scrub_field(&edata->detail, original);
		if (edata->detail_log != NULL)
			scrub_field(&edata->detail_log, original);
		if (edata->hint != NULL)
			scrub_field(&edata->hint, original);
		if (edata->internalquery != NULL)
			scrub_field(&edata->internalquery, original);
	}
}
