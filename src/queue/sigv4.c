/*-------------------------------------------------------------------------
 * sigv4.c
 *	  AWS Signature Version 4 (header signing), on the SHA-256 and
 *	  HMAC-SHA256 of common/digest.c.
 *
 * Owns: the canonical request, the string to sign, the signing key and the
 * Authorization header.  It is pure computation: no I/O and no settings;
 * the caller supplies the clock reading and the credentials.  The SQL-
 * callable payment_sigv4_test_sign exists so that the test suite can check
 * this code against AWS's published test vectors; the extension's SQL
 * script does not expose it.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/formatting.h"

#include "common/digest.h"
#include "queue/sigv4.h"

PG_FUNCTION_INFO_V1(payment_sigv4_test_sign);

typedef struct CanonicalHeader
{
	char	   *name;			/* lower case */
	char	   *value;			/* trimmed, inner runs of spaces collapsed */
} CanonicalHeader;

void
sigv4_now(char *buf)
{
	time_t		now = time(NULL);
	struct tm	tm;

	gmtime_r(&now, &tm);
	strftime(buf, SIGV4_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm);
}

/* RFC 3986 percent-encoding as SigV4 wants it: upper-case hex. */
static void
uri_encode(StringInfo out, const char *s, size_t len, bool keep_slash)
{
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
			c == '~' || (keep_slash && c == '/'))
			appendStringInfoChar(out, (char) c);
		else
			appendStringInfo(out, "%%%02X", c);
	}
}

static int
compare_strings(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* name=value pairs, each side encoded, sorted by name and then value */
static void
canonical_query(StringInfo out, const char *query)
{
	List	   *pairs = NIL;
	ListCell   *lc;
	char	  **sorted;
	int			n = 0;
	const char *p = query;

	while (*p)
	{
		const char *end = strchr(p, '&');
		size_t		len = end ? (size_t) (end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		StringInfoData pair;

		if (len > 0)
		{
			initStringInfo(&pair);
			uri_encode(&pair, p, eq ? (size_t) (eq - p) : len, false);
			appendStringInfoChar(&pair, '=');
			if (eq)
				uri_encode(&pair, eq + 1, len - (eq - p) - 1, false);
			pairs = lappend(pairs, pair.data);
		}
		p += len;
		if (*p == '&')
			p++;
	}

	sorted = palloc(sizeof(char *) * (list_length(pairs) + 1));
	foreach(lc, pairs)
		sorted[n++] = lfirst(lc);
	qsort(sorted, n, sizeof(char *), compare_strings);
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(out, '&');
		appendStringInfoString(out, sorted[i]);
	}
}

static char *
canonical_value(const char *value)
{
	StringInfoData buf;
	bool		pending_space = false;

	initStringInfo(&buf);
	for (const char *p = value; *p; p++)
	{
		if (*p == ' ' || *p == '\t')
		{
			pending_space = buf.len > 0;
			continue;
		}
		if (pending_space)
			appendStringInfoChar(&buf, ' ');
		pending_space = false;
		appendStringInfoChar(&buf, *p);
	}
	return buf.data;
}

static int
compare_headers(const void *a, const void *b)
{
	return strcmp(((const CanonicalHeader *) a)->name,
				  ((const CanonicalHeader *) b)->name);
}

char *
sigv4_authorization(const char *method, const char *path, const char *query,
					const HttpHeader *headers, int nheaders,
					const char *payload, size_t payload_len,
					const char *amz_date, const char *region,
					const char *service,
					const char *access_key_id, const char *secret_access_key)
{
	CanonicalHeader *ch = palloc(sizeof(CanonicalHeader) * Max(nheaders, 1));
	StringInfoData creq;
	StringInfoData signed_headers;
	StringInfoData sts;
	char		hash_hex[2 * SHA256_BYTES + 1];
	char		date[9];
	char	   *scope;
	char	   *key;
	size_t		keylen;
	unsigned char k1[SHA256_BYTES];
	unsigned char k2[SHA256_BYTES];
	unsigned char signature[SHA256_BYTES];
	char		signature_hex[2 * SHA256_BYTES + 1];

	if (strlen(amz_date) != SIGV4_DATE_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid X-Amz-Date \"%s\"", amz_date)));
	memcpy(date, amz_date, 8);
	date[8] = '\0';

	/* 1. the canonical request */
	for (int i = 0; i < nheaders; i++)
	{
		ch[i].name = asc_tolower(headers[i].name, strlen(headers[i].name));
		ch[i].value = canonical_value(headers[i].value);
	}
	qsort(ch, nheaders, sizeof(CanonicalHeader), compare_headers);

	initStringInfo(&creq);
	initStringInfo(&signed_headers);
	appendStringInfo(&creq, "%s\n", method);
	uri_encode(&creq, path, strlen(path), true);
	appendStringInfoChar(&creq, '\n');
	canonical_query(&creq, query);
	appendStringInfoChar(&creq, '\n');
	for (int i = 0; i < nheaders; i++)
	{
		appendStringInfo(&creq, "%s:%s\n", ch[i].name, ch[i].value);
		appendStringInfo(&signed_headers, "%s%s", i > 0 ? ";" : "", ch[i].name);
	}
	appendStringInfo(&creq, "\n%s\n", signed_headers.data);
	digest_sha256_hex(payload, payload_len, hash_hex);
	appendStringInfoString(&creq, hash_hex);

	/* 2. the string to sign */
	scope = psprintf("%s/%s/%s/aws4_request", date, region, service);
	digest_sha256_hex(creq.data, creq.len, hash_hex);
	initStringInfo(&sts);
	appendStringInfo(&sts, "AWS4-HMAC-SHA256\n%s\n%s\n%s",
					 amz_date, scope, hash_hex);

	/* 3. the signing key, derived from the secret; wiped after use */
	key = psprintf("AWS4%s", secret_access_key);
	keylen = strlen(key);
	digest_hmac_sha256((unsigned char *) key, keylen, date, strlen(date), k1);
	explicit_bzero(key, keylen);
	pfree(key);
	digest_hmac_sha256(k1, SHA256_BYTES, region, strlen(region), k2);
	digest_hmac_sha256(k2, SHA256_BYTES, service, strlen(service), k1);
	digest_hmac_sha256(k1, SHA256_BYTES, "aws4_request", strlen("aws4_request"), k2);

	/* 4. the signature */
	digest_hmac_sha256(k2, SHA256_BYTES, sts.data, sts.len, signature);
	explicit_bzero(k1, sizeof(k1));
	explicit_bzero(k2, sizeof(k2));
	hex_encode_lower(signature, SHA256_BYTES, signature_hex);

	return psprintf("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
					access_key_id, scope, signed_headers.data, signature_hex);
}

