/*-------------------------------------------------------------------------
 * compile.c
 *	  Compiling a JSON Schema draft-04 document (jsonb) into a tree of
 *	  JsonSchemaNode: every keyword is checked against what the draft-04
 *	  meta-schema allows, and a mistake is raised as 22023 naming its schema
 *	  path ("#/properties/amount/type"), never as an internal error.
 *
 *	  "$ref" is resolved here, once: JSON pointers within the document,
 *	  "id"-based base URIs and location-independent ids ("#foo"), recursive
 *	  references (a node is registered before its keywords are compiled, so
 *	  a reference back to it finds it), and the bundled draft-04
 *	  meta-schema.  Remote documents are not fetched.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation_d.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "regex/regex.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "schema/json_schema.h"

/* a document (or an "id"-identified part of one) that "$ref" can name */
typedef struct UriEntry
{
	char	   *uri;			/* absolute or relative, without empty "#" */
	JsonbContainer *container;
	char	   *base;
} UriEntry;

typedef struct NodeEntry
{
	JsonbContainer *key;
	JsonSchemaNode *node;
} NodeEntry;

typedef struct CompileState
{
	List	   *uris;			/* UriEntry */
	HTAB	   *nodes;			/* container -> node: each compiled once */
	bool		meta_loaded;
} CompileState;

static JsonSchemaNode *compile_node(CompileState *st, JsonbContainer *schema,
									const char *base, const char *path);

static void
schema_error(const char *path, const char *fmt,...) pg_attribute_printf(2, 3);

static void
schema_error(const char *path, const char *fmt,...)
{
	StringInfoData buf;
	va_list		args;

	initStringInfo(&buf);
	for (;;)
	{
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&buf, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid JSON schema"),
			 errdetail("%s: %s", path, buf.data),
			 errhint("The schema must be valid JSON Schema draft-04.")));
}

/* path + "/" + token, with JSON pointer escaping */
static char *
path_join(const char *path, const char *token, int len)
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

static JsonbValue *
keyword(JsonbContainer *schema, const char *name)
{
	JsonbValue	key;

	key.type = jbvString;
	key.val.string.val = (char *) name;
	key.val.string.len = strlen(name);
	return findJsonbValueFromContainer(schema, JB_FOBJECT, &key);
}

