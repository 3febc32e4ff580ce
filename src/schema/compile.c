/*-------------------------------------------------------------------------
 * compile.c
 *	  Compiling a JSON Schema draft-04 document (jsonb) into a tree of
 *	  JsonSchemaNode: every keyword is checked against what the draft-04
 *	  meta-schema allows, and a mistake is raised as 22023 naming its schema
 *	  path ("#/properties/amount/type"), never as an internal error.
 *
 *	  Each subschema is compiled once (a node is registered before its
 *	  keywords are compiled, so a recursive "$ref" back to it finds it);
 *	  refs.c resolves "$ref" itself.  A schema that would recurse forever
 *	  on every value is refused here too.  Every loop and recursion checks
 *	  for interrupts: a schema document can be as large as a jsonb value.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "common/json_util.h"
#include "schema/compile_internal.h"
#include "schema/json_schema.h"

void
jsc_schema_error(const char *path, const char *fmt,...)
{
	va_list		args;
	char	   *detail;

	va_start(args, fmt);
	detail = json_schema_vformat(fmt, args);
	va_end(args);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid JSON schema"),
			 errdetail("%s: %s", path, detail),
			 errhint("The schema must be valid JSON Schema draft-04.")));
}

/* path + "/" + token, with JSON pointer escaping */
char *
jsc_path_join(const char *path, const char *token, int len)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s/", path);
	for (int i = 0; i < len; i++)
	{
		if (token[i] == '~')
			appendStringInfoString(&buf, "~0");
		else if (token[i] == '/')
			appendStringInfoString(&buf, "~1");
		else
			appendStringInfoChar(&buf, token[i]);
	}
	return buf.data;
}

static char *
path_index(const char *path, int i)
{
	return psprintf("%s/%d", path, i);
}

JsonbValue *
jsc_keyword(JsonbContainer *schema, const char *name)
{
	return json_find_member(schema, name, strlen(name));
}

bool
jsc_is_object(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

bool
jsc_is_array(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

/* ---- keyword values ---- */

static int
type_bit(JsonbValue *v, const char *path)
{
	static const struct
	{
		const char *name;
		int			bits;
	}			names[] =
	{
		{"string", JST_STRING}, {"number", JST_NUMBER | JST_INTEGER},
		{"integer", JST_INTEGER}, {"object", JST_OBJECT}, {"array", JST_ARRAY},
		{"boolean", JST_BOOLEAN}, {"null", JST_NULL},
	};

	if (v->type == jbvString)
		for (int i = 0; i < lengthof(names); i++)
			if (strlen(names[i].name) == v->val.string.len &&
				memcmp(names[i].name, v->val.string.val, v->val.string.len) == 0)
				return names[i].bits;
	jsc_schema_error(path, "\"type\" must be one of string, number, integer, object, array, boolean, null, or an array of them");
	return 0;
}

static Numeric
number_value(JsonbContainer *schema, const char *name, const char *path)
{
	JsonbValue *v = jsc_keyword(schema, name);

	if (v == NULL)
		return NULL;
	if (v->type != jbvNumeric)
		jsc_schema_error(jsc_path_join(path, name, strlen(name)), "\"%s\" must be a number", name);
	return v->val.numeric;
}

static bool
bool_value(JsonbContainer *schema, const char *name, const char *path)
{
	JsonbValue *v = jsc_keyword(schema, name);

	if (v == NULL)
		return false;
	if (v->type != jbvBool)
		jsc_schema_error(jsc_path_join(path, name, strlen(name)), "\"%s\" must be a boolean", name);
	return v->val.boolean;
}

/* a non-negative integer limit, or -1 when absent; huge values clamp */
static int
limit_value(JsonbContainer *schema, const char *name, const char *path)
{
	Numeric		n = number_value(schema, name, path);
	Datum		d;

	if (n == NULL)
		return -1;
	d = NumericGetDatum(n);
	if (!json_number_is_integer(n) ||
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, d,
										  NumericGetDatum(int64_to_numeric(0)))) < 0)
		jsc_schema_error(jsc_path_join(path, name, strlen(name)),
					 "\"%s\" must be a non-negative integer", name);
	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, d,
										  NumericGetDatum(int64_to_numeric(PG_INT32_MAX)))) > 0)
		return PG_INT32_MAX;
	return DatumGetInt32(DirectFunctionCall1(numeric_int4, d));
}

