/*-------------------------------------------------------------------------
 * json_util.c
 *	  The JSON helpers shared by the JWT/JWKS code and the SQS client:
 *	  parsing untrusted text with PostgreSQL's own parser, and typed access
 *	  to members of jsonb objects and arrays.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"

#include "common/json_util.h"

Jsonb *
json_parse_object(const char *text, size_t len)
{
	char	   *copy;
	JsonLexContext *lex;
	Jsonb	   *jb;

	if (len == 0 || memchr(text, '\0', len) != NULL ||
		!pg_verifymbstr(text, (int) len, true))
		return NULL;
	copy = pnstrdup(text, len);
	lex = makeJsonLexContextCstringLen(copy, (int) len, GetDatabaseEncoding(), true);
	if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
		return NULL;
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(copy)));
	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		return NULL;
	return jb;
}

JsonbValue *
json_find_member(JsonbContainer *obj, const char *name, int len)
{
	if (obj == NULL || !JsonContainerIsObject(obj))
		return NULL;
	return getKeyJsonValueFromContainer(obj, name, len, NULL);
}

static JsonbValue *
member(JsonbContainer *obj, const char *key)
{
	return json_find_member(obj, key, strlen(key));
}

char *
json_get_string(JsonbContainer *obj, const char *key)
{
	JsonbValue *v = member(obj, key);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

bool
json_get_number(JsonbContainer *obj, const char *key, double *value)
{
	JsonbValue *v = member(obj, key);

	if (v == NULL || v->type != jbvNumeric)
		return false;
	/* huge values become infinity rather than an error */
	*value = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
												NumericGetDatum(v->val.numeric)));
	return !isnan(*value);
}

JsonbContainer *
json_get_container(JsonbContainer *obj, const char *key)
{
	JsonbValue *v = member(obj, key);

	if (v == NULL || v->type != jbvBinary)
		return NULL;
	return v->val.binary.data;
}

int
json_array_size(JsonbContainer *arr)
{
	if (arr == NULL || !JsonContainerIsArray(arr))
		return 0;
	return JsonContainerSize(arr);
}

JsonbContainer *
json_array_object(JsonbContainer *arr, int i)
{
	JsonbValue *v;

	if (arr == NULL || !JsonContainerIsArray(arr))
		return NULL;
	v = getIthJsonbValueFromContainer(arr, i);
	if (v == NULL || v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		return NULL;
	return v->val.binary.data;
}
