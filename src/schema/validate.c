/*-------------------------------------------------------------------------
 * validate.c
 *	  The payment schema engine: a small JSON Schema subset (type, required,
 *	  properties, format "uuid", minLength, maxLength) compiled once per
 *	  process from a schema document and applied to jsonb payloads, plus the
 *	  extraction of the stored columns from a valid payload.
 *
 *	  The shipped schema is the reference API's Payment model; it accepts
 *	  exactly what ../shared/payment.schema.json accepts.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "payment.h"

/* The reference Payment model (draft-04), as the reference API enforced it. */
static const char *const default_schema =
"{\"type\": \"object\","
" \"required\": [\"amount\", \"currency\", \"dateTimestamp\", \"description\", \"paymentId\", \"userId\"],"
" \"properties\": {"
"   \"paymentId\": {\"type\": \"string\", \"format\": \"uuid\"},"
"   \"userId\": {\"type\": \"string\", \"format\": \"uuid\"},"
"   \"dateTimestamp\": {\"type\": \"string\"},"
"   \"description\": {\"type\": \"string\", \"maxLength\": 256},"
"   \"currency\": {\"type\": \"string\"},"
"   \"amount\": {\"type\": \"number\"}}}";

/* JSON Schema's type names, as a bit mask; 0 means any type */
#define JT_STRING	0x01
#define JT_NUMBER	0x02
#define JT_INTEGER	0x04
#define JT_OBJECT	0x08
#define JT_ARRAY	0x10
#define JT_BOOLEAN	0x20
#define JT_NULL		0x40

typedef struct SchemaNode
{
	int			types;
	int			min_length;		/* -1: no limit */
	int			max_length;		/* -1: no limit */
	bool		format_uuid;
	int			nrequired;
	char	  **required;
	int			nproperties;
	char	  **property_names;
	struct SchemaNode **properties;
} SchemaNode;

#define MAX_REPORTED_PROBLEMS 10

typedef struct Problems
{
	StringInfoData text;
	int			count;
} Problems;

static SchemaNode *payment_schema = NULL;

static const struct
{
	const char *name;
	int			mask;
}			type_names[] =
{
	{"string", JT_STRING},
	{"number", JT_NUMBER | JT_INTEGER},
	{"integer", JT_INTEGER},
	{"object", JT_OBJECT},
	{"array", JT_ARRAY},
	{"boolean", JT_BOOLEAN},
	{"null", JT_NULL},
};

static JsonbValue *
schema_keyword(JsonbContainer *schema, const char *keyword)
{
	JsonbValue	key;

	key.type = jbvString;
	key.val.string.val = (char *) keyword;
	key.val.string.len = strlen(keyword);
	return findJsonbValueFromContainer(schema, JB_FOBJECT, &key);
}

static void
schema_error(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid payment schema"),
			 errdetail_internal("%s", detail)));
}

static int
type_mask(JsonbValue *v)
{
	if (v->type != jbvString)
		schema_error("\"type\" must be a string");
	for (int i = 0; i < lengthof(type_names); i++)
	{
		if (strlen(type_names[i].name) == v->val.string.len &&
			strncmp(type_names[i].name, v->val.string.val, v->val.string.len) == 0)
			return type_names[i].mask;
	}
	schema_error("unknown \"type\"");
	return 0;
}

static int
schema_length(JsonbContainer *schema, const char *keyword)
{
	JsonbValue *v = schema_keyword(schema, keyword);

	if (v == NULL)
		return -1;
	if (v->type != jbvNumeric)
		schema_error("length limits must be numbers");
	return DatumGetInt32(DirectFunctionCall1(numeric_int4,
											 NumericGetDatum(v->val.numeric)));
}

static SchemaNode *
compile_schema(JsonbContainer *schema)
{
	SchemaNode *node = palloc0(sizeof(SchemaNode));
	JsonbValue *v;

	if (!JsonContainerIsObject(schema))
		schema_error("a schema must be a JSON object");

	v = schema_keyword(schema, "type");
	if (v != NULL && v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data))
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	elem;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
			if (tok == WJB_ELEM)
				node->types |= type_mask(&elem);
	}
	else if (v != NULL)
		node->types = type_mask(v);

	node->min_length = schema_length(schema, "minLength");
	node->max_length = schema_length(schema, "maxLength");

	v = schema_keyword(schema, "format");
	node->format_uuid = (v != NULL && v->type == jbvString &&
						 v->val.string.len == 4 &&
						 strncmp(v->val.string.val, "uuid", 4) == 0);

	v = schema_keyword(schema, "required");
	if (v != NULL)
	{
		JsonbIterator *it;
		JsonbValue	elem;
		JsonbIteratorToken tok;

		if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
			schema_error("\"required\" must be an array of strings");
		node->required = palloc(sizeof(char *) * JsonContainerSize(v->val.binary.data));
		it = JsonbIteratorInit(v->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			if (elem.type != jbvString)
				schema_error("\"required\" must be an array of strings");
			node->required[node->nrequired++] =
				pnstrdup(elem.val.string.val, elem.val.string.len);
		}
	}

	v = schema_keyword(schema, "properties");
	if (v != NULL)
	{
		JsonbIterator *it;
		JsonbValue	key;
		JsonbIteratorToken tok;
		int			size;

		if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
			schema_error("\"properties\" must be an object");
		size = JsonContainerSize(v->val.binary.data);
		node->property_names = palloc(sizeof(char *) * size);
		node->properties = palloc(sizeof(SchemaNode *) * size);
		it = JsonbIteratorInit(v->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &key, true)) != WJB_DONE)
		{
			JsonbValue	sub;

			if (tok != WJB_KEY)
				continue;
			node->property_names[node->nproperties] =
				pnstrdup(key.val.string.val, key.val.string.len);
			tok = JsonbIteratorNext(&it, &sub, true);
			if (sub.type != jbvBinary)
				schema_error("each property's schema must be an object");
			node->properties[node->nproperties++] = compile_schema(sub.val.binary.data);
		}
	}
	return node;
}