/* Compiled now and kept: a bad pattern is a schema error with its path. */
static regex_t *
compile_pattern(CompileState *st, const char *source, int len, const char *path)
{
	char	   *error;
	regex_t    *re = json_schema_regex_compile(st->schema, source, len, &error);

	if (re == NULL)
		jsc_schema_error(path, "invalid regular expression: %s", error);
	return re;
}

static JsonSchemaNode *
subschema(CompileState *st, JsonbValue *v, const char *base, const char *path)
{
	if (!jsc_is_object(v))
		jsc_schema_error(path, "a schema must be a JSON object");
	return jsc_compile_node(st, v->val.binary.data, base, path);
}

static void
schema_list(CompileState *st, JsonbValue *v, const char *base, const char *path,
			JsonSchemaList *list)
{
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;

	if (!jsc_is_array(v) || JsonContainerSize(v->val.binary.data) == 0)
		jsc_schema_error(path, "must be a non-empty array of schemas");
	list->nodes = palloc(sizeof(JsonSchemaNode *) * JsonContainerSize(v->val.binary.data));
	list->count = 0;
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
		if (tok == WJB_ELEM)
		{
			CHECK_FOR_INTERRUPTS();
			list->nodes[list->count] = subschema(st, &elem, base,
												 path_index(path, list->count));
			list->count++;
		}
}

static int
compare_names(const void *a, const void *b)
{
	CHECK_FOR_INTERRUPTS();
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* a non-empty array of unique strings ("required", a dependency) */
static char **
string_set(JsonbValue *v, const char *path, int *count)
{
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;
	char	  **names;
	char	  **sorted;

	if (!jsc_is_array(v) || JsonContainerSize(v->val.binary.data) == 0)
		jsc_schema_error(path, "must be a non-empty array of unique strings");
	names = palloc(sizeof(char *) * JsonContainerSize(v->val.binary.data));
	*count = 0;
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		CHECK_FOR_INTERRUPTS();
		if (elem.type != jbvString || memchr(elem.val.string.val, '\0', elem.val.string.len))
			jsc_schema_error(path, "must be a non-empty array of unique strings");
		names[(*count)++] = pnstrdup(elem.val.string.val, elem.val.string.len);
	}
	/* duplicates sort together; names keep their order (errors follow it) */
	sorted = palloc(sizeof(char *) * *count);
	memcpy(sorted, names, sizeof(char *) * *count);
	qsort(sorted, *count, sizeof(char *), compare_names);
	for (int i = 1; i < *count; i++)
		if (strcmp(sorted[i - 1], sorted[i]) == 0)
			jsc_schema_error(path, "must be a non-empty array of unique strings");
	pfree(sorted);
	return names;
}

/* properties, patternProperties, dependencies, definitions */
static JsonSchemaNamed *
schema_map(CompileState *st, JsonbValue *v, const char *base, const char *path,
		   int *count, bool patterns, bool dependencies)
{
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;
	JsonSchemaNamed *named;
	JsonSchemaNamed *current = NULL;

	if (!jsc_is_object(v))
		jsc_schema_error(path, "must be an object");
	named = palloc0(sizeof(JsonSchemaNamed) * Max(JsonContainerSize(v->val.binary.data), 1));
	*count = 0;
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		CHECK_FOR_INTERRUPTS();
		if (tok == WJB_KEY)
		{
			current = &named[(*count)++];
			current->name = pnstrdup(elem.val.string.val, elem.val.string.len);
			current->name_len = elem.val.string.len;
		}
		else if (tok == WJB_VALUE)
		{
			char	   *sub = jsc_path_join(path, current->name, current->name_len);

			if (patterns)
				current->pattern = compile_pattern(st, current->name, current->name_len, sub);
			if (dependencies && jsc_is_array(&elem))
				current->names = string_set(&elem, sub, &current->nnames);
			else if (dependencies && !jsc_is_object(&elem))
				jsc_schema_error(sub, "a dependency must be a schema or an array of property names");
			else
				current->node = subschema(st, &elem, base, sub);
		}
	}
	return named;
}

