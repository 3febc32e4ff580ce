/*-------------------------------------------------------------------------
 * refs.c
 *	  "$ref" resolution for compile.c: RFC 3986 reference resolution (as
 *	  much as ids need), the registry of "id"-identified schemas (base URIs
 *	  and location-independent ids such as "#foo"), JSON pointers with
 *	  their ~0 ~1 and percent escapes, and the bundled draft-04
 *	  meta-schema.  Remote documents are never fetched: such a reference
 *	  is a schema error.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"

#include "schema/compile_internal.h"

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

char *
jsc_uri_resolve(const char *base, const char *ref)
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
char *
jsc_uri_normalize(char *uri)
{
	int			len = strlen(uri);

	if (len > 0 && uri[len - 1] == '#')
		uri[len - 1] = '\0';
	return uri;
}

/* the registry is keyed by the uri string (the key is its pointer) */
static uint32
uri_hash(const void *key, Size keysize)
{
	const char *uri = *(const char *const *) key;

	return hash_bytes((const unsigned char *) uri, strlen(uri));
}

static int
uri_match(const void *a, const void *b, Size keysize)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* The registry, in the current memory context: a schema may hold many ids. */
void
jsc_uri_init(CompileState *st)
{
	HASHCTL		ctl = {0};

	ctl.keysize = sizeof(char *);
	ctl.entrysize = sizeof(UriEntry);
	ctl.hash = uri_hash;
	ctl.match = uri_match;
	ctl.hcxt = CurrentMemoryContext;
	st->uris = hash_create("json schema uris", 16, &ctl,
						   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

static UriEntry *
uri_find(CompileState *st, const char *uri)
{
	return hash_search(st->uris, &uri, HASH_FIND, NULL);
}

void
jsc_uri_register(CompileState *st, char *uri, JsonbContainer *container, const char *base)
{
	UriEntry   *e;
	bool		found;

	e = hash_search(st->uris, &uri, HASH_ENTER, &found);
	if (found)
		return;
	e->uri = uri;
	e->container = container;
	e->base = pstrdup(base);
}

/* Record every subschema's "id", walking only where schemas can be. */
void
jsc_register_ids(CompileState *st, JsonbContainer *schema, const char *base)
{
	static const char *const schema_maps[] = {"properties", "patternProperties",
	"definitions", "dependencies"};
	static const char *const schema_lists[] = {"allOf", "anyOf", "oneOf", "items"};
	static const char *const single[] = {"items", "additionalItems",
	"additionalProperties", "not"};
	JsonbValue *v;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	if (!JsonContainerIsObject(schema))
		return;
	v = jsc_keyword(schema, "id");
	if (v != NULL && v->type == jbvString)
	{
		char	   *id = pnstrdup(v->val.string.val, v->val.string.len);

		base = jsc_uri_normalize(jsc_uri_resolve(base, id));
		jsc_uri_register(st, pstrdup(base), schema, base);
	}
	for (int i = 0; i < lengthof(schema_maps); i++)
	{
		JsonbIterator *it;
		JsonbValue	elem;
		JsonbIteratorToken tok;

		v = jsc_keyword(schema, schema_maps[i]);
		if (v == NULL || !jsc_is_object(v))
			continue;
		it = JsonbIteratorInit(v->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
			if (tok == WJB_VALUE && jsc_is_object(&elem))
				jsc_register_ids(st, elem.val.binary.data, base);
	}
	for (int i = 0; i < lengthof(schema_lists); i++)
	{
		JsonbIterator *it;
		JsonbValue	elem;
		JsonbIteratorToken tok;

		v = jsc_keyword(schema, schema_lists[i]);
		if (v == NULL || !jsc_is_array(v))
			continue;
		it = JsonbIteratorInit(v->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
			if (tok == WJB_ELEM && jsc_is_object(&elem))
				jsc_register_ids(st, elem.val.binary.data, base);
	}
	for (int i = 0; i < lengthof(single); i++)
	{
		v = jsc_keyword(schema, single[i]);
		if (v != NULL && jsc_is_object(v))
			jsc_register_ids(st, v->val.binary.data, base);
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
	jsc_register_ids(st, &meta->root, "");
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
			JsonbValue *id = jsc_keyword(c, "id");

			if (id != NULL && id->type == jbvString)
				*base = jsc_uri_normalize(jsc_uri_resolve(*base,
												  pnstrdup(id->val.string.val,
														   id->val.string.len)));
		}
		p = end;
	}
	return c;
}

JsonSchemaNode *
jsc_resolve_ref(CompileState *st, const char *ref, const char *base, const char *path)
{
	char	   *uri = jsc_uri_resolve(base, ref);
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
		jsc_schema_error(path, "$ref \"%s\" cannot be resolved", ref);
	if (!JsonContainerIsObject(target))
		jsc_schema_error(path, "$ref \"%s\" does not point to a schema (an object)", ref);
	return jsc_compile_node(st, target, target_base, psprintf("%s (%s)", path, uri));
}
