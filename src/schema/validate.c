/*-------------------------------------------------------------------------
 * validate.c
 *	  Applying a compiled JSON Schema draft-04 tree to a jsonb document:
 *	  every validation keyword, with problems collected as (path, keyword,
 *	  message).  Numbers are compared exactly with PostgreSQL's numeric,
 *	  lengths count characters, enum and uniqueItems use JSON equality
 *	  (1 equals 1.0), pattern uses PostgreSQL's regex engine.
 *
 *	  Inside anyOf, oneOf and not a subschema is only asked whether it
 *	  matches: it runs "quiet" (no result) and stops at the first problem.
 *	  Paths are kept as a chain of stack frames and turned into text only
 *	  when a problem is reported, so a valid document allocates little.
 *
 *	  Work is bounded (budget.c): every application of a node, and every
 *	  element a keyword examines, is charged to the document's budget
 *	  (payment.max_validation_steps), and interrupts are checked at each
 *	  application and in every loop over a document's elements.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"

#include "common/json_util.h"
#include "schema/validate_internal.h"

/* where in the document: a property name, or an array index */
typedef struct PathStep
{
	const struct PathStep *parent;
	const char *key;			/* NULL: index */
	int			keylen;
	int			index;
} PathStep;

static bool validate_value(JsonSchemaNode *node, JsonbValue *value,
						   const PathStep *path, JsonSchemaResult *res);

static char *
path_text(const PathStep *step)
{
	char	   *parent;

	if (step == NULL)
		return pstrdup("$");
	check_stack_depth();
	parent = path_text(step->parent);
	if (step->key != NULL)
		return json_schema_child_path(parent, step->key, step->keylen);
	return psprintf("%s[%d]", parent, step->index);
}

/* report a problem (when collecting) and say the value is invalid */
#define FAIL_AT(step, kw, ...) \
	do { \
		valid = false; \
		if (res == NULL) \
			return false; \
		if (res->count < res->max_errors) \
			json_schema_add_error(res, path_text(step), kw, __VA_ARGS__); \
		else \
			res->count++; \
	} while (0)
#define FAIL(kw, ...) FAIL_AT(path, kw, __VA_ARGS__)

bool
json_number_is_integer(Numeric n)
{
	Datum		d = NumericGetDatum(n);

	if (DatumGetInt32(DirectFunctionCall1(numeric_scale, d)) == 0)
		return true;
	return DatumGetBool(DirectFunctionCall2(numeric_eq, d,
											DirectFunctionCall1(numeric_floor, d)));
}

static int
value_type(JsonbValue *v, bool need_integer)
{
	switch (v->type)
	{
		case jbvString:
			return JST_STRING;
		case jbvNumeric:
			if (need_integer && json_number_is_integer(v->val.numeric))
				return JST_NUMBER | JST_INTEGER;
			return JST_NUMBER;
		case jbvBool:
			return JST_BOOLEAN;
		case jbvNull:
			return JST_NULL;
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ? JST_OBJECT : JST_ARRAY;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
	return 0;
}

/* "string", "string or null", ...; "number" covers "integer" */
static char *
type_names(int types)
{
	static const struct
	{
		int			bit;
		const char *name;
	}			names[] =
	{
		{JST_STRING, "string"}, {JST_NUMBER, "number"}, {JST_INTEGER, "integer"},
		{JST_OBJECT, "object"}, {JST_ARRAY, "array"}, {JST_BOOLEAN, "boolean"},
		{JST_NULL, "null"},
	};
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < lengthof(names); i++)
	{
		if (!(types & names[i].bit))
			continue;
		if (names[i].bit == JST_INTEGER && (types & JST_NUMBER))
			continue;
		if (buf.len > 0)
			appendStringInfoString(&buf, " or ");
		appendStringInfoString(&buf, names[i].name);
	}
	return buf.data;
}

static char *
numeric_text(Numeric n)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));
}

static int
numeric_compare(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a),
											 NumericGetDatum(b)));
}