static void
compile_type(JsonSchemaNode *node, JsonbValue *v, const char *path)
{
	if (jsc_is_array(v))
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	elem;
		JsonbIteratorToken tok;
		int			i = 0;

		if (JsonContainerSize(v->val.binary.data) == 0)
			jsc_schema_error(path, "\"type\" must not be an empty array");
		while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
			if (tok == WJB_ELEM)
			{
				char	   *ipath = path_index(path, i++);
				int			bit = type_bit(&elem, ipath);

				if ((node->types & bit) == bit && bit != JST_INTEGER)
					jsc_schema_error(ipath, "\"type\" names a type twice");
				node->types |= bit;
			}
	}
	else
		node->types = type_bit(v, path);
	/* "number" admits integers: only a bare "integer" needs the test */
	node->check_integer = (node->types & JST_INTEGER) && !(node->types & JST_NUMBER);
}

static void
compile_enum(JsonSchemaNode *node, JsonbValue *v, const char *path)
{
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;

	if (!jsc_is_array(v) || JsonContainerSize(v->val.binary.data) == 0)
		jsc_schema_error(path, "\"enum\" must be a non-empty array");
	node->enum_values = palloc(sizeof(Jsonb *) * JsonContainerSize(v->val.binary.data));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
		if (tok == WJB_ELEM)
		{
			CHECK_FOR_INTERRUPTS();
			node->enum_values[node->nenum++] = json_value_to_jsonb(&elem);
		}
}

/* the keywords that apply to strings and numbers */
static void
compile_scalar_keywords(CompileState *st, JsonSchemaNode *node, JsonbContainer *schema,
						const char *path)
{
	JsonbValue *v;

	node->multiple_of = number_value(schema, "multipleOf", path);
	if (node->multiple_of != NULL &&
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(node->multiple_of),
										  NumericGetDatum(int64_to_numeric(0)))) <= 0)
		jsc_schema_error(jsc_path_join(path, "multipleOf", 10), "\"multipleOf\" must be greater than 0");
	node->maximum = number_value(schema, "maximum", path);
	node->exclusive_maximum = bool_value(schema, "exclusiveMaximum", path);
	if (node->exclusive_maximum && node->maximum == NULL)
		jsc_schema_error(jsc_path_join(path, "exclusiveMaximum", 16), "\"exclusiveMaximum\" requires \"maximum\"");
	node->minimum = number_value(schema, "minimum", path);
	node->exclusive_minimum = bool_value(schema, "exclusiveMinimum", path);
	if (node->exclusive_minimum && node->minimum == NULL)
		jsc_schema_error(jsc_path_join(path, "exclusiveMinimum", 16), "\"exclusiveMinimum\" requires \"minimum\"");

	node->max_length = limit_value(schema, "maxLength", path);
	node->min_length = limit_value(schema, "minLength", path);
	v = jsc_keyword(schema, "pattern");
	if (v != NULL)
	{
		if (v->type != jbvString)
			jsc_schema_error(jsc_path_join(path, "pattern", 7), "\"pattern\" must be a string");
		node->pattern = compile_pattern(st, v->val.string.val, v->val.string.len,
										jsc_path_join(path, "pattern", 7));
		node->pattern_source = pnstrdup(v->val.string.val, v->val.string.len);
	}
	v = jsc_keyword(schema, "format");
	if (v != NULL)
	{
		if (v->type != jbvString)
			jsc_schema_error(jsc_path_join(path, "format", 6), "\"format\" must be a string");
		node->format = json_schema_format_by_name(v->val.string.val, v->val.string.len);
		node->format_name = pnstrdup(v->val.string.val, v->val.string.len);
	}
}

