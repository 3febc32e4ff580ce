/*-------------------------------------------------------------------------
 * redact_scan.c
 *	  The byte scanner behind redact.c: which statements name the front
 *	  door, and the masked copy of an SQL text.
 *
 *	  A statement names the front door when its text names submit_payment,
 *	  submit_payments, payment_status or request.headers, or executes a
 *	  prepared statement that does.  Its masked copy has the contents of
 *	  every string, dollar-quoted string, comment and unusual quoted
 *	  identifier, and every bare word shaped like an API key or a JWT,
 *	  replaced by ***.
 *
 *	  These are functions of the text alone (and, for EXECUTE, of the
 *	  session's prepared statements).  They run inside error reporting and
 *	  must not fail: the scanner is a plain loop that accepts any input (an
 *	  unterminated literal runs to the end), nothing calls the PostgreSQL
 *	  lexer, and every allocation is MCXT_ALLOC_NO_OOM.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/prepare.h"
#include "parser/parser.h"

#include "frontdoor/redact_scan.h"

static inline bool
hex_byte(unsigned char c)
{
	return IS_DIGIT(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* first occurrence of needle in hay, or NULL */
const char *
redact_find_bytes(const char *hay, size_t hay_len, const char *needle, size_t needle_len)
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

/* an allocation that returns NULL when there is no memory, never fails */
char *
redact_alloc_no_oom(MemoryContext cxt, size_t size)
{
	return MemoryContextAllocExtended(cxt, size, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
}

/*
 * Length of an API key ("pay_<16 hex>.<secret>") or a JWT (three base64url
 * parts, the first an encoded '{"') starting at s, or 0.  A key id alone is
 * public and not matched.  s is NUL-terminated.
 */
size_t
redact_credential_len(const char *s)
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

/* bytes at which redact_next_region may find something: quotes, comments, credentials */
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
bool
redact_next_region(const char *s, size_t len, size_t *pos, Region *r)
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
				const char *close = redact_find_bytes(s + body, len - body, s + i, tag_len);

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
				 (j = redact_credential_len(s + i)) > 0)
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
char *
redact_mask_sql(const char *text, MemoryContext cxt, bool *failed)
{
	size_t		len = strlen(text);
	size_t		pos = 0;
	size_t		from = 0;
	size_t		out_len = 0;
	Region		r;
	char	   *out;
	char	   *w;

	*failed = false;
	while (redact_next_region(text, len, &pos, &r))
	{
		out_len += r.start - from + MASK_LEN;
		from = r.end;
	}
	if (out_len == 0)
		return NULL;
	out_len += len - from;
	out = redact_alloc_no_oom(cxt, out_len + 1);
	if (out == NULL)
	{
		*failed = true;
		return NULL;
	}
	w = out;
	pos = from = 0;
	while (redact_next_region(text, len, &pos, &r))
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

/* first letters of the names redact_names_frontdoor looks for */
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
		redact_names_frontdoor(ps->plansource->query_string, false);
}

/*
 * Whether text names an entry point or request.headers, or executes a
 * prepared statement that does: one pass, case-insensitive.  A name in a
 * comment or a literal counts too (masking more is harmless).
 */
bool
redact_names_frontdoor(const char *text, bool follow_execute)
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