/*
 * payment_sigv4_test_sign(method, path, query, headers text[], payload,
 *						   amz_date, region, service, key_id, secret)
 *	  Test hook: the Authorization header for the given request, each header
 *	  given as "Name:value".
 */
Datum
payment_sigv4_test_sign(PG_FUNCTION_ARGS)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(3);
	text	   *payload = PG_GETARG_TEXT_PP(4);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	HttpHeader *headers;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	headers = palloc(sizeof(HttpHeader) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		char	   *line;
		char	   *colon;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("header must not be null")));
		line = TextDatumGetCString(elems[i]);
		colon = strchr(line, ':');
		if (colon == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("header \"%s\" has no colon", line)));
		*colon = '\0';
		headers[i].name = line;
		headers[i].value = colon + 1;
	}

	PG_RETURN_TEXT_P(cstring_to_text(
		sigv4_authorization(text_to_cstring(PG_GETARG_TEXT_PP(0)),
							text_to_cstring(PG_GETARG_TEXT_PP(1)),
							text_to_cstring(PG_GETARG_TEXT_PP(2)),
							headers, n,
							VARDATA_ANY(payload), VARSIZE_ANY_EXHDR(payload),
							text_to_cstring(PG_GETARG_TEXT_PP(5)),
							text_to_cstring(PG_GETARG_TEXT_PP(6)),
							text_to_cstring(PG_GETARG_TEXT_PP(7)),
							text_to_cstring(PG_GETARG_TEXT_PP(8)),
							text_to_cstring(PG_GETARG_TEXT_PP(9)))));
}
