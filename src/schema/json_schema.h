/*-------------------------------------------------------------------------
 * json_schema.h
 *	  The JSON Schema draft-04 engine: a schema document (jsonb) is compiled
 *	  once into a tree of JsonSchemaNode, then applied to any number of
 *	  documents.  compile.c owns compilation and $ref resolution, validate.c
 *	  the application of every validation keyword, format.c the "format"
 *	  checks, pattern.c the regexes, budget.c the bounds on the work (the
 *	  per-document step budget, the static cost of a schema).  Nothing here
 *	  knows about payments: see payment_schema.h.
 *-------------------------------------------------------------------------
 */
#ifndef JSON_SCHEMA_H
#define JSON_SCHEMA_H

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "regex/regex.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

/* JSON Schema's type names as a bit mask; 0 means any type */
#define JST_STRING	0x01
#define JST_NUMBER	0x02
#define JST_INTEGER 0x04
#define JST_OBJECT	0x08
#define JST_ARRAY	0x10
#define JST_BOOLEAN 0x20
#define JST_NULL	0x40

typedef enum JsonSchemaFormat
{
	JSF_NONE = 0,				/* absent or unknown: ignored, as the spec says */
	JSF_UUID,
	JSF_DATE_TIME,
	JSF_EMAIL,
	JSF_IPV4,
	JSF_IPV6,
	JSF_HOSTNAME,
	JSF_URI
} JsonSchemaFormat;

typedef struct JsonSchemaNode JsonSchemaNode;

/* a keyword whose value is a list of subschemas (allOf, items [...], ...) */
typedef struct JsonSchemaList
{
	int			count;
	JsonSchemaNode **nodes;
} JsonSchemaList;

/* a named subschema (properties, patternProperties, dependencies) */
typedef struct JsonSchemaNamed
{
	char	   *name;			/* property name, or regex source */
	int			name_len;
	regex_t    *pattern;		/* patternProperties: name compiled */
	JsonSchemaNode *node;		/* NULL for a dependency given as names */
	int			nnames;			/* dependencies: required property names */
	char	  **names;
} JsonSchemaNamed;

struct JsonSchemaNode
{
	JsonSchemaNode *ref;		/* "$ref": every sibling keyword is ignored */

	int			types;			/* JST_* mask; 0: any */
	bool		check_integer;	/* "integer" without "number" */

	int			nenum;			/* enum values, each as a jsonb datum */
	Jsonb	  **enum_values;

	Numeric		multiple_of;
	Numeric		maximum;
	bool		exclusive_maximum;
	Numeric		minimum;
	bool		exclusive_minimum;

	int			max_length;		/* -1: no limit (also for the others) */
	int			min_length;
	regex_t    *pattern;		/* compiled by pattern.c */
	char	   *pattern_source; /* as written, for messages */
	JsonSchemaFormat format;
	const char *format_name;

	JsonSchemaNode *items;		/* "items" as one schema */
	JsonSchemaList items_list;	/* "items" as a list (tuple validation) */
	bool		items_is_list;
	bool		additional_items_allowed;	/* false: "additionalItems": false */
	JsonSchemaNode *additional_items;
	int			max_items;
	int			min_items;
	bool		unique_items;

	int			max_properties;
	int			min_properties;
	int			nrequired;
	char	  **required;
	int			nproperties;	/* sorted as jsonb sorts keys */
	JsonSchemaNamed *properties;
	int			npattern_properties;
	JsonSchemaNamed *pattern_properties;
	bool		additional_properties_allowed;
	JsonSchemaNode *additional_properties;
	int			ndependencies;
	JsonSchemaNamed *dependencies;

	JsonSchemaList all_of;
	JsonSchemaList any_of;
	JsonSchemaList one_of;
	JsonSchemaNode *not_schema;

	uint8		mark;			/* compile.c's cycle check: 0 new, 1 on path, 2 done */
	uint8		cost_mark;		/* budget.c's static cost: 0 new, 1 on path, 2 done */
	uint64		cost;			/* budget.c: static cost, once cost_mark is 2 */
	bool		has_object_keywords;	/* any keyword that applies to objects */
	bool		has_array_keywords;
};

/* A compiled schema: the root node, in the memory context that holds it all. */
typedef struct JsonSchema
{
	JsonSchemaNode *root;
	MemoryContext context;
	Jsonb	   *document;		/* the schema as compiled (a copy) */
	uint64		static_cost;	/* node applications one value can cause, unfolded */
	List	   *regexes;		/* pattern.c: freed when context goes */
} JsonSchema;

/* One validation problem; path is JSONPath-like ("$.amount", "$[0]"). */
typedef struct JsonSchemaError
{
	char	   *path;
	const char *keyword;
	char	   *message;
} JsonSchemaError;

typedef struct JsonSchemaResult
{
	int			count;			/* all problems found */
	int			nerrors;		/* those kept (at most max_errors) */
	int			max_errors;
	JsonSchemaError *errors;
} JsonSchemaResult;

/* compile.c */
extern JsonSchema *json_schema_compile(Jsonb *schema, MemoryContext parent,
									   const char *context_name);
extern void json_schema_free(JsonSchema *schema);

/* validate.c */
extern bool json_schema_validate(JsonSchema *schema, Jsonb *document,
								 JsonSchemaResult *result);
extern bool json_number_is_integer(Numeric n);

/* equality.c */
extern bool json_values_equal(JsonbValue *a, JsonbValue *b);
extern Jsonb *json_value_to_jsonb(JsonbValue *v);

/* budget.c */
extern PGDLLIMPORT int json_schema_max_validation_steps;
extern void json_schema_define_settings(void);
extern uint64 json_schema_unfolded_cost(JsonSchemaNode *root);
extern bool json_schema_static_cost_acceptable(uint64 cost);
extern void json_schema_refuse_static_cost(uint64 cost) pg_attribute_noreturn();
extern void json_schema_budget_exceeded(int64 steps) pg_attribute_noreturn();

/* pattern.c */
extern regex_t *json_schema_regex_compile(JsonSchema *owner, const char *source, int len,
										  char **error);
extern bool json_schema_regex_match(regex_t *re, const char *s, int len);

/* result.c */
extern char *json_schema_vformat(const char *fmt, va_list args) pg_attribute_printf(1, 0);
extern void json_schema_add_error(JsonSchemaResult *result, const char *path,
								  const char *keyword, const char *fmt,...) pg_attribute_printf(4, 5);
extern bool json_schema_has_error_at(JsonSchemaResult *result, const char *path);
extern char *json_schema_child_path(const char *path, const char *name, int len);

/* openapi.c */
extern Jsonb *json_schema_from_openapi(Jsonb *document, const char *model);

/* metaschema.c */
extern const char *const json_schema_draft04_uri;
extern const char *const json_schema_draft04_meta;

/* format.c */
extern JsonSchemaFormat json_schema_format_by_name(const char *name, int len);
extern bool json_schema_check_format(JsonSchemaFormat format, const char *s, int len);
extern bool json_is_canonical_uuid(const char *s, int len);

#endif							/* JSON_SCHEMA_H */