static bool
validate_number(JsonSchemaNode *node, Numeric n, const PathStep *path,
				JsonSchemaResult *res)
{
	bool		valid = true;

	if (node->multiple_of != NULL)
	{
		Numeric		rest;

		/* long division: the product of the two lengths (2 bytes a word) */
		jsv_spend((int64) (VARSIZE(n) / 2) * (VARSIZE(node->multiple_of) / 2) / 16);
		rest = DatumGetNumeric(DirectFunctionCall2(numeric_mod, NumericGetDatum(n),
												   NumericGetDatum(node->multiple_of)));

		if (numeric_compare(rest, int64_to_numeric(0)) != 0)
			FAIL("multipleOf", "not a multiple of %s", numeric_text(node->multiple_of));
	}
	if (node->maximum != NULL)
	{
		int			cmp = numeric_compare(n, node->maximum);

		if (cmp > 0 || (cmp == 0 && node->exclusive_maximum))
			FAIL("maximum", node->exclusive_maximum ?
				 "not less than the exclusive maximum %s" : "greater than the maximum %s",
				 numeric_text(node->maximum));
	}
	if (node->minimum != NULL)
	{
		int			cmp = numeric_compare(n, node->minimum);

		if (cmp < 0 || (cmp == 0 && node->exclusive_minimum))
			FAIL("minimum", node->exclusive_minimum ?
				 "not greater than the exclusive minimum %s" : "less than the minimum %s",
				 numeric_text(node->minimum));
	}
	return valid;
}

/*
 * maxLength/minLength, maxItems/minItems, maxProperties/minProperties: a
 * count against its bounds (-1: none), "<more|fewer> than <n> <unit>".
 */
static bool
count_within(int count, int max, int min, const char *max_keyword, const char *min_keyword,
			 const char *more, const char *fewer, const char *unit,
			 const PathStep *path, JsonSchemaResult *res)
{
	bool		valid = true;

	if (max >= 0 && count > max)
		FAIL(max_keyword, "%s than %d %s", more, max, unit);
	if (min >= 0 && count < min)
		FAIL(min_keyword, "%s than %d %s", fewer, min, unit);
	return valid;
}

static bool
validate_string(JsonSchemaNode *node, const char *s, int len, const PathStep *path,
				JsonSchemaResult *res)
{
	bool		valid = true;

	if (node->max_length >= 0 || node->min_length >= 0)
	{
		int			chars;

		jsv_spend(len / JSV_TEXT_BYTES_PER_STEP);
		chars = pg_mbstrlen_with_len(s, len);

		valid = count_within(chars, node->max_length, node->min_length, "maxLength", "minLength",
							 "longer", "shorter", "characters", path, res);
		if (!valid && res == NULL)
			return false;
	}
	if (node->pattern != NULL)
	{
		jsv_spend(len / JSV_REGEX_BYTES_PER_STEP);
		if (!json_schema_regex_match(node->pattern, s, len))
			FAIL("pattern", "does not match the pattern \"%s\"", node->pattern_source);
	}
	if (node->format != JSF_NONE)
	{
		jsv_spend(len / JSV_TEXT_BYTES_PER_STEP);
		if (!json_schema_check_format(node->format, s, len))
			FAIL("format", "not a valid %s", node->format_name);
	}
	return valid;
}

