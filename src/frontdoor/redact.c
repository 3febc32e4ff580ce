/*-------------------------------------------------------------------------
 * redact.c
 *	  Keeping credentials out of the server log and pg_stat_activity.
 *
 *	  The entry points take a credential argument, and PostgREST passes one
 *	  in request.headers, so the text of a statement that names
 *	  submit_payment, submit_payments, payment_status or request.headers may
 *	  hold an API key or a token.  PostgreSQL shows statement text in many
 *	  places: the STATEMENT of a logged error, log_statement and
 *	  log_min_duration_statement lines, the "parameters:" of an extended-
 *	  protocol execute, messages that echo a literal ("invalid input syntax
 *	  for type uuid: ..."), the error context, and pg_stat_activity.query.
 *
 *	  Such a statement (or an EXECUTE of a prepared one) gets a masked copy:
 *	  the contents of every string, dollar-quoted string, comment and unusual
 *	  quoted identifier, and every bare word shaped like an API key or a JWT,
 *	  become ***.  debug_query_string points at the copy (so STATEMENT lines
 *	  and the query field of csvlog and jsonlog show it), and so does
 *	  pg_stat_activity, from whichever comes first of parse analysis,
 *	  executor start and run (a prepared statement run again) and the
 *	  statement's first log line.  The emit_log_hook masks each log line of
 *	  the statement: the embedded statement text and the bind parameter
 *	  values replaced, the context hidden, and, until an entry point has
 *	  started, whatever the statement's masked parts would show (an echoed
 *	  literal) replaced too.  An entry point's own lines keep their messages:
 *	  they never hold the credential.  PostgreSQL sends the client the same
 *	  ErrorData, so an error it raised before the call reaches the client
 *	  masked as well (elog.c calls changing edata other than output_to_server
 *	  unsupported; PostgreSQL 15 prints the fields after the hook returns).
 *
 *	  The emit_log_hook runs inside error reporting and must not fail: the
 *	  scanner below is a plain loop that accepts any input (an unterminated
 *	  literal runs to the end), nothing calls the PostgreSQL lexer, and every
 *	  allocation is MCXT_ALLOC_NO_OOM, a failed one blanking the field.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/prepare.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/memutils.h"

#include "frontdoor/redact.h"

#define MASK "***"
#define MASK_LEN 3

/* masked parts shorter than this are not searched for in messages */
#define MIN_ECHO_LEN 4

/*
 * Bytes compared at most while looking for a statement's masked parts in one
 * log field; past that (a statement of very many literals) the field is
 * blanked rather than searched further.
 */
#define ECHO_SEARCH_BUDGET (64 * 1024 * 1024)

static emit_log_hook_type prev_emit_log_hook = NULL;
static post_parse_analyze_hook_type prev_post_parse_analyze_hook = NULL;
static ExecutorStart_hook_type prev_ExecutorStart_hook = NULL;
static ExecutorRun_hook_type prev_ExecutorRun_hook = NULL;

/*
 * The masked copy of the last statement masked and a copy of its text, in
 * TopMemoryContext.  PostgreSQL points debug_query_string at each message's
 * text; while it points at masked_text instead, that message's text is
 * masked_source.  The copies are freed only when debug_query_string does
 * not point at masked_text, and are kept for the next message of the same
 * text (a prepared statement run again), unless they are large.
 */
static char *masked_text = NULL;
static char *masked_source = NULL;

/* copies of longer statements are not kept past their message */
#define MASK_KEEP_MAX 16384

/*
 * The last decision whether a statement names the front door, so that a
 * message of many statements, or of many log lines, is scanned once: a text
 * is identified by its address and the start of the message that carried it.
 */
static const char *decided_text = NULL;
static TimestampTz decided_at = 0;
static bool decided_sensitive = false;

/* an entry point has started in the current statement */
static bool call_ran = false;

/* an entry point has had a credential argument in the current transaction */
static bool credential_in_xact = false;

static bool xact_callback_registered = false;

/* A part of a text to mask: its bytes [start, end). */
typedef struct Region
{
	size_t		start;
	size_t		end;
} Region;

#define IS_ALPHA(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