static bool
is_object(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

static bool
is_array(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

/* ---- URIs (RFC 3986 reference resolution, as much as ids need) ---- */

static int
scheme_length(const char *s)
{
	int			i = 0;

	if (!isalpha((unsigned char) s[0]))
		return 0;
	while (isalnum((unsigned char) s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.')
		i++;
	return s[i] == ':' ? i : 0;
}

/* remove "." and ".." segments from a path */
static char *
remove_dot_segments(const char *path)
{
	char	   *out = palloc(strlen(path) + 1);
	int			o = 0;
	const char *p = path;

	while (*p)
	{
		if (strncmp(p, "./", 2) == 0)
			p += 2;
		else if (strncmp(p, "../", 3) == 0)
			p += 3;
		else if (strncmp(p, "/./", 3) == 0)
			p += 2;
		else if (strcmp(p, "/.") == 0)
			p = "/";
		else if (strncmp(p, "/../", 4) == 0 || strcmp(p, "/..") == 0)
		{
			p = (p[3] == '/') ? p + 3 : "/";
			while (o > 0 && out[--o] != '/')
				;
		}
		else
		{
			do
				out[o++] = *p++;
			while (*p && *p != '/');
		}
	}
	out[o] = '\0';
	return out;
}

static char *
uri_resolve(const char *base, const char *ref)
{
	int			blen = scheme_length(base);
	const char *bauth_end;
	const char *bq;
	char	   *bnofrag;

	if (scheme_length(ref) > 0)
		return pstrdup(ref);
	bnofrag = pnstrdup(base, strcspn(base, "#"));
	if (ref[0] == '#')
		return psprintf("%s%s", bnofrag, ref);
	if (ref[0] == '\0')
		return bnofrag;
	if (ref[0] == '/' && ref[1] == '/')
		return psprintf("%.*s%s", blen ? blen + 1 : 0, bnofrag, ref);

	/* authority of the base: after "scheme://", up to the next "/" */
	bauth_end = bnofrag + (blen ? blen + 1 : 0);
	if (bauth_end[0] == '/' && bauth_end[1] == '/')
		bauth_end += 2 + strcspn(bauth_end + 2, "/?");
	if (ref[0] == '/')
		return psprintf("%.*s%s", (int) (bauth_end - bnofrag), bnofrag,
						remove_dot_segments(ref));

	/* merge: the base's path up to its last "/", then the reference */
	bq = bnofrag + strcspn(bnofrag, "?");
	{
		const char *last = bq;

		while (last > bauth_end && last[-1] != '/')
			last--;
		if (last == bauth_end && bauth_end > bnofrag + blen + 1 && *bauth_end != '/')
			return psprintf("%s/%s", pnstrdup(bnofrag, bauth_end - bnofrag),
							remove_dot_segments(ref));
		return psprintf("%.*s%s", (int) (bauth_end - bnofrag), bnofrag,
						remove_dot_segments(psprintf("%.*s%s",
													 (int) (last - bauth_end),
													 bauth_end, ref)));
	}
}

/* "http://x/y#" and "http://x/y" name the same document */
static char *
uri_normalize(char *uri)
{
	int			len = strlen(uri);

	if (len > 0 && uri[len - 1] == '#')
		uri[len - 1] = '\0';
	return uri;
}

static UriEntry *
uri_find(CompileState *st, const char *uri)
{
	ListCell   *lc;

	foreach(lc, st->uris)
	{
		UriEntry   *e = lfirst(lc);

		if (strcmp(e->uri, uri) == 0)
			return e;
	}
	return NULL;
}

static void
uri_register(CompileState *st, char *uri, JsonbContainer *container, const char *base)
{
	UriEntry   *e;

	if (uri_find(st, uri) != NULL)
		return;
	e = palloc(sizeof(UriEntry));
	e->uri = uri;
	e->container = container;
	e->base = pstrdup(base);
	st->uris = lappend(st->uris, e);
}

/* Record every subschema's "id", walking only where schemas can be. */
static void
register_ids(CompileState *st, JsonbContainer *schema, const char *base)
{
	static const char *const schema_maps[] = {"properties", "patternProperties",
	"definitions", "dependencies"};
	static const char *const schema_lists[] = {"allOf", "anyOf", "oneOf", "items"};
	static const char *const single[] = {"items", "additionalItems",
	"additionalProperties", "not"};
	JsonbValue *v;

	check_stack_depth();
	if (!JsonContainerIsObject(schema))
		return;
	v = keyword(schema, "id");
	if (v != NULL && v->type == jbvString)
	{
		char	   *id = pnstrdup(v->val.string.val, v->val.string.len);

		base = uri_normalize(uri_resolve(base, id));
		uri_register(st, pstrdup(base), schema, base);
	}
	for (int i = 0; i < lengthof(schema_maps); i++)
	{
		JsonbIterator *it;
		JsonbValue	elem;
		JsonbIteratorToken tok;

		v = keyword(schema, schema_maps[i]);
		if (v == NULL || !is_object(v))
			continue;
		it = JsonbIteratorInit(v->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
			if (tok == WJB_VALUE && is_object(&elem))
				register_ids(st, elem.val.binary.data, base);
	}
	for (int i = 0; i < lengthof(schema_lists); i++)
	{
		JsonbIterator *it;
		JsonbValue	elem;
		JsonbIteratorToken tok;

		v = keyword(schema, schema_lists[i]);
		if (v == NULL || !is_array(v))
			continue;
		it = JsonbIteratorInit(v->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
			if (tok == WJB_ELEM && is_object(&elem))
				register_ids(st, elem.val.binary.data, base);
	}
	for (int i = 0; i < lengthof(single); i++)
	{
		v = keyword(schema, single[i]);
		if (v != NULL && is_object(v))
			register_ids(st, v->val.binary.data, base);
	}
}

static void
load_meta_schema(CompileState *st)
{
	Jsonb	   *meta;

	if (st->meta_loaded)
		return;
	st->meta_loaded = true;
	meta = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
											  CStringGetDatum(json_schema_draft04_meta)));
	register_ids(st, &meta->root, "");
}

static char *
percent_decode(const char *s)
{
	char	   *out = palloc(strlen(s) + 1);
	int			o = 0;

	for (int i = 0; s[i]; i++)
	{
		if (s[i] == '%' && isxdigit((unsigned char) s[i + 1]) &&
			isxdigit((unsigned char) s[i + 2]))
		{
			char		hex[3] = {s[i + 1], s[i + 2], '\0'};

			out[o++] = (char) strtol(hex, NULL, 16);
			i += 2;
		}
		else
			out[o++] = s[i];
	}
	out[o] = '\0';
	return out;
}

/* Follow a JSON pointer ("/a/b~1c/0") from a container; NULL if it leads nowhere. */
static JsonbContainer *
pointer_walk(JsonbContainer *c, const char *pointer, char **base)
{
	const char *p = pointer;

	while (*p == '/')
	{
		const char *end = p + 1 + strcspn(p + 1, "/");
		StringInfoData token;
		JsonbValue *v;

		CHECK_FOR_INTERRUPTS();
		initStringInfo(&token);
		for (const char *t = p + 1; t < end; t++)
		{
			if (t[0] == '~' && t[1] == '1')
				appendStringInfoChar(&token, '/'), t++;
			else if (t[0] == '~' && t[1] == '0')
				appendStringInfoChar(&token, '~'), t++;
			else
				appendStringInfoChar(&token, *t);
		}
		if (JsonContainerIsObject(c))
		{
			JsonbValue	key;

			key.type = jbvString;
			key.val.string.val = token.data;
			key.val.string.len = token.len;
			v = findJsonbValueFromContainer(c, JB_FOBJECT, &key);
		}
		else
		{
			char	   *endptr;
			long		index = strtol(token.data, &endptr, 10);

			if (token.len == 0 || *endptr != '\0' || index < 0 ||
				index >= JsonContainerSize(c))
				return NULL;
			v = getIthJsonbValueFromContainer(c, (uint32) index);
		}
		if (v == NULL || v->type != jbvBinary)
			return NULL;
		c = v->val.binary.data;
		if (JsonContainerIsObject(c))
		{
			JsonbValue *id = keyword(c, "id");

			if (id != NULL && id->type == jbvString)
				*base = uri_normalize(uri_resolve(*base,
												  pnstrdup(id->val.string.val,
														   id->val.string.len)));
		}
		p = end;
	}
	return c;
}

static JsonSchemaNode *
resolve_ref(CompileState *st, const char *ref, const char *base, const char *path)
{
	char	   *uri = uri_resolve(base, ref);
	char	   *hash = strchr(uri, '#');
	char	   *fragment = hash ? percent_decode(hash + 1) : "";
	char	   *document = hash ? pnstrdup(uri, hash - uri) : uri;
	UriEntry   *e;
	JsonbContainer *target = NULL;
	char	   *target_base;

	if (fragment[0] == '\0' || fragment[0] == '/')
	{
		e = uri_find(st, document);
		if (e == NULL && strcmp(document, json_schema_draft04_uri) == 0)
		{
			load_meta_schema(st);
			e = uri_find(st, document);
		}
		if (e != NULL)
		{
			target_base = pstrdup(e->base);
			target = pointer_walk(e->container, fragment, &target_base);
		}
	}
	else if ((e = uri_find(st, uri)) != NULL)
	{
		target = e->container;
		target_base = e->base;
	}
	if (target == NULL)
		schema_error(path, "$ref \"%s\" cannot be resolved", ref);
	if (!JsonContainerIsObject(target))
		schema_error(path, "$ref \"%s\" does not point to a schema (an object)", ref);
	return compile_node(st, target, target_base, psprintf("%s (%s)", path, uri));
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
	schema_error(path, "\"type\" must be one of string, number, integer, object, array, boolean, null, or an array of them");
	return 0;
}

static Numeric
number_value(JsonbContainer *schema, const char *name, const char *path)
{
	JsonbValue *v = keyword(schema, name);

	if (v == NULL)
		return NULL;
	if (v->type != jbvNumeric)
		schema_error(path_join(path, name, strlen(name)), "\"%s\" must be a number", name);
	return v->val.numeric;
}

static bool
bool_value(JsonbContainer *schema, const char *name, const char *path)
{
	JsonbValue *v = keyword(schema, name);

	if (v == NULL)
		return false;
	if (v->type != jbvBool)
		schema_error(path_join(path, name, strlen(name)), "\"%s\" must be a boolean", name);
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
		schema_error(path_join(path, name, strlen(name)),
					 "\"%s\" must be a non-negative integer", name);
	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, d,
										  NumericGetDatum(int64_to_numeric(PG_INT32_MAX)))) > 0)
		return PG_INT32_MAX;
	return DatumGetInt32(DirectFunctionCall1(numeric_int4, d));
}

/* Check a regex now, so that a bad pattern is a schema error with its path. */
static text *
compile_pattern(const char *source, int len, const char *path)
{
	pg_wchar   *wide = palloc((len + 1) * sizeof(pg_wchar));
	int			wlen = pg_mb2wchar_with_len(source, wide, len);
	regex_t		re;
	int			rc = pg_regcomp(&re, wide, wlen, REG_ADVANCED, C_COLLATION_OID);

	if (rc != REG_OKAY)
	{
		char		msg[256];

		pg_regerror(rc, &re, msg, sizeof(msg));
		schema_error(path, "invalid regular expression: %s", msg);
	}
	pg_regfree(&re);
	return cstring_to_text_with_len(source, len);
}

static JsonSchemaNode *
subschema(CompileState *st, JsonbValue *v, const char *base, const char *path)
{
	if (!is_object(v))
		schema_error(path, "a schema must be a JSON object");
	return compile_node(st, v->val.binary.data, base, path);
}

static void
schema_list(CompileState *st, JsonbValue *v, const char *base, const char *path,
			JsonSchemaList *list)
{
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;

	if (!is_array(v) || JsonContainerSize(v->val.binary.data) == 0)
		schema_error(path, "must be a non-empty array of schemas");
	list->nodes = palloc(sizeof(JsonSchemaNode *) * JsonContainerSize(v->val.binary.data));
	list->count = 0;
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
		if (tok == WJB_ELEM)
		{
			list->nodes[list->count] = subschema(st, &elem, base,
												 path_index(path, list->count));
			list->count++;
		}
}

/* a non-empty array of unique strings ("required", a dependency) */
static char **
string_set(JsonbValue *v, const char *path, int *count)
{
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;
	char	  **names;

	if (!is_array(v) || JsonContainerSize(v->val.binary.data) == 0)
		schema_error(path, "must be a non-empty array of unique strings");
	names = palloc(sizeof(char *) * JsonContainerSize(v->val.binary.data));
	*count = 0;
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if (elem.type != jbvString || memchr(elem.val.string.val, '\0', elem.val.string.len))
			schema_error(path, "must be a non-empty array of unique strings");
		names[*count] = pnstrdup(elem.val.string.val, elem.val.string.len);
		for (int i = 0; i < *count; i++)
			if (strcmp(names[i], names[*count]) == 0)
				schema_error(path, "must be a non-empty array of unique strings");
		(*count)++;
	}
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

	if (!is_object(v))
		schema_error(path, "must be an object");
	named = palloc0(sizeof(JsonSchemaNamed) * Max(JsonContainerSize(v->val.binary.data), 1));
	*count = 0;
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			current = &named[(*count)++];
			current->name = pnstrdup(elem.val.string.val, elem.val.string.len);
			current->name_len = elem.val.string.len;
		}
		else if (tok == WJB_VALUE)
		{
			char	   *sub = path_join(path, current->name, current->name_len);

			if (patterns)
				current->pattern = compile_pattern(current->name, current->name_len, sub);
			if (dependencies && is_array(&elem))
				current->names = string_set(&elem, sub, &current->nnames);
			else if (dependencies && !is_object(&elem))
				schema_error(sub, "a dependency must be a schema or an array of property names");
			else
				current->node = subschema(st, &elem, base, sub);
		}
	}
	return named;
}

