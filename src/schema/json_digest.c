/*-------------------------------------------------------------------------
 * json_digest.c
 *	  The digest of a JSON document by which the key record tells a retry
 *	  (the same payment again) from a reused key (another payment): JSON
 *	  equality as jsonb's own, without keeping the document.  jsonb already
 *	  orders an object's keys and keeps one of each; what is left to make
 *	  canonical is the numbers, written without insignificant zeros
 *	  (numeric_normalize), so that 7.990 and 7.99 give one digest.  Every
 *	  token is tagged and every string length-prefixed, so that no two
 *	  different documents give one encoding.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/numeric.h"

#include "common/json_util.h"
#include "schema/json_digest.h"

PG_FUNCTION_INFO_V1(payment_body_digest);

static void
append_counted(StringInfo out, char tag, const char *data, int len)
{
	appendStringInfoChar(out, tag);
	appendBinaryStringInfo(out, (const char *) &len, sizeof(len));
	appendBinaryStringInfo(out, data, len);
}

static void
append_scalar(StringInfo out, const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			appendStringInfoChar(out, 'n');
			break;
		case jbvBool:
			appendStringInfoChar(out, v->val.boolean ? 't' : 'f');
			break;
		case jbvString:
			append_counted(out, 's', v->val.string.val, v->val.string.len);
			break;
		case jbvNumeric:
			{
				char	   *text = numeric_normalize(v->val.numeric);

				append_counted(out, '#', text, strlen(text));
				pfree(text);
				break;
			}
		default:
			elog(ERROR, "unexpected jsonb scalar type %d", (int) v->type);
	}
}

void
json_digest(Jsonb *doc, unsigned char *out)
{
	StringInfoData canonical;
	JsonbIterator *it = JsonbIteratorInit(&doc->root);
	JsonbValue	v;
	JsonbIteratorToken tok;

	initStringInfo(&canonical);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_OBJECT:
				appendStringInfoChar(&canonical, '{');
				break;
			case WJB_END_OBJECT:
				appendStringInfoChar(&canonical, '}');
				break;
			case WJB_BEGIN_ARRAY:
				appendStringInfoChar(&canonical, v.val.array.rawScalar ? '=' : '[');
				break;
			case WJB_END_ARRAY:
				appendStringInfoChar(&canonical, ']');
				break;
			case WJB_KEY:
				append_counted(&canonical, 'k', v.val.string.val, v.val.string.len);
				break;
			case WJB_VALUE:
			case WJB_ELEM:
				append_scalar(&canonical, &v);
				break;
			case WJB_DONE:
				break;
		}
	}
	digest_sha256(canonical.data, canonical.len, out);
	pfree(canonical.data);
}

/*
 * payment.body_digest(text): the digest of a message body, NULL for text
 * that is not a JSON object (the key record of messages queued before 1.2).
 */
Datum
payment_body_digest(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	Jsonb	   *doc = json_parse_object(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body));
	bytea	   *result;

	if (doc == NULL)
		PG_RETURN_NULL();
	result = palloc(VARHDRSZ + SHA256_BYTES);
	SET_VARSIZE(result, VARHDRSZ + SHA256_BYTES);
	json_digest(doc, (unsigned char *) VARDATA(result));
	PG_RETURN_BYTEA_P(result);
}