/* a byte of an SQL identifier or keyword */
static inline bool
ident_byte(unsigned char c)
{
	return IS_ALPHA(c) || IS_DIGIT(c) || c == '_' || c == '$' || c >= 0x80;
}

static inline bool
b64url_byte(unsigned char c)
{
	return IS_ALPHA(c) || IS_DIGIT(c) || c == '_' || c == '-';
}

static inline bool
hex_byte(unsigned char c)
{
	return IS_DIGIT(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/*
 * Only a client backend keeps a masked copy in debug_query_string: it alone
 * sets debug_query_string for each message and resets it after, so that the
 * text a copy masks is known to be alive while the copy is in use.  Other
 * processes (parallel workers) mask each line and their activity afresh.
 */
static inline bool
keeps_copy(void)
{
	return MyBackendType == B_BACKEND;
}

static inline bool
is_masked(const char *text)
{
	return text != NULL && text == masked_text;
}

/* first occurrence of needle in hay, or NULL */
static const char *
find_bytes(const char *hay, size_t hay_len, const char *needle, size_t needle_len)
{
	const char *end;

	if (needle_len == 0 || needle_len > hay_len)
		return NULL;
	end = hay + hay_len - needle_len;
	for (const char *p = hay; p <= end; p++)
	{
		p = memchr(p, needle[0], end - p + 1);
		if (p == NULL)
			return NULL;
		if (memcmp(p, needle, needle_len) == 0)
			return p;
	}
	return NULL;
}

static char *
alloc_no_oom(MemoryContext cxt, size_t size)
{
	return MemoryContextAllocExtended(cxt, size, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
}

/*
 * Length of an API key ("pay_<16 hex>.<secret>") or a JWT (three base64url
 * parts, the first an encoded '{"') starting at s, or 0.  A key id alone is
 * public and not matched.  s is NUL-terminated.
 */
static size_t
credential_len(const char *s)
{
	size_t		n;

	if (s[0] == 'p' && strncmp(s, "pay_", 4) == 0)
	{
		for (n = 4; hex_byte(s[n]); n++)
			;
		if (n < 4 + 8 || s[n] != '.' || !b64url_byte(s[n + 1]))
			return 0;
		for (n++; b64url_byte(s[n]); n++)
			;
		return n;
	}
	if (s[0] == 'e' && strncmp(s, "eyJ", 3) == 0)
	{
		for (n = 3; b64url_byte(s[n]); n++)
			;
		if (s[n] != '.' || !b64url_byte(s[n + 1]))
			return 0;
		for (n++; b64url_byte(s[n]); n++)
			;
		if (s[n] == '.')
			for (n++; b64url_byte(s[n]); n++)
				;
		return n;
	}
	return 0;
}

/* a quoted identifier that would need no quotes: nothing secret about it */
static bool
plain_identifier(const char *s, size_t len)
{
	if (len == 0 || len >= NAMEDATALEN || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || IS_DIGIT(s[i]) || s[i] == '_' || s[i] == '$'))
			return false;
	return true;
}

/* bytes at which next_region may find something: quotes, comments, credentials */
static const bool sql_special[256] = {
	['\''] = true, ['"'] = true, ['$'] = true, ['-'] = true, ['/'] = true,
	['p'] = true, ['e'] = true,
};

/*
 * The next part of an SQL text s (NUL-terminated, len bytes) to mask, at or
 * after *pos: the contents of a string constant (E'' strings and, with
 * standard_conforming_strings off, all strings take backslash escapes), of a
 * dollar-quoted string, of a comment or of a quoted identifier that is not
 * a plain one, or a bare word shaped like a credential.  Delimiters are left
 * out of the region; an unterminated one runs to the end of the text.
 * Advances *pos past the part; returns false when there is none left.
 *
 * This is not the PostgreSQL lexer (which raises errors): on text it would
 * reject it may part ways with it, and then it masks more, not less, until
 * it finds its way back; the credential shapes are the safety net.
 */
static bool
next_region(const char *s, size_t len, size_t *pos, Region *r)
{
	size_t		i = *pos;

	while (i < len)
	{
		unsigned char c = s[i];
		unsigned char prev;
		size_t		j;

		if (!sql_special[c])
		{
			i++;
			continue;
		}
		prev = i > 0 ? s[i - 1] : ' ';
		if (c == '\'')
		{
			bool		backslash = !standard_conforming_strings ||
				((prev == 'E' || prev == 'e') && (i < 2 || !ident_byte(s[i - 2])));

			for (j = i + 1; j < len; j++)
			{
				if (!backslash)
				{
					const char *q = memchr(s + j, '\'', len - j);

					j = q ? (size_t) (q - s) : len;
					if (j == len)
						break;
				}
				if (backslash && s[j] == '\\')
					j++;
				else if (s[j] == '\'')
				{
					if (j + 1 < len && s[j + 1] == '\'')
						j++;
					else
						break;
				}
			}
			if (j > len)
				j = len;
			*pos = j < len ? j + 1 : len;
			if (j > i + 1)
			{
				r->start = i + 1;
				r->end = j;
				return true;
			}
			i = *pos;
		}
		else if (c == '"')
		{
			for (j = i + 1; j < len; j++)
			{
				if (s[j] == '"')
				{
					if (j + 1 < len && s[j + 1] == '"')
						j++;
					else
						break;
				}
			}
			*pos = j < len ? j + 1 : len;
			if (j > i + 1 && !plain_identifier(s + i + 1, j - i - 1))
			{
				r->start = i + 1;
				r->end = j;
				return true;
			}
			i = *pos;
		}
		else if (c == '$' && !ident_byte(prev))
		{
			size_t		k = i + 1;

			if (k < len && (IS_ALPHA(s[k]) || s[k] == '_' || (unsigned char) s[k] >= 0x80))
				while (k < len && (IS_ALPHA(s[k]) || IS_DIGIT(s[k]) || s[k] == '_' ||
								   (unsigned char) s[k] >= 0x80))
					k++;
			if (k < len && s[k] == '$')
			{
				size_t		tag_len = k - i + 1;
				size_t		body = k + 1;
				const char *close = find_bytes(s + body, len - body, s + i, tag_len);

				j = close ? (size_t) (close - s) : len;
				*pos = close ? j + tag_len : len;
				if (j > body)
				{
					r->start = body;
					r->end = j;
					return true;
				}
				i = *pos;
			}
			else
				i++;			/* a parameter symbol, $1 */
		}
		else if (c == '-' && i + 1 < len && s[i + 1] == '-')
		{
			for (j = i + 2; j < len && s[j] != '\n' && s[j] != '\r'; j++)
				;
			*pos = j;
			if (j > i + 2)
			{
				r->start = i + 2;
				r->end = j;
				return true;
			}
			i = j;
		}
		else if (c == '/' && i + 1 < len && s[i + 1] == '*')
		{
			int			depth = 1;

			for (j = i + 2; j < len; j++)
			{
				if (s[j] == '/' && j + 1 < len && s[j + 1] == '*')
				{
					depth++;
					j++;
				}
				else if (s[j] == '*' && j + 1 < len && s[j + 1] == '/')
				{
					if (--depth == 0)
						break;
					j++;
				}
			}
			if (j > len)
				j = len;
			*pos = j < len ? j + 2 : len;
			if (j > i + 2)
			{
				r->start = i + 2;
				r->end = j;
				return true;
			}
			i = *pos;
		}
		else if ((c == 'p' || c == 'e') && !ident_byte(prev) && !b64url_byte(prev) &&
				 (j = credential_len(s + i)) > 0)
		{
			r->start = i;
			r->end = i + j;
			*pos = i + j;
			return true;
		}
		else
			i++;
	}
	*pos = len;
	return false;
}

/*
 * Masked copy of text in cxt, or NULL when there is nothing to mask (or,
 * with *failed set, no memory for the copy).
 */
static char *
mask_sql(const char *text, MemoryContext cxt, bool *failed)
{
	size_t		len = strlen(text);
	size_t		pos = 0;
	size_t		from = 0;
	size_t		out_len = 0;
	Region		r;
	char	   *out;
	char	   *w;

	*failed = false;
	while (next_region(text, len, &pos, &r))
	{
		out_len += r.start - from + MASK_LEN;
		from = r.end;
	}
	if (out_len == 0)
		return NULL;
	out_len += len - from;
	out = alloc_no_oom(cxt, out_len + 1);
	if (out == NULL)
	{
		*failed = true;
		return NULL;
	}
	w = out;
	pos = from = 0;
	while (next_region(text, len, &pos, &r))
	{
		memcpy(w, text + from, r.start - from);
		w += r.start - from;
		memcpy(w, MASK, MASK_LEN);
		w += MASK_LEN;
		from = r.end;
	}
	memcpy(w, text + from, len - from);
	w[len - from] = '\0';
	return out;
}

static bool names_frontdoor(const char *text, bool follow_execute);

/* first letters of the names names_frontdoor looks for */
static const bool name_start[256] = {
	['s'] = true, ['S'] = true, ['p'] = true, ['P'] = true,
	['r'] = true, ['R'] = true, ['e'] = true, ['E'] = true,
};

/*
 * Whether s names a prepared statement (EXECUTE name) whose text names the
 * front door; s points just past the keyword.
 */
static bool
executes_frontdoor(const char *s)
{
	char		name[NAMEDATALEN];
	size_t		n = 0;
	PreparedStatement *ps;

	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f')
		s++;
	if (*s == '"')
	{
		for (s++; *s && *s != '"' && n < NAMEDATALEN - 1; s++)
			name[n++] = *s;
	}
	else
	{
		for (; ident_byte(*s) && n < NAMEDATALEN - 1; s++)
			name[n++] = (*s >= 'A' && *s <= 'Z') ? *s + ('a' - 'A') : *s;
	}
	if (n == 0)
		return false;
	name[n] = '\0';
	ps = FetchPreparedStatement(name, false);
	return ps != NULL && ps->plansource->query_string != NULL &&
		names_frontdoor(ps->plansource->query_string, false);
}

/*
 * Whether text names an entry point or request.headers, or executes a
 * prepared statement that does: one pass, case-insensitive.  A name in a
 * comment or a literal counts too (masking more is harmless).
 */
static bool
names_frontdoor(const char *text, bool follow_execute)
{
	for (const char *s = text; *s; s++)
	{
		unsigned char second;

		if (!name_start[(unsigned char) *s])
			continue;
		/* the second letter rules out most keywords without a call */
		second = (unsigned char) s[1] | 0x20;
		switch ((unsigned char) *s | 0x20)
		{
			case 's':
				if (second == 'u' && pg_strncasecmp(s, "submit_payment", 14) == 0)
					return true;
				break;
			case 'p':
				if (second == 'a' && pg_strncasecmp(s, "payment_status", 14) == 0)
					return true;
				break;
			case 'r':
				if (second == 'e' && pg_strncasecmp(s, "request.headers", 15) == 0)
					return true;
				break;
			case 'e':
				if (follow_execute && second == 'x' && pg_strncasecmp(s, "execute", 7) == 0 &&
					(s == text || !ident_byte(s[-1])) && !ident_byte(s[7]) &&
					executes_frontdoor(s + 7))
					return true;
				break;
		}
	}
	return false;
}

/* names_frontdoor(text), remembered for the rest of the message */
static bool
statement_is_sensitive(const char *text)
{
	TimestampTz at;

	if (is_masked(text))
		return true;
	at = GetCurrentStatementStartTimestamp();
	if (text != decided_text || at != decided_at)
	{
		decided_sensitive = names_frontdoor(text, true);
		decided_text = text;
		decided_at = at;
	}
	return decided_sensitive;
}

typedef enum MaskResult
{
	MASK_INSTALLED,				/* debug_query_string points at the masked copy */
	MASK_NOTHING,				/* the text holds nothing to mask */
	MASK_FAILED					/* out of memory */
} MaskResult;

/* drop the copies; debug_query_string must not point at masked_text */
static void
forget_masked(void)
{
	if (masked_text != NULL)
	{
		pfree(masked_text);
		pfree(masked_source);
		masked_text = masked_source = NULL;
	}
}

/* whether the copies are those of text: then it names the front door */
static inline bool
masked_copy_of(const char *text)
{
	return masked_source != NULL && strcmp(text, masked_source) == 0;
}

/*
 * Point debug_query_string, now original, at a masked copy of original.
 * Callers have checked that debug_query_string is not masked_text, which
 * can therefore go.
 */
static MaskResult
install_masked(const char *original)
{
	bool		failed;
	char	   *copy;
	char	   *source;

	if (masked_copy_of(original))
	{
		debug_query_string = masked_text;
		return MASK_INSTALLED;
	}
	copy = mask_sql(original, TopMemoryContext, &failed);
	if (copy == NULL)
		return failed ? MASK_FAILED : MASK_NOTHING;
	source = alloc_no_oom(TopMemoryContext, strlen(original) + 1);
	if (source == NULL)
	{
		pfree(copy);
		return MASK_FAILED;
	}
	strcpy(source, original);
	forget_masked();
	masked_text = copy;
	masked_source = source;
	debug_query_string = masked_text;
	return MASK_INSTALLED;
}

/*
 * Give pg_stat_activity the masked copy in place of original, if that is
 * what it shows.  Only the query text is written, as pgstat_report_activity
 * writes it, so the state, its timestamps and the query id are left alone.
 */
static void
show_masked_activity(const char *original, const char *masked)
{
	volatile PgBackendStatus *beentry = MyBEEntry;
	size_t		limit;
	size_t		len;

	if (beentry == NULL || !pgstat_track_activities || beentry->st_state == STATE_DISABLED ||
		pgstat_track_activity_query_size <= 1)
		return;
	limit = pgstat_track_activity_query_size - 1;
	if (strncmp((const char *) beentry->st_activity_raw, original, limit) != 0)
		return;
	len = strnlen(masked, limit);
	PGSTAT_BEGIN_WRITE_ACTIVITY(beentry);
	memcpy((char *) beentry->st_activity_raw, masked, len);
	beentry->st_activity_raw[len] = '\0';
	PGSTAT_END_WRITE_ACTIVITY(beentry);
}

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

	for (p = *field; (p = find_bytes(p, *field + field_len - p, original, original_len)) != NULL;
		 p += original_len)
		count++;
	if (count == 0)
		return false;
	out = alloc_no_oom(CurrentMemoryContext,
					   field_len - count * original_len + count * shown_len + 1);
	if (out == NULL)
	{
		blank_field(*field);
		return true;
	}
	w = out;
	from = *field;
	while ((p = find_bytes(from, *field + field_len - from, original, original_len)) != NULL)
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
	out = alloc_no_oom(CurrentMemoryContext, strlen(s) * 5 / 2 + MASK_LEN + 3);
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

	while (next_region(stmt, stmt_len, &pos, &r))
	{
		if (r.end - r.start < seg_len)
			continue;
		if (*budget < r.end - r.start)
			return true;		/* out of budget: assume the worst */
		*budget -= r.end - r.start;
		if (find_bytes(stmt + r.start, r.end - r.start, seg, seg_len) != NULL)
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

	while (next_region(stmt, stmt_len, &pos, &r))
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
			 (p = find_bytes(p, text + len - p, stmt + r.start, part_len)) != NULL; p++)
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
			(n = credential_len(text + i)) > 0)
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
	out = alloc_no_oom(CurrentMemoryContext, len + 1);
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

/* A log line of a statement that names the front door (stmt). */
static void
mask_log_line(ErrorData *edata, const char *stmt)
{
	const char *original = stmt;
	const char *shown = NULL;	/* what stands for the statement in a line */
	char	   *transient = NULL;
	bool		failed;
	bool		embedded = false;

	edata->hide_ctx = true;
	if (is_masked(stmt))
	{
		original = masked_source;
		shown = masked_text;
	}
	else if (!keeps_copy())
	{
		/* STATEMENT shows debug_query_string, which stays unmasked here */
		edata->hide_stmt = true;
		transient = mask_sql(stmt, CurrentMemoryContext, &failed);
		shown = transient ? transient : failed ? MASK : NULL;
	}
	else
	{
		switch (install_masked(stmt))
		{
			case MASK_INSTALLED:
				show_masked_activity(original, masked_text);
				shown = masked_text;
				break;
			case MASK_NOTHING:
				break;
			case MASK_FAILED:
				edata->hide_stmt = true;
				shown = MASK;
				break;
		}
	}

	/* "statement: ...", "duration: ... statement: ...", "execute ...: ..." */
	if (shown != NULL && edata->message != NULL && original[0] != '\0')
		embedded = replace_statement(&edata->message, original, shown);
	mask_parameters(&edata->detail);
	mask_parameters(&edata->detail_log);

	if (!call_ran)
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
	if (transient)
		pfree(transient);
}

static void
redact_emit_log(ErrorData *edata)
{
	const char *stmt = debug_query_string;

	if (stmt != NULL && statement_is_sensitive(stmt))
		mask_log_line(edata, stmt);
	else if (credential_in_xact)
	{
		/* a statement not naming the front door passed it a credential */
		edata->hide_stmt = true;
		edata->hide_ctx = true;
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/*
 * Whether a statement's source text is the client message's text: the same
 * string, or (an extended-protocol execute runs the portal's text while
 * debug_query_string is a copy) an equal one.  A nested statement's text
 * differs, mostly from the first byte.
 */
static inline bool
same_text(const char *text, const char *message_text)
{
	return text == message_text || strcmp(text, message_text) == 0;
}

/*
 * Parse analysis or executor start of a statement with source text.  A
 * top-level one (the text of the client's message) that names the front
 * door gets its masked copy now, and pg_stat_activity with it.
 */
static void
mask_top_level_statement(const char *text)
{
	const char *message_text = debug_query_string;

	if (text == NULL || message_text == NULL)
		return;
	if (!keeps_copy())
	{
		/* a parallel worker: its activity shows the leader's text */
		if (same_text(text, message_text) && statement_is_sensitive(message_text))
		{
			bool		failed;
			char	   *copy = mask_sql(message_text, CurrentMemoryContext, &failed);

			if (copy)
			{
				show_masked_activity(message_text, copy);
				pfree(copy);
			}
		}
		return;
	}
	if (is_masked(message_text))
	{
		/* another statement of the same message */
		if (same_text(text, masked_source))
			call_ran = false;
		return;
	}
	if (!same_text(text, message_text))
		return;					/* nested: SPI, a function body */
	call_ran = false;
	if (masked_copy_of(message_text))
		debug_query_string = masked_text;	/* a prepared statement run again */
	else
	{
		if (masked_source != NULL && strlen(masked_source) > MASK_KEEP_MAX)
			forget_masked();
		if (!statement_is_sensitive(message_text) ||
			install_masked(message_text) != MASK_INSTALLED)
			return;
	}
	show_masked_activity(message_text, masked_text);
}

static void
redact_post_parse_analyze(ParseState *pstate, Query *query, JumbleState *jstate)
{
	if (prev_post_parse_analyze_hook)
		prev_post_parse_analyze_hook(pstate, query, jstate);
	mask_top_level_statement(pstate->p_sourcetext);
}

/*
 * A prepared statement run again is not parse-analysed again: its Bind
 * message shows its text in pg_stat_activity and starts the executor, its
 * Execute message shows the text again and runs the executor.
 */
static void
redact_executor_start(QueryDesc *queryDesc, int eflags)
{
	mask_top_level_statement(queryDesc->sourceText);
	if (prev_ExecutorStart_hook)
		prev_ExecutorStart_hook(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
redact_executor_run(QueryDesc *queryDesc, ScanDirection direction, uint64 count,
					bool execute_once)
{
	mask_top_level_statement(queryDesc->sourceText);
	if (prev_ExecutorRun_hook)
		prev_ExecutorRun_hook(queryDesc, direction, count, execute_once);
	else
		standard_ExecutorRun(queryDesc, direction, count, execute_once);
}

static void
forget_call(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		credential_in_xact = false;
		call_ran = false;
	}
}

void
redact_note_call(bool credential_argument)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(forget_call, NULL);
		xact_callback_registered = true;
	}
	call_ran = true;
	if (credential_argument)
		credential_in_xact = true;
}

void
redact_install_hooks(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = redact_emit_log;
	prev_post_parse_analyze_hook = post_parse_analyze_hook;
	post_parse_analyze_hook = redact_post_parse_analyze;
	prev_ExecutorStart_hook = ExecutorStart_hook;
	ExecutorStart_hook = redact_executor_start;
	prev_ExecutorRun_hook = ExecutorRun_hook;
	ExecutorRun_hook = redact_executor_run;
}
