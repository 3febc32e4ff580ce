/*-------------------------------------------------------------------------
 * openapi.c
 *	  OpenAPI 3.0 schema objects to JSON Schema draft-04: the model
 *	  components.schemas.<model> becomes the root; every "$ref" to another
 *	  component is rewritten to "#/definitions/<name>" and that component
 *	  converted into "definitions" (a reference to the model itself becomes
 *	  "#", so recursive models stay recursive).  "nullable": true adds "null"
 *	  to "type" (and to "enum"), or without a type wraps the schema in
 *	  anyOf [null, schema].  Keywords draft-04 lacks (discriminator,
 *	  readOnly, writeOnly, xml, externalDocs, example, deprecated, x-*)
 *	  are dropped; everything else is the same in both.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"

#include "common/json_util.h"
#include "schema/json_schema.h"

#define COMPONENTS_PREFIX "#/components/schemas/"

typedef struct Conversion
{
	JsonbContainer *components; /* components.schemas */
	const char *model;
	List	   *needed;			/* component names to put in definitions */
} Conversion;

static void convert_schema(Conversion *cv, StringInfo buf, JsonbValue *v, const char *path);

static void
openapi_error(const char *path, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("cannot convert OpenAPI schema"),
			 errdetail("%s: %s", path, detail),
			 errhint("Pass an OpenAPI 3.0 document as JSON whose components.schemas holds the model.")));
}

static bool
is_object(JsonbValue *v)
{
	return v != NULL && v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

static void
emit_raw(StringInfo buf, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvBinary:
			JsonbToCString(buf, v->val.binary.data, v->val.binary.len);
			break;
		case jbvString:
			escape_json(buf, pnstrdup(v->val.string.val, v->val.string.len));
			break;
		case jbvNumeric:
			appendStringInfoString(buf, DatumGetCString(DirectFunctionCall1(numeric_out,
																			NumericGetDatum(v->val.numeric))));
			break;
		case jbvBool:
			appendStringInfoString(buf, v->val.boolean ? "true" : "false");
			break;
		default:
			appendStringInfoString(buf, "null");
	}
}

/* JSON pointer token unescaping, for the component's name */
static char *
unescape_token(const char *s, int len)
{
	StringInfoData out;

	initStringInfo(&out);
	for (int i = 0; i < len; i++)
	{
		if (s[i] == '~' && i + 1 < len && (s[i + 1] == '0' || s[i + 1] == '1'))
			appendStringInfoChar(&out, s[++i] == '0' ? '~' : '/');
		else
			appendStringInfoChar(&out, s[i]);
	}
	return out.data;
}

static char *
rewrite_ref(Conversion *cv, const char *ref, const char *path)
{
	const char *name;
	int			len;
	char	   *unescaped;
	ListCell   *lc;

	if (strncmp(ref, COMPONENTS_PREFIX, strlen(COMPONENTS_PREFIX)) != 0)
		openapi_error(path, psprintf("$ref \"%s\" is not a reference to #/components/schemas/...", ref));
	name = ref + strlen(COMPONENTS_PREFIX);
	len = strcspn(name, "/");
	unescaped = unescape_token(name, len);
	if (json_find_member(cv->components, unescaped, strlen(unescaped)) == NULL)
		openapi_error(path, psprintf("$ref \"%s\": components.schemas has no \"%s\"", ref, unescaped));
	if (strcmp(unescaped, cv->model) == 0)
		return psprintf("#%s", name + len);
	foreach(lc, cv->needed)
		if (strcmp(lfirst(lc), unescaped) == 0)
			break;
	if (lc == NULL)
		cv->needed = lappend(cv->needed, unescaped);
	return psprintf("#/definitions/%s", name);
}

static bool
dropped_keyword(const char *k, int len)
{
	static const char *const openapi_only[] = {"nullable", "discriminator", "readOnly",
	"writeOnly", "xml", "externalDocs", "example", "deprecated"};

	if (len >= 2 && k[0] == 'x' && k[1] == '-')
		return true;
	for (int i = 0; i < lengthof(openapi_only); i++)
		if (strlen(openapi_only[i]) == len && memcmp(openapi_only[i], k, len) == 0)
			return true;
	return false;
}

static bool
key_is(JsonbValue *k, const char *name)
{
	return k->val.string.len == strlen(name) &&
		memcmp(k->val.string.val, name, k->val.string.len) == 0;
}

/* an object of schemas (properties) or an array of them (allOf ...) */
static void
convert_collection(Conversion *cv, StringInfo buf, JsonbValue *v, const char *path)
{
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;
	bool		first = true;
	int			index = 0;
	bool		object;

	if (v->type != jbvBinary)
		openapi_error(path, "must be an object or an array of schemas");
	object = JsonContainerIsObject(v->val.binary.data);
	appendStringInfoChar(buf, object ? '{' : '[');
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			char	   *name = pnstrdup(elem.val.string.val, elem.val.string.len);

			appendStringInfoString(buf, first ? "" : ", ");
			escape_json(buf, name);
			appendStringInfoString(buf, ": ");
			JsonbIteratorNext(&it, &elem, true);
			convert_schema(cv, buf, &elem, psprintf("%s/%s", path, name));
			first = false;
		}
		else if (tok == WJB_ELEM)
		{
			appendStringInfoString(buf, first ? "" : ", ");
			convert_schema(cv, buf, &elem, psprintf("%s/%d", path, index++));
			first = false;
		}
	}
	appendStringInfoChar(buf, object ? '}' : ']');
}