static void
compile_array_keywords(CompileState *st, JsonSchemaNode *node, JsonbContainer *schema,
					   const char *base, const char *path)
{
	JsonbValue *v;

	v = jsc_keyword(schema, "items");
	if (v != NULL)
	{
		char	   *sub = jsc_path_join(path, "items", 5);

		if (jsc_is_array(v))
		{
			node->items_is_list = true;
			if (JsonContainerSize(v->val.binary.data) > 0)
				schema_list(st, v, base, sub, &node->items_list);
		}
		else
			node->items = subschema(st, v, base, sub);
	}
	v = jsc_keyword(schema, "additionalItems");
	if (v != NULL && v->type == jbvBool)
		node->additional_items_allowed = v->val.boolean;
	else if (v != NULL)
		node->additional_items = subschema(st, v, base, jsc_path_join(path, "additionalItems", 15));
	node->max_items = limit_value(schema, "maxItems", path);
	node->min_items = limit_value(schema, "minItems", path);
	node->unique_items = bool_value(schema, "uniqueItems", path);
	node->has_array_keywords = node->items || node->items_is_list ||
		node->max_items >= 0 || node->min_items >= 0 || node->unique_items;
}

static void
compile_object_keywords(CompileState *st, JsonSchemaNode *node, JsonbContainer *schema,
						const char *base, const char *path)
{
	JsonbValue *v;
	int			ndefinitions;

	node->max_properties = limit_value(schema, "maxProperties", path);
	node->min_properties = limit_value(schema, "minProperties", path);
	if ((v = jsc_keyword(schema, "required")) != NULL)
		node->required = string_set(v, jsc_path_join(path, "required", 8), &node->nrequired);
	if ((v = jsc_keyword(schema, "properties")) != NULL)
		node->properties = schema_map(st, v, base, jsc_path_join(path, "properties", 10),
									  &node->nproperties, false, false);
	if ((v = jsc_keyword(schema, "patternProperties")) != NULL)
		node->pattern_properties = schema_map(st, v, base,
											  jsc_path_join(path, "patternProperties", 17),
											  &node->npattern_properties, true, false);
	if ((v = jsc_keyword(schema, "dependencies")) != NULL)
		node->dependencies = schema_map(st, v, base, jsc_path_join(path, "dependencies", 12),
										&node->ndependencies, false, true);
	v = jsc_keyword(schema, "additionalProperties");
	if (v != NULL && v->type == jbvBool)
		node->additional_properties_allowed = v->val.boolean;
	else if (v != NULL)
		node->additional_properties = subschema(st, v, base,
												jsc_path_join(path, "additionalProperties", 20));
	/* compiled for their errors; reached through "$ref" */
	if ((v = jsc_keyword(schema, "definitions")) != NULL)
		schema_map(st, v, base, jsc_path_join(path, "definitions", 11), &ndefinitions, false, false);

	node->has_object_keywords = node->max_properties >= 0 || node->min_properties >= 0 ||
		node->nrequired > 0 || node->nproperties > 0 || node->npattern_properties > 0 ||
		node->ndependencies > 0 || !node->additional_properties_allowed ||
		node->additional_properties != NULL;
}

JsonSchemaNode *
jsc_compile_node(CompileState *st, JsonbContainer *schema, const char *base, const char *path)
{
	JsonSchemaNode *node;
	NodeEntry  *entry;
	bool		found;
	JsonbValue *v;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	if (!JsonContainerIsObject(schema))
		jsc_schema_error(path, "a schema must be a JSON object");

	entry = hash_search(st->nodes, &schema, HASH_ENTER, &found);
	if (found)
		return entry->node;
	node = palloc0(sizeof(JsonSchemaNode));
	entry->node = node;
	node->max_length = node->min_length = node->max_items = node->min_items = -1;
	node->max_properties = node->min_properties = -1;
	node->additional_items_allowed = node->additional_properties_allowed = true;

	v = jsc_keyword(schema, "id");
	if (v != NULL && v->type != jbvString)
		jsc_schema_error(jsc_path_join(path, "id", 2), "\"id\" must be a string");
	if (v != NULL)
		base = jsc_uri_normalize(jsc_uri_resolve(base, pnstrdup(v->val.string.val, v->val.string.len)));

	/* draft-04: "$ref" replaces the whole schema it appears in */
	v = jsc_keyword(schema, "$ref");
	if (v != NULL)
	{
		if (v->type != jbvString)
			jsc_schema_error(jsc_path_join(path, "$ref", 4), "\"$ref\" must be a string");
		node->ref = jsc_resolve_ref(st, pnstrdup(v->val.string.val, v->val.string.len),
								base, jsc_path_join(path, "$ref", 4));
		return node;
	}

	if ((v = jsc_keyword(schema, "type")) != NULL)
		compile_type(node, v, jsc_path_join(path, "type", 4));
	if ((v = jsc_keyword(schema, "enum")) != NULL)
		compile_enum(node, v, jsc_path_join(path, "enum", 4));
	compile_scalar_keywords(st, node, schema, path);
	compile_array_keywords(st, node, schema, base, path);
	compile_object_keywords(st, node, schema, base, path);

	if ((v = jsc_keyword(schema, "allOf")) != NULL)
		schema_list(st, v, base, jsc_path_join(path, "allOf", 5), &node->all_of);
	if ((v = jsc_keyword(schema, "anyOf")) != NULL)
		schema_list(st, v, base, jsc_path_join(path, "anyOf", 5), &node->any_of);
	if ((v = jsc_keyword(schema, "oneOf")) != NULL)
		schema_list(st, v, base, jsc_path_join(path, "oneOf", 5), &node->one_of);
	if ((v = jsc_keyword(schema, "not")) != NULL)
		node->not_schema = subschema(st, v, base, jsc_path_join(path, "not", 3));
	return node;
}