static void
compile_type(JsonSchemaNode *node, JsonbValue *v, const char *path)
{
	if (is_array(v))
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	elem;
		JsonbIteratorToken tok;
		int			i = 0;

		if (JsonContainerSize(v->val.binary.data) == 0)
			schema_error(path, "\"type\" must not be an empty array");
		while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
			if (tok == WJB_ELEM)
			{
				char	   *ipath = path_index(path, i++);
				int			bit = type_bit(&elem, ipath);

				if ((node->types & bit) == bit && bit != JST_INTEGER)
					schema_error(ipath, "\"type\" names a type twice");
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

	if (!is_array(v) || JsonContainerSize(v->val.binary.data) == 0)
		schema_error(path, "\"enum\" must be a non-empty array");
	node->enum_values = palloc(sizeof(Jsonb *) * JsonContainerSize(v->val.binary.data));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
		if (tok == WJB_ELEM)
			node->enum_values[node->nenum++] = json_value_to_jsonb(&elem);
}

/* the keywords that apply to strings and numbers */
static void
compile_scalar_keywords(JsonSchemaNode *node, JsonbContainer *schema, const char *path)
{
	JsonbValue *v;

	node->multiple_of = number_value(schema, "multipleOf", path);
	if (node->multiple_of != NULL &&
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(node->multiple_of),
										  NumericGetDatum(int64_to_numeric(0)))) <= 0)
		schema_error(path_join(path, "multipleOf", 10), "\"multipleOf\" must be greater than 0");
	node->maximum = number_value(schema, "maximum", path);
	node->exclusive_maximum = bool_value(schema, "exclusiveMaximum", path);
	if (node->exclusive_maximum && node->maximum == NULL)
		schema_error(path_join(path, "exclusiveMaximum", 16), "\"exclusiveMaximum\" requires \"maximum\"");
	node->minimum = number_value(schema, "minimum", path);
	node->exclusive_minimum = bool_value(schema, "exclusiveMinimum", path);
	if (node->exclusive_minimum && node->minimum == NULL)
		schema_error(path_join(path, "exclusiveMinimum", 16), "\"exclusiveMinimum\" requires \"minimum\"");

	node->max_length = limit_value(schema, "maxLength", path);
	node->min_length = limit_value(schema, "minLength", path);
	v = keyword(schema, "pattern");
	if (v != NULL)
	{
		if (v->type != jbvString)
			schema_error(path_join(path, "pattern", 7), "\"pattern\" must be a string");
		node->pattern = compile_pattern(v->val.string.val, v->val.string.len,
										path_join(path, "pattern", 7));
		node->pattern_source = pnstrdup(v->val.string.val, v->val.string.len);
	}
	v = keyword(schema, "format");
	if (v != NULL)
	{
		if (v->type != jbvString)
			schema_error(path_join(path, "format", 6), "\"format\" must be a string");
		node->format = json_schema_format_by_name(v->val.string.val, v->val.string.len);
		node->format_name = pnstrdup(v->val.string.val, v->val.string.len);
	}
}