static JsonSchemaNamed *
find_property(JsonSchemaNode *node, const char *name, int len)
{
	int			lo = 0,
				hi = node->nproperties - 1;

	/* the order jsonb keeps keys in: by length, then bytes */
	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		JsonSchemaNamed *p = &node->properties[mid];
		int			cmp = (p->name_len != len) ? (p->name_len > len ? 1 : -1) :
			memcmp(p->name, name, len);

		if (cmp == 0)
			return p;
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

static bool
validate_object(JsonSchemaNode *node, JsonbValue *value, const PathStep *path,
				JsonSchemaResult *res)
{
	JsonbContainer *obj = value->val.binary.data;
	int			size = JsonContainerSize(obj);
	bool		valid = count_within(size, node->max_properties, node->min_properties,
									 "maxProperties", "minProperties", "more", "fewer",
									 "properties", path, res);

	if (!valid && res == NULL)
		return false;

	jsv_spend(node->nrequired);
	for (int i = 0; i < node->nrequired; i++)
		if (json_find_member(obj, node->required[i], strlen(node->required[i])) == NULL)
		{
			PathStep	child = {path, node->required[i], strlen(node->required[i]), 0};

			FAIL_AT(&child, "required", "required property missing");
		}

	if (node->nproperties > 0 || node->npattern_properties > 0 ||
		!node->additional_properties_allowed || node->additional_properties != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(obj);
		JsonbValue	key;
		JsonbValue	v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &key, true)) != WJB_DONE)
		{
			PathStep	child;
			JsonSchemaNamed *prop;
			bool		matched;

			if (tok != WJB_KEY)
				continue;
			CHECK_FOR_INTERRUPTS();
			jsv_spend(1);
			JsonbIteratorNext(&it, &v, true);
			child.parent = path;
			child.key = key.val.string.val;
			child.keylen = key.val.string.len;
			child.index = 0;

			prop = find_property(node, key.val.string.val, key.val.string.len);
			matched = (prop != NULL);
			if (prop != NULL && !validate_value(prop->node, &v, &child, res))
			{
				valid = false;
				if (res == NULL)
					return false;
			}
			for (int i = 0; i < node->npattern_properties; i++)
			{
				JsonSchemaNamed *pp = &node->pattern_properties[i];

				jsv_spend(1 + key.val.string.len / JSV_REGEX_BYTES_PER_STEP);
				if (!json_schema_regex_match(pp->pattern, key.val.string.val,
											 key.val.string.len))
					continue;
				matched = true;
				if (!validate_value(pp->node, &v, &child, res))
				{
					valid = false;
					if (res == NULL)
						return false;
				}
			}
			if (matched)
				continue;
			if (!node->additional_properties_allowed)
				FAIL_AT(&child, "additionalProperties", "additional property not allowed");
			else if (node->additional_properties != NULL &&
					 !validate_value(node->additional_properties, &v, &child, res))
			{
				valid = false;
				if (res == NULL)
					return false;
			}
		}
	}

	for (int i = 0; i < node->ndependencies; i++)
	{
		JsonSchemaNamed *dep = &node->dependencies[i];

		CHECK_FOR_INTERRUPTS();
		jsv_spend(1);
		if (json_find_member(obj, dep->name, dep->name_len) == NULL)
			continue;
		jsv_spend(dep->nnames);
		if (dep->node != NULL)
		{
			if (!validate_value(dep->node, value, path, res))
			{
				valid = false;
				if (res == NULL)
					return false;
			}
			continue;
		}
		for (int j = 0; j < dep->nnames; j++)
			if (json_find_member(obj, dep->names[j], strlen(dep->names[j])) == NULL)
				FAIL("dependencies", "property \"%s\" requires property \"%s\"",
					 dep->name, dep->names[j]);
	}
	return valid;
}

static bool
validate_array(JsonSchemaNode *node, JsonbValue *value, const PathStep *path,
			   JsonSchemaResult *res)
{
	JsonbContainer *arr = value->val.binary.data;
	int			size = JsonContainerSize(arr);
	bool		valid = count_within(size, node->max_items, node->min_items,
									 "maxItems", "minItems", "more", "fewer", "items", path, res);
	JsonbValue *elems = NULL;	/* uniqueItems: every item */

	if (!valid && res == NULL)
		return false;

	if (node->unique_items)
		elems = palloc(sizeof(JsonbValue) * Max(size, 1));
	if (node->items != NULL || node->items_is_list || node->unique_items)
	{
		JsonbIterator *it = JsonbIteratorInit(arr);
		JsonbValue	v;
		JsonbIteratorToken tok;
		int			i = 0;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			PathStep	child = {path, NULL, 0, i};
			JsonSchemaNode *sub = NULL;

			if (tok != WJB_ELEM)
				continue;
			CHECK_FOR_INTERRUPTS();
			jsv_spend(1);
			if (elems)
				elems[i] = v;
			if (node->items != NULL)
				sub = node->items;
			else if (node->items_is_list && i < node->items_list.count)
				sub = node->items_list.nodes[i];
			else if (node->items_is_list && !node->additional_items_allowed)
				FAIL_AT(&child, "additionalItems", "additional item not allowed");
			else if (node->items_is_list)
				sub = node->additional_items;
			if (sub != NULL && !validate_value(sub, &v, &child, res))
			{
				valid = false;
				if (res == NULL)
					return false;
			}
			i++;
		}
	}
	if (node->unique_items && size > 1)
	{
		int			first,
					second;

		if (json_find_equal_items(elems, size, &first, &second))
			FAIL("uniqueItems", "items %d and %d are equal", first, second);
	}
	return valid;
}