static SchemaNode *
get_payment_schema(void)
{
	if (payment_schema == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		Jsonb	   *doc = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
															 CStringGetDatum(default_schema)));

		payment_schema = compile_schema(&doc->root);
		MemoryContextSwitchTo(old);
	}
	return payment_schema;
}

/* The canonical 8-4-4-4-12 hex form that JSON Schema's "uuid" format means. */
static bool
is_canonical_uuid(const char *s, int len)
{
	if (len != 36)
		return false;
	for (int i = 0; i < len; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!isxdigit((unsigned char) s[i]))
			return false;
	}
	return true;
}

/*
 * The JSON Schema type of a value.  Whether a number is an integer costs a
 * numeric computation, so it is asked only where a schema says "integer".
 */
static int
value_type(JsonbValue *v, bool need_integer)
{
	switch (v->type)
	{
		case jbvString:
			return JT_STRING;
		case jbvNumeric:
			if (need_integer &&
				DatumGetBool(DirectFunctionCall2(numeric_eq,
												 NumericGetDatum(v->val.numeric),
												 DirectFunctionCall1(numeric_floor,
																	 NumericGetDatum(v->val.numeric)))))
				return JT_NUMBER | JT_INTEGER;
			return JT_NUMBER;
		case jbvBool:
			return JT_BOOLEAN;
		case jbvNull:
			return JT_NULL;
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ? JT_OBJECT : JT_ARRAY;
		default:
			return JT_OBJECT;	/* in-memory containers do not reach here */
	}
}

static const char *
type_name(int types)
{
	if (types & JT_STRING)
		return "string";
	if (types & JT_NUMBER)
		return "number";
	if (types & JT_INTEGER)
		return "integer";
	if (types & JT_OBJECT)
		return "object";
	if (types & JT_ARRAY)
		return "array";
	if (types & JT_BOOLEAN)
		return "boolean";
	return "null";
}

static void
add_problem(Problems *problems, const char *path, const char *fmt, const char *arg)
{
	if (problems->count++ >= MAX_REPORTED_PROBLEMS)
		return;
	if (problems->text.len > 0)
		appendStringInfoString(&problems->text, "; ");
	appendStringInfo(&problems->text, "%s: ", path);
	appendStringInfo(&problems->text, fmt, arg);
}

/* "$.name" for plain names, "$["odd name"]" otherwise */
static char *
child_path(const char *path, const char *name)
{
	StringInfoData buf;
	bool		plain = (*name != '\0');

	for (const char *c = name; *c; c++)
		if (!(isalnum((unsigned char) *c) || *c == '_'))
			plain = false;
	initStringInfo(&buf);
	appendStringInfoString(&buf, path);
	if (plain)
		appendStringInfo(&buf, ".%s", name);
	else
	{
		appendStringInfoChar(&buf, '[');
		escape_json(&buf, name);
		appendStringInfoChar(&buf, ']');
	}
	return buf.data;
}

