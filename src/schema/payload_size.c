/*-------------------------------------------------------------------------
 * payload_size.c
 *	  The size limits of a submitted payment: payment.max_payload_size on
 *	  its JSON text, checked before the text exists, and the digits of its
 *	  numbers.
 *
 *	  The queue takes a payload as text, but rendering a jsonb is not
 *	  bounded by its size: a number is stored in a few bytes whatever its
 *	  exponent, so 16 KB of "1e131071" become 262 MB of digits.  So the
 *	  text's length is computed first from the jsonb, in one walk that
 *	  stops past twice the limit.  A number's text is made only once its
 *	  scale and two comparisons with constants have bounded it to 2,002
 *	  characters (a number beyond is refused); the length is then exact,
 *	  so that every payload the limit accepted once it still accepts.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "payment.h"
#include "schema/payload_size.h"

/*
 * Most digits a number may have before, and after, the decimal point:
 * PostgreSQL's own limit on a declared numeric precision and display scale
 * (NUMERIC_MAX_PRECISION).  No amount needs more (a double holds at most
 * 309 digits before the point), and the text of an accepted number is then
 * at most 2,002 characters, however few bytes it took in the request.
 */
#define MAX_NUMBER_DIGITS NUMERIC_MAX_PRECISION

/*
 * Each member of a jsonb container takes a 4-byte entry (an object's key
 * another), up to 3 bytes of alignment before a number or a container, and
 * its data: a container's 4-byte header, a string's bytes, a number's 6 or 8
 * bytes and 2 more per 4 digits.  Against the text each writes (brackets,
 * ", ", quotes, digits), that is at most 5.5 bytes of jsonb per byte of text
 * (a container whose only member is a container: 11 bytes for "[]"), and a
 * few bytes more in all.  So a container of more than 8 bytes per byte of
 * the limit, plus 64, is refused without a walk; that also bounds the walk.
 */
#define MAX_JSONB_PER_TEXT_BYTE 8
#define ROOT_SLACK 64

/* bytes escape_json adds to a string for each byte (its quotes apart) */
static const uint8 escape_extra[256] = {
	5, 5, 5, 5, 5, 5, 5, 5, 1, 1, 1, 5, 1, 1, 5, 5,	/* \b \t \n \f \r: 2 bytes */
	5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,	/* others below 0x20: \u00XX */
	0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* " */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,	/* \ */
};

/* +10^MAX_NUMBER_DIGITS and its negation, made once per process */
static Numeric digits_limit = NULL;
static Numeric digits_limit_negative = NULL;

static void
refuse_too_large(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
			 errmsg("payment payload is too large"),
			 errdetail("%s", detail),
			 errhint("See the setting payment.max_payload_size.")));
}

void
payment_check_text_size(Size text_length)
{
	if (text_length > (Size) payment_max_payload_size)
		refuse_too_large(psprintf("The payload is %zu bytes as JSON text; the limit is %d bytes.",
								  text_length, payment_max_payload_size));
}

/* the text of a string as escape_json writes it, quotes included */
static Size
string_length(const char *s, int len)
{
	Size		n = (Size) len + 2;

	for (int i = 0; i < len; i++)
		n += escape_extra[(unsigned char) s[i]];
	return n;
}

/* the length of numeric_out's text; refuses a number with too many digits */
static Size
number_length(Numeric stored)
{
	Numeric		n = DatumGetNumeric(PointerGetDatum(stored));	/* 4-byte header */
	Datum		d = NumericGetDatum(n);
	char	   *text;
	Size		len;

	if (digits_limit == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		char	   *limit = psprintf("1e%d", MAX_NUMBER_DIGITS);

		digits_limit = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(limit),
														   ObjectIdGetDatum(InvalidOid),
														   Int32GetDatum(-1)));
		digits_limit_negative = DatumGetNumeric(DirectFunctionCall1(numeric_uminus,
																	NumericGetDatum(digits_limit)));
		pfree(limit);
		MemoryContextSwitchTo(old);
	}

	/* jsonb holds no NaN or infinity; the scale is the digits after the point */
	if (DatumGetInt32(DirectFunctionCall1(numeric_scale, d)) > MAX_NUMBER_DIGITS ||
		DatumGetBool(DirectFunctionCall2(numeric_ge, d, NumericGetDatum(digits_limit))) ||
		DatumGetBool(DirectFunctionCall2(numeric_le, d, NumericGetDatum(digits_limit_negative))))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("payment payload holds a number out of range"),
				 errdetail("A number may have at most %d digits before and %d after the decimal point.",
						   MAX_NUMBER_DIGITS, MAX_NUMBER_DIGITS)));

	text = DatumGetCString(DirectFunctionCall1(numeric_out, d));
	len = strlen(text);
	pfree(text);
	if (n != stored)
		pfree(n);
	return len;
}

static Size
scalar_length(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return 4;
		case jbvBool:
			return v->val.boolean ? 4 : 5;
		case jbvString:
			return string_length(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return number_length(v->val.numeric);
		default:
			elog(ERROR, "unexpected jsonb scalar type %d", (int) v->type);
	}
	return 0;					/* keep compiler quiet */
}

/*
 * The length of JsonbToCString's text of root, counted as it writes it
 * (", " between members, ": " after a key, no brackets around a scalar),
 * or, once it passes stop_at, some length past stop_at.
 */
static Size
text_length(JsonbContainer *root, Size stop_at)
{
	JsonbIterator *it = JsonbIteratorInit(root);
	JsonbIteratorToken tok;
	JsonbValue	v;
	Size		len = 0;
	bool		first = true;
	bool		raw_scalar = false;

	while (len <= stop_at && (tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_ARRAY:
			case WJB_BEGIN_OBJECT:
				len += first ? 0 : 2;
				if (tok == WJB_BEGIN_ARRAY && v.val.array.rawScalar)
					raw_scalar = true;
				else
					len += 1;
				first = true;
				break;
			case WJB_KEY:
				len += (first ? 0 : 2) + scalar_length(&v) + 2;
				first = true;
				break;
			case WJB_VALUE:
				len += scalar_length(&v);
				first = false;
				break;
			case WJB_ELEM:
				len += (first ? 0 : 2) + scalar_length(&v);
				first = false;
				break;
			case WJB_END_ARRAY:
			case WJB_END_OBJECT:
				len += (tok == WJB_END_ARRAY && raw_scalar) ? 0 : 1;
				first = false;
				break;
			default:
				elog(ERROR, "unexpected jsonb iterator token %d", (int) tok);
		}
	}
	return len;
}

void
payment_check_payload_size(JsonbContainer *root, Size container_size)
{
	Size		limit = (Size) payment_max_payload_size;
	Size		stop_at;
	Size		len;

	if (container_size > MAX_JSONB_PER_TEXT_BYTE * limit + ROOT_SLACK)
		refuse_too_large(psprintf("The payload takes %zu bytes as jsonb, so its JSON text is longer than the limit of %d bytes.",
								  container_size, payment_max_payload_size));

	/*
	 * Counted on past the limit (up to twice the limit) so that the usual
	 * refusal can say the exact size; no longer, so that the walk renders no
	 * more numbers than twice the limit's worth.
	 */
	stop_at = 2 * limit;
	len = text_length(root, stop_at);
	if (len > stop_at)
		refuse_too_large(psprintf("The payload is more than %zu bytes as JSON text; the limit is %d bytes.",
								  stop_at, payment_max_payload_size));
	payment_check_text_size(len);
}