static bool
validate_value(JsonSchemaNode *node, JsonbValue *value, const PathStep *path,
			   JsonSchemaResult *res)
{
	bool		valid = true;
	int			actual;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	jsv_spend(1);
	/* numeric arithmetic and comparison read the whole number */
	if (value->type == jbvNumeric)
		jsv_spend(VARSIZE(value->val.numeric) / JSV_NUMBER_BYTES_PER_STEP);
	while (node->ref != NULL)
		node = node->ref;

	actual = value_type(value, node->check_integer);
	if (node->types != 0 && (node->types & actual) == 0)
	{
		/* the other keywords say little about a value of the wrong type */
		FAIL("type", "expected %s, got %s", type_names(node->types),
			 type_names(actual & ~JST_INTEGER));
		return false;
	}

	if (node->nenum > 0)
	{
		bool		found = false;

		for (int i = 0; i < node->nenum && !found; i++)
		{
			jsv_spend(1 + Min(json_value_size(value), VARSIZE(node->enum_values[i])) /
					  JSV_COMPARE_BYTES_PER_STEP);
			found = json_value_equals_jsonb(value, node->enum_values[i]);
		}
		if (!found)
			FAIL("enum", "not one of the enum values");
	}

	switch (actual & ~JST_INTEGER)
	{
		case JST_NUMBER:
			if (!validate_number(node, value->val.numeric, path, res))
				valid = false;
			break;
		case JST_STRING:
			if (!validate_string(node, value->val.string.val, value->val.string.len,
								 path, res))
				valid = false;
			break;
		case JST_OBJECT:
			if (node->has_object_keywords && !validate_object(node, value, path, res))
				valid = false;
			break;
		case JST_ARRAY:
			if (node->has_array_keywords && !validate_array(node, value, path, res))
				valid = false;
			break;
	}
	if (!valid && res == NULL)
		return false;

	for (int i = 0; i < node->all_of.count; i++)
		if (!validate_value(node->all_of.nodes[i], value, path, res))
		{
			valid = false;
			if (res == NULL)
				return false;
		}
	if (node->any_of.count > 0)
	{
		bool		any = false;

		for (int i = 0; i < node->any_of.count && !any; i++)
			any = validate_value(node->any_of.nodes[i], value, path, NULL);
		if (!any)
			FAIL("anyOf", "matches none of the schemas in anyOf");
	}
	if (node->one_of.count > 0)
	{
		int			matches = 0;

		for (int i = 0; i < node->one_of.count && matches < 2; i++)
			if (validate_value(node->one_of.nodes[i], value, path, NULL))
				matches++;
		if (matches == 0)
			FAIL("oneOf", "matches none of the schemas in oneOf");
		else if (matches > 1)
			FAIL("oneOf", "matches more than one of the schemas in oneOf");
	}
	if (node->not_schema != NULL &&
		validate_value(node->not_schema, value, path, NULL))
		FAIL("not", "matches the schema in not");
	return valid;
}

/*
 * Validate a document.  With result NULL, stops at the first problem;
 * otherwise result (max_errors set by the caller) collects problems.
 */
bool
json_schema_validate(JsonSchema *schema, Jsonb *document, JsonSchemaResult *result)
{
	JsonbValue	root;

	json_schema_budget_start();
	if (JB_ROOT_IS_SCALAR(document))
		JsonbExtractScalar(&document->root, &root);
	else
	{
		root.type = jbvBinary;
		root.val.binary.data = &document->root;
		root.val.binary.len = VARSIZE(document) - VARHDRSZ;
	}
	return validate_value(schema->root, &root, NULL, result);
}