static void
compile_array_keywords(CompileState *st, JsonSchemaNode *node, JsonbContainer *schema,
					   const char *base, const char *path)
{
	JsonbValue *v;

	v = keyword(schema, "items");
	if (v != NULL)
	{
		char	   *sub = path_join(path, "items", 5);

		if (is_array(v))
		{
			node->items_is_list = true;
			if (JsonContainerSize(v->val.binary.data) > 0)
				schema_list(st, v, base, sub, &node->items_list);
		}
		else
			node->items = subschema(st, v, base, sub);
	}
	v = keyword(schema, "additionalItems");
	if (v != NULL && v->type == jbvBool)
		node->additional_items_allowed = v->val.boolean;
	else if (v != NULL)
		node->additional_items = subschema(st, v, base, path_join(path, "additionalItems", 15));
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
	if ((v = keyword(schema, "required")) != NULL)
		node->required = string_set(v, path_join(path, "required", 8), &node->nrequired);
	if ((v = keyword(schema, "properties")) != NULL)
		node->properties = schema_map(st, v, base, path_join(path, "properties", 10),
									  &node->nproperties, false, false);
	if ((v = keyword(schema, "patternProperties")) != NULL)
		node->pattern_properties = schema_map(st, v, base,
											  path_join(path, "patternProperties", 17),
											  &node->npattern_properties, true, false);
	if ((v = keyword(schema, "dependencies")) != NULL)
		node->dependencies = schema_map(st, v, base, path_join(path, "dependencies", 12),
										&node->ndependencies, false, true);
	v = keyword(schema, "additionalProperties");
	if (v != NULL && v->type == jbvBool)
		node->additional_properties_allowed = v->val.boolean;
	else if (v != NULL)
		node->additional_properties = subschema(st, v, base,
												path_join(path, "additionalProperties", 20));
	/* compiled for their errors; reached through "$ref" */
	if ((v = keyword(schema, "definitions")) != NULL)
		schema_map(st, v, base, path_join(path, "definitions", 11), &ndefinitions, false, false);

	node->has_object_keywords = node->max_properties >= 0 || node->min_properties >= 0 ||
		node->nrequired > 0 || node->nproperties > 0 || node->npattern_properties > 0 ||
		node->ndependencies > 0 || !node->additional_properties_allowed ||
		node->additional_properties != NULL;
}