/*
 * A schema that reaches itself again through keywords applied to the same
 * value ($ref, allOf, anyOf, oneOf, not, schema dependencies), without
 * descending into a property or an item, would recurse forever: refuse it.
 */
static void
check_cycles(JsonSchemaNode *node)
{
	JsonSchemaList *lists[] = {&node->all_of, &node->any_of, &node->one_of};

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	if (node->mark == 2)
		return;
	if (node->mark == 1)
		jsc_schema_error("#", "a schema refers to itself through $ref, allOf, anyOf, oneOf, not or dependencies without applying to a property or item in between");
	node->mark = 1;
	if (node->ref)
		check_cycles(node->ref);
	for (int i = 0; i < lengthof(lists); i++)
		for (int j = 0; j < lists[i]->count; j++)
			check_cycles(lists[i]->nodes[j]);
	if (node->not_schema)
		check_cycles(node->not_schema);
	for (int i = 0; i < node->ndependencies; i++)
		if (node->dependencies[i].node)
			check_cycles(node->dependencies[i].node);
	node->mark = 2;
}

/*
 * Compile a schema into a new memory context under parent (the caller
 * frees it with json_schema_free, or with its parent).
 */
JsonSchema *
json_schema_compile(Jsonb *schema, MemoryContext parent, const char *context_name)
{
	MemoryContext context = AllocSetContextCreate(parent, "json schema",
												  ALLOCSET_SMALL_SIZES);
	MemoryContext old;
	JsonSchema *result;
	CompileState st = {0};
	HASHCTL		ctl = {0};
	char	   *base = "";

	/* context_name must outlive the context: callers pass literals */
	MemoryContextSetIdentifier(context, context_name);
	old = MemoryContextSwitchTo(context);
	result = palloc0(sizeof(JsonSchema));
	PG_TRY();
	{
		result->context = context;
		result->document = palloc(VARSIZE(schema));
		memcpy(result->document, schema, VARSIZE(schema));

		st.schema = result;
		ctl.keysize = sizeof(JsonbContainer *);
		ctl.entrysize = sizeof(NodeEntry);
		ctl.hcxt = context;
		st.nodes = hash_create("json schema nodes", 64, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

		if (!JB_ROOT_IS_OBJECT(result->document) || JB_ROOT_IS_SCALAR(result->document))
			jsc_schema_error("#", "a schema must be a JSON object");
		jsc_uri_init(&st);
		jsc_uri_register(&st, "", &result->document->root, "");
		jsc_register_ids(&st, &result->document->root, base);
		result->root = jsc_compile_node(&st, &result->document->root, base, "#");
		{
			HASH_SEQ_STATUS seq;
			NodeEntry  *e;

			hash_seq_init(&seq, st.nodes);
			while ((e = hash_seq_search(&seq)) != NULL)
				check_cycles(e->node);
		}
		result->static_cost = json_schema_unfolded_cost(result->root);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(context);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	return result;
}

void
json_schema_free(JsonSchema *schema)
{
	if (schema != NULL)
		MemoryContextDelete(schema->context);
}