static void
validate_node(SchemaNode *node, JsonbValue *value, const char *path, Problems *problems)
{
	/* "number" admits integers too, so only a bare "integer" needs the test */
	bool		need_integer = (node->types & JT_INTEGER) && !(node->types & JT_NUMBER);
	int			actual = value_type(value, need_integer);

	if (node->types != 0 && (node->types & actual) == 0)
	{
		char		expected[64];

		snprintf(expected, sizeof(expected), "expected %s, got %%s",
				 type_name(node->types));
		add_problem(problems, path, expected, type_name(actual));
		return;
	}

	if (value->type == jbvString)
	{
		int			chars = pg_mbstrlen_with_len(value->val.string.val,
												 value->val.string.len);

		if (node->max_length >= 0 && chars > node->max_length)
		{
			char		limit[16];

			snprintf(limit, sizeof(limit), "%d", node->max_length);
			add_problem(problems, path, "longer than %s characters", limit);
		}
		if (node->min_length >= 0 && chars < node->min_length)
		{
			char		limit[16];

			snprintf(limit, sizeof(limit), "%d", node->min_length);
			add_problem(problems, path, "shorter than %s characters", limit);
		}
		if (node->format_uuid &&
			!is_canonical_uuid(value->val.string.val, value->val.string.len))
			add_problem(problems, path, "not a valid uuid%s", "");
	}

	if (actual == JT_OBJECT)
	{
		JsonbContainer *obj = value->val.binary.data;

		for (int i = 0; i < node->nrequired; i++)
			if (schema_keyword(obj, node->required[i]) == NULL)
				add_problem(problems, child_path(path, node->required[i]),
							"required property missing%s", "");

		for (int i = 0; i < node->nproperties; i++)
		{
			JsonbValue *sub = schema_keyword(obj, node->property_names[i]);

			if (sub != NULL)
				validate_node(node->properties[i], sub,
							  child_path(path, node->property_names[i]), problems);
		}
	}
}

/*
 * Check a payload against the payment schema.  Returns true when valid;
 * otherwise *problems (if not NULL) describes every broken rule by JSON path.
 */
bool
payment_validate(Jsonb *payload, char **problems)
{
	Problems	found;
	JsonbValue	root;

	if (JB_ROOT_IS_SCALAR(payload))
		JsonbExtractScalar(&payload->root, &root);
	else
	{
		root.type = jbvBinary;
		root.val.binary.data = &payload->root;
		root.val.binary.len = VARSIZE(payload) - VARHDRSZ;
	}

	initStringInfo(&found.text);
	found.count = 0;
	validate_node(get_payment_schema(), &root, "$", &found);
	if (found.count > MAX_REPORTED_PROBLEMS)
		appendStringInfo(&found.text, "; and %d more", found.count - MAX_REPORTED_PROBLEMS);
	if (problems)
		*problems = found.text.data;
	return found.count == 0;
}

/* Size limit and schema check of a submitted payload; raises class 22. */
void
payment_check_payload(Jsonb *payload, Size text_length)
{
	char	   *problems;

	if (text_length > (Size) payment_max_payload_size)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("payment payload is too large"),
				 errdetail("The payload is %zu bytes as JSON text; the limit is %d bytes.",
						   text_length, payment_max_payload_size),
				 errhint("See the setting payment.max_payload_size.")));

	if (!payment_validate(payload, &problems))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payment does not match the payment schema"),
				 errdetail("%s", problems)));
}

static JsonbValue *
top_level_value(Jsonb *payload, const char *key)
{
	if (!JB_ROOT_IS_OBJECT(payload))
		return NULL;
	return schema_keyword(&payload->root, key);
}

/* A top-level string property, or NULL when absent or not a string. */
char *
payment_try_get_string(Jsonb *payload, const char *key)
{
	JsonbValue *v = top_level_value(payload, key);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* A top-level property that is a uuid in canonical form, else NULL. */
bool
payment_try_get_uuid(Jsonb *payload, const char *key, Datum *uuid)
{
	JsonbValue *v = top_level_value(payload, key);

	if (v == NULL || v->type != jbvString ||
		!is_canonical_uuid(v->val.string.val, v->val.string.len))
		return false;
	*uuid = DirectFunctionCall1(uuid_in,
								CStringGetDatum(pnstrdup(v->val.string.val,
														 v->val.string.len)));
	return true;
}

/* The stored columns of a payload that payment_validate accepted. */
void
payment_extract_fields(Jsonb *payload, PaymentFields *fields)
{
	JsonbValue *amount = top_level_value(payload, "amount");

	if (!payment_try_get_uuid(payload, "paymentId", &fields->payment_id) ||
		!payment_try_get_uuid(payload, "userId", &fields->user_id) ||
		amount == NULL || amount->type != jbvNumeric)
		elog(ERROR, "payment_extract_fields called on an unvalidated payload");
	fields->amount = NumericGetDatum(amount->val.numeric);
	fields->currency = payment_try_get_string(payload, "currency");
	fields->description = payment_try_get_string(payload, "description");
	fields->date_timestamp = payment_try_get_string(payload, "dateTimestamp");
}

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

void
payment_find_keys(const char *body, Datum *payment_id, Datum *user_id)
{
	KeyFinder	finder = {0};
	JsonSemAction sem = {0};
	JsonLexContext *lex = makeJsonLexContextCstringLen((char *) body, strlen(body),
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
	if (finder.payment_id && is_canonical_uuid(finder.payment_id, strlen(finder.payment_id)))
		*payment_id = DirectFunctionCall1(uuid_in, CStringGetDatum(finder.payment_id));
	if (finder.user_id && is_canonical_uuid(finder.user_id, strlen(finder.user_id)))
		*user_id = DirectFunctionCall1(uuid_in, CStringGetDatum(finder.user_id));
}
