/*-------------------------------------------------------------------------
 * compile_internal.h
 *	  Shared by compile.c and refs.c only: the state of one compilation
 *	  and the helpers both use.  Not part of the engine's API.
 *-------------------------------------------------------------------------
 */
#ifndef COMPILE_INTERNAL_H
#define COMPILE_INTERNAL_H

#include "nodes/pg_list.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"

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
	JsonSchema *schema;			/* being compiled: owns the regexes */
	HTAB	   *uris;			/* uri -> UriEntry, the first registered */
	HTAB	   *nodes;			/* container -> node: each compiled once */
	bool		meta_loaded;
} CompileState;

/* compile.c */
extern JsonSchemaNode *jsc_compile_node(CompileState *st, JsonbContainer *schema,
									const char *base, const char *path);
extern void jsc_schema_error(const char *path, const char *fmt,...) pg_attribute_printf(2, 3);
extern char *jsc_path_join(const char *path, const char *token, int len);
extern JsonbValue *jsc_keyword(JsonbContainer *schema, const char *name);
extern bool jsc_is_object(JsonbValue *v);
extern bool jsc_is_array(JsonbValue *v);

/* refs.c */
extern void jsc_uri_init(CompileState *st);
extern void jsc_uri_register(CompileState *st, char *uri, JsonbContainer *container,
						 const char *base);
extern void jsc_register_ids(CompileState *st, JsonbContainer *schema, const char *base);
extern char *jsc_uri_resolve(const char *base, const char *ref);
extern char *jsc_uri_normalize(char *uri);
extern JsonSchemaNode *jsc_resolve_ref(CompileState *st, const char *ref, const char *base,
								   const char *path);

#endif							/* COMPILE_INTERNAL_H */