static JsonSchemaNode *
compile_node(CompileState *st, JsonbContainer *schema, const char *base, const char *path)
{
	JsonSchemaNode *node;
	NodeEntry  *entry;
	bool		found;
	JsonbValue *v;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	if (!JsonContainerIsObject(schema))
		schema_error(path, "a schema must be a JSON object");

	entry = hash_search(st->nodes, &schema, HASH_ENTER, &found);
	if (found)
		return entry->node;
	node = palloc0(sizeof(JsonSchemaNode));
	entry->node = node;
	node->max_length = node->min_length = node->max_items = node->min_items = -1;
	node->max_properties = node->min_properties = -1;
	node->additional_items_allowed = node->additional_properties_allowed = true;

	v = keyword(schema, "id");
	if (v != NULL && v->type != jbvString)
		schema_error(path_join(path, "id", 2), "\"id\" must be a string");
	if (v != NULL)
		base = uri_normalize(uri_resolve(base, pnstrdup(v->val.string.val, v->val.string.len)));

	/* draft-04: "$ref" replaces the whole schema it appears in */
	v = keyword(schema, "$ref");
	if (v != NULL)
	{
		if (v->type != jbvString)
			schema_error(path_join(path, "$ref", 4), "\"$ref\" must be a string");
		node->ref = resolve_ref(st, pnstrdup(v->val.string.val, v->val.string.len),
								base, path_join(path, "$ref", 4));
		return node;
	}

	if ((v = keyword(schema, "type")) != NULL)
		compile_type(node, v, path_join(path, "type", 4));
	if ((v = keyword(schema, "enum")) != NULL)
		compile_enum(node, v, path_join(path, "enum", 4));
	compile_scalar_keywords(node, schema, path);
	compile_array_keywords(st, node, schema, base, path);
	compile_object_keywords(st, node, schema, base, path);

	if ((v = keyword(schema, "allOf")) != NULL)
		schema_list(st, v, base, path_join(path, "allOf", 5), &node->all_of);
	if ((v = keyword(schema, "anyOf")) != NULL)
		schema_list(st, v, base, path_join(path, "anyOf", 5), &node->any_of);
	if ((v = keyword(schema, "oneOf")) != NULL)
		schema_list(st, v, base, path_join(path, "oneOf", 5), &node->one_of);
	if ((v = keyword(schema, "not")) != NULL)
		node->not_schema = subschema(st, v, base, path_join(path, "not", 3));
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
	if (node->mark == 2)
		return;
	if (node->mark == 1)
		schema_error("#", "a schema refers to itself through $ref, allOf, anyOf, oneOf, not or dependencies without applying to a property or item in between");
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

		ctl.keysize = sizeof(JsonbContainer *);
		ctl.entrysize = sizeof(NodeEntry);
		ctl.hcxt = context;
		st.nodes = hash_create("json schema nodes", 64, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

		if (!JB_ROOT_IS_OBJECT(result->document) || JB_ROOT_IS_SCALAR(result->document))
			schema_error("#", "a schema must be a JSON object");
		uri_register(&st, "", &result->document->root, "");
		register_ids(&st, &result->document->root, base);
		result->root = compile_node(&st, &result->document->root, base, "#");
		{
			HASH_SEQ_STATUS seq;
			NodeEntry  *e;

			hash_seq_init(&seq, st.nodes);
			while ((e = hash_seq_search(&seq)) != NULL)
				check_cycles(e->node);
		}
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