/* the members of a converted schema object, without its braces */
static void
convert_members(Conversion *cv, StringInfo buf, JsonbContainer *obj, const char *path,
				bool nullable)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		first = true;
	JsonbValue *ref = json_find_member(obj, "$ref", 4);

	if (ref != NULL)
	{
		if (ref->type != jbvString)
			openapi_error(path, "\"$ref\" must be a string");
		appendStringInfoString(buf, "\"$ref\": ");
		escape_json(buf, rewrite_ref(cv, pnstrdup(ref->val.string.val, ref->val.string.len),
									 path));
		return;
	}
	it = JsonbIteratorInit(obj);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *sub;

		if (tok != WJB_KEY)
			continue;
		JsonbIteratorNext(&it, &v, true);
		if (dropped_keyword(k.val.string.val, k.val.string.len))
			continue;
		appendStringInfoString(buf, first ? "" : ", ");
		first = false;
		escape_json(buf, pnstrdup(k.val.string.val, k.val.string.len));
		appendStringInfoString(buf, ": ");
		sub = psprintf("%s/%s", path, pnstrdup(k.val.string.val, k.val.string.len));

		if (key_is(&k, "type") && nullable && v.type == jbvString)
		{
			appendStringInfoChar(buf, '[');
			emit_raw(buf, &v);
			appendStringInfoString(buf, ", \"null\"]");
		}
		else if (key_is(&k, "enum") && nullable && v.type == jbvBinary &&
				 JsonContainerIsArray(v.val.binary.data))
		{
			JsonbValue	null_value = {.type = jbvNull};
			JsonbValue *has_null = findJsonbValueFromContainer(v.val.binary.data,
															   JB_FARRAY, &null_value);
			StringInfoData inner;

			initStringInfo(&inner);
			emit_raw(&inner, &v);
			if (has_null == NULL)
			{
				inner.data[--inner.len] = '\0'; /* drop "]" */
				appendStringInfoString(&inner, inner.len > 1 ? ", null]" : "null]");
			}
			appendStringInfoString(buf, inner.data);
		}
		else if (key_is(&k, "properties"))
		{
			if (!is_object(&v))
				openapi_error(sub, "must be an object of schemas");
			convert_collection(cv, buf, &v, sub);
		}
		else if (key_is(&k, "allOf") || key_is(&k, "anyOf") || key_is(&k, "oneOf"))
		{
			if (v.type != jbvBinary || !JsonContainerIsArray(v.val.binary.data))
				openapi_error(sub, "must be an array of schemas");
			convert_collection(cv, buf, &v, sub);
		}
		else if (key_is(&k, "items") || key_is(&k, "not") ||
				 (key_is(&k, "additionalProperties") && v.type != jbvBool))
			convert_schema(cv, buf, &v, sub);
		else
			emit_raw(buf, &v);
	}
}

static void
convert_schema(Conversion *cv, StringInfo buf, JsonbValue *v, const char *path)
{
	JsonbContainer *obj;
	JsonbValue *nullable;
	bool		is_nullable;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	if (!is_object(v))
		openapi_error(path, "a schema must be an object");
	obj = v->val.binary.data;
	nullable = json_find_member(obj, "nullable", 8);
	is_nullable = (nullable != NULL && nullable->type == jbvBool && nullable->val.boolean);

	if (is_nullable && json_find_member(obj, "type", 4) == NULL)
	{
		/* no type to add "null" to: null, or the schema as it is */
		appendStringInfoString(buf, "{\"anyOf\": [{\"type\": \"null\"}, {");
		convert_members(cv, buf, obj, path, false);
		appendStringInfoString(buf, "}]}");
		return;
	}
	appendStringInfoChar(buf, '{');
	convert_members(cv, buf, obj, path, is_nullable);
	appendStringInfoChar(buf, '}');
}

Jsonb *
json_schema_from_openapi(Jsonb *document, const char *model)
{
	Conversion	cv = {0};
	JsonbValue *components;
	JsonbValue *schemas;
	JsonbValue *root;
	StringInfoData out;
	StringInfoData members;
	char	   *root_path = psprintf("#/components/schemas/%s", model);

	if (!JB_ROOT_IS_OBJECT(document) || JB_ROOT_IS_SCALAR(document))
		openapi_error("#", "an OpenAPI document is a JSON object");
	components = json_find_member(&document->root, "components", 10);
	schemas = is_object(components) ?
		json_find_member(components->val.binary.data, "schemas", 7) : NULL;
	if (!is_object(schemas))
		openapi_error("#/components/schemas", "missing, or not an object");
	cv.components = schemas->val.binary.data;
	cv.model = model;
	root = json_find_member(cv.components, model, strlen(model));
	if (root == NULL)
		openapi_error(root_path, "no such model");

	initStringInfo(&members);
	{
		StringInfoData whole;

		/* the model's members, to which $schema and definitions are added */
		initStringInfo(&whole);
		convert_schema(&cv, &whole, root, root_path);
		appendBinaryStringInfo(&members, whole.data + 1, whole.len - 2);
	}

	initStringInfo(&out);
	appendStringInfoString(&out, "{\"$schema\": \"http://json-schema.org/draft-04/schema#\"");
	if (members.len > 0)
		appendStringInfo(&out, ", %s", members.data);
	if (cv.needed != NIL)
	{
		appendStringInfoString(&out, ", \"definitions\": {");
		/* converting a component may add others to the list: walk by index */
		for (int i = 0; i < list_length(cv.needed); i++)
		{
			char	   *name = list_nth(cv.needed, i);

			appendStringInfoString(&out, i > 0 ? ", " : "");
			escape_json(&out, name);
			appendStringInfoString(&out, ": ");
			convert_schema(&cv, &out, json_find_member(cv.components, name, strlen(name)),
						   psprintf("#/components/schemas/%s", name));
		}
		appendStringInfoChar(&out, '}');
	}
	appendStringInfoChar(&out, '}');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data)));
}
