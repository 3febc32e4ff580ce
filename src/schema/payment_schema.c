/*-------------------------------------------------------------------------
 * payment_schema.c
 *	  The payment schema: the built-in reference Payment model (version 0,
 *	  what ../shared/payment.schema.json accepts) or the active version of
 *	  payment.schemas, compiled at most once per process per version (again
 *	  only if its row was changed by hand; the last 8 used are kept).
 *
 *	  Which version is active is cached per process and re-read (one SPI
 *	  query, prepared once) only after a relcache invalidation of
 *	  payment.schemas: set_payment_schema sends one at commit, so every
 *	  session and worker sees a new version on its next call, without a
 *	  query per call and without shared memory (it works unpreloaded).  A
 *	  database still at extension version 1.0 has no payment.schemas: the
 *	  reference model is used, as 1.0 did.
 *
 *	  Whatever the schema says, paymentId and userId must be uuids: they
 *	  are the table's key.  A schema too expensive to apply (budget.c's
 *	  static cost) is refused wherever it could become the one in use: by
 *	  set_payment_schema, by the trigger on payment.schemas (a version
 *	  activated by hand) and when a stored version is compiled for use.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "common/json_util.h"
#include "payment.h"
#include "schema/payload_size.h"
#include "schema/payment_schema.h"

/* The reference Payment model (draft-04), as the reference API enforced it. */
static const char *const reference_schema =
"{\"type\": \"object\","
" \"required\": [\"amount\", \"currency\", \"dateTimestamp\", \"description\", \"paymentId\", \"userId\"],"
" \"properties\": {"
"   \"paymentId\": {\"type\": \"string\", \"format\": \"uuid\"},"
"   \"userId\": {\"type\": \"string\", \"format\": \"uuid\"},"
"   \"dateTimestamp\": {\"type\": \"string\"},"
"   \"description\": {\"type\": \"string\", \"maxLength\": 256},"
"   \"currency\": {\"type\": \"string\"},"
"   \"amount\": {\"type\": \"number\"}}}";

/* compiled versions kept per process; the least recently used goes first */
#define MAX_CACHED_VERSIONS 8

typedef struct CachedVersion
{
	int			version;
	JsonSchema *schema;
	uint64		last_used;
	uint64		checked;		/* inval_generation when last compared with its row */
} CachedVersion;

static MemoryContext schema_context = NULL;
static JsonSchema *reference = NULL;
static CachedVersion cache[MAX_CACHED_VERSIONS];
static int	ncached = 0;
static uint64 use_clock = 0;

/* the active version, valid while loaded_generation == inval_generation */
static int	active_version = 0;
static uint64 inval_generation = 1;
static uint64 loaded_generation = 0;
static Oid	schemas_relid = InvalidOid;
static bool callback_registered = false;

static SPIPlanPtr active_plan = NULL;
static SPIPlanPtr version_plan = NULL;

static void
schemas_invalidated(Datum arg, Oid relid)
{
	/*
	 * Without the table (extension still 1.0) any relation may be it after
	 * ALTER EXTENSION ... UPDATE: look again; that costs a syscache lookup.
	 */
	if (relid == InvalidOid || relid == schemas_relid || schemas_relid == InvalidOid)
		inval_generation++;
}

static MemoryContext
get_schema_context(void)
{
	if (schema_context == NULL)
		schema_context = AllocSetContextCreate(TopMemoryContext, "payment schemas",
											   ALLOCSET_SMALL_SIZES);
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(schemas_invalidated, (Datum) 0);
		callback_registered = true;
	}
	return schema_context;
}

static JsonSchema *
reference_model(void)
{
	if (reference == NULL)
	{
		Jsonb	   *doc = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
															 CStringGetDatum(reference_schema)));

		reference = json_schema_compile(doc, get_schema_context(), "payment reference schema");
	}
	return reference;
}

static Oid
lookup_schemas_relid(void)
{
	Oid			nsp = get_namespace_oid("payment", true);

	return OidIsValid(nsp) ? get_relname_relid("schemas", nsp) : InvalidOid;
}

static CachedVersion *
cache_find(int version)
{
	for (int i = 0; i < ncached; i++)
		if (cache[i].version == version)
		{
			cache[i].last_used = ++use_clock;
			return &cache[i];
		}
	return NULL;
}

/*
 * Compile a payment schema version under parent; raise 54001 (after
 * freeing it) when it is too expensive to apply to every payment.
 */
static JsonSchema *
compile_version(Jsonb *doc, MemoryContext parent, const char *context_name)
{
	JsonSchema *compiled = json_schema_compile(doc, parent, context_name);
	uint64		cost = compiled->static_cost;

	if (!json_schema_static_cost_acceptable(cost))
	{
		json_schema_free(compiled);
		json_schema_refuse_static_cost(cost);
	}
	return compiled;
}

/*
 * The compiled schema of a stored version whose row holds doc: the cached
 * one if it was compiled from the same document (a row changed by hand is
 * compiled again), else compiled now, evicting the least recently used.
 * A version that does not compile leaves the cache as it was.
 */
static JsonSchema *
cache_put(int version, Jsonb *doc, uint64 generation)
{
	CachedVersion *c = cache_find(version);
	JsonSchema *compiled;
	int			slot;

	if (c != NULL && VARSIZE(c->schema->document) == VARSIZE(doc) &&
		memcmp(c->schema->document, doc, VARSIZE(doc)) == 0)
	{
		c->checked = generation;
		return c->schema;
	}
	compiled = compile_version(doc, get_schema_context(), "payment schema version");
	if (c != NULL)
		slot = c - cache;
	else if (ncached < MAX_CACHED_VERSIONS)
		slot = ncached++;
	else
	{
		slot = 0;
		for (int i = 1; i < ncached; i++)
			if (cache[i].last_used < cache[slot].last_used)
				slot = i;
	}
	if (cache[slot].schema != NULL)
		json_schema_free(cache[slot].schema);
	cache[slot].version = version;
	cache[slot].schema = compiled;
	cache[slot].last_used = ++use_clock;
	cache[slot].checked = generation;
	return compiled;
}

static void
cache_clear(void)
{
	for (int i = 0; i < ncached; i++)
	{
		json_schema_free(cache[i].schema);
		cache[i].schema = NULL;
	}
	ncached = 0;
}

/* Run a kept read-only plan; the caller is connected to SPI. */
static void
run_plan(SPIPlanPtr plan, Datum *values)
{
	bool		pushed = false;
	int			rc;

	if (!ActiveSnapshotSet())
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		pushed = true;
	}
	rc = SPI_execute_plan(plan, values, NULL, true, 1);
	if (pushed)
		PopActiveSnapshot();
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading payment.schemas failed: %s", SPI_result_code_string(rc));
}

static Jsonb *
column_jsonb(int column)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								  column, &isnull);

	return isnull ? NULL : DatumGetJsonbP(d);
}

/* Re-read which version is active after an invalidation. */
static void
refresh_active(void)
{
	uint64		generation;
	int			version = 0;

	get_schema_context();
	if (loaded_generation == inval_generation)
		return;
	generation = inval_generation;
	{
		Oid			relid = lookup_schemas_relid();

		/* another payment.schemas (extension dropped and created again) */
		if (relid != schemas_relid)
			cache_clear();
		schemas_relid = relid;
	}
	if (OidIsValid(schemas_relid))
	{
		SPI_connect();
		payment_prepare(&active_plan,
						"SELECT version, schema FROM payment.schemas WHERE active",
						0, NULL);
		run_plan(active_plan, NULL);
		if (SPI_processed == 1)
		{
			bool		isnull;

			version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1, &isnull));
			cache_put(version, column_jsonb(2), generation);
		}
		SPI_finish();
	}
	active_version = version;
	/* an invalidation that arrived while reading makes us read again */
	loaded_generation = generation;
}

int
payment_schema_active_version(void)
{
	refresh_active();
	return active_version;
}

/* A stored version's compiled schema, or NULL when there is no such version. */
static JsonSchema *
schema_of_version(int version)
{
	CachedVersion *c;
	JsonSchema *result = NULL;

	if (version == 0)
		return reference_model();
	/* compared with its row once after each change to payment.schemas */
	if ((c = cache_find(version)) != NULL && c->checked == loaded_generation)
		return c->schema;
	if (!OidIsValid(schemas_relid))
		return NULL;
	SPI_connect();
	payment_prepare(&version_plan,
					"SELECT schema FROM payment.schemas WHERE version = $1",
					1, (Oid[]) {INT4OID});
	run_plan(version_plan, (Datum[]) {Int32GetDatum(version)});
	if (SPI_processed == 1)
		result = cache_put(version, column_jsonb(1), loaded_generation);
	SPI_finish();
	return result;
}

static JsonbValue *
top_level_value(Jsonb *payload, const char *key)
{
	if (JB_ROOT_IS_SCALAR(payload))
		return NULL;
	return json_find_member(&payload->root, key, strlen(key));
}

/* The key fields are uuids whatever the schema says (unless it said so already). */
static void
check_keys(Jsonb *payload, JsonSchemaResult *result)
{
	static const char *const keys[] = {"paymentId", "userId"};

	if (!JB_ROOT_IS_OBJECT(payload) || JB_ROOT_IS_SCALAR(payload))
	{
		if (!json_schema_has_error_at(result, "$"))
			json_schema_add_error(result, "$", "type", "expected object, got %s",
								  JB_ROOT_IS_SCALAR(payload) ? "scalar" : "array");
		return;
	}
	for (int i = 0; i < lengthof(keys); i++)
	{
		char	   *path = json_schema_child_path("$", keys[i], strlen(keys[i]));
		JsonbValue *v = top_level_value(payload, keys[i]);

		if (json_schema_has_error_at(result, path))
			continue;
		if (v == NULL)
			json_schema_add_error(result, path, "required", "required property missing");
		else if (v->type != jbvString)
			json_schema_add_error(result, path, "type", "expected string, got %s",
								  v->type == jbvNumeric ? "number" :
								  v->type == jbvBool ? "boolean" :
								  v->type == jbvNull ? "null" :
								  JsonContainerIsObject(v->val.binary.data) ? "object" : "array");
		else if (!json_is_canonical_uuid(v->val.string.val, v->val.string.len))
			json_schema_add_error(result, path, "format", "not a valid uuid");
	}
}

/*
 * Validate against a version (0: the reference model; an unknown version:
 * the active one), plus the key check; problems go to result.
 */
bool
payment_validate_into(Jsonb *payload, int version, JsonSchemaResult *result)
{
	JsonSchema *schema = NULL;

	refresh_active();
	if (version >= 0)
		schema = schema_of_version(version);
	if (schema == NULL)
		schema = schema_of_version(active_version);
	if (schema == NULL)
		schema = reference_model();		/* the active row vanished meanwhile */
	json_schema_validate(schema, payload, result);
	check_keys(payload, result);
	return result->count == 0;
}

bool
payment_validate_version(Jsonb *payload, int version, char **problems)
{
	JsonSchemaResult result = {0};
	StringInfoData text;

	result.max_errors = PAYMENT_MAX_REPORTED_PROBLEMS;
	if (payment_validate_into(payload, version, &result))
	{
		if (problems)
			*problems = pstrdup("");
		return true;
	}
	initStringInfo(&text);
	for (int i = 0; i < result.nerrors; i++)
		appendStringInfo(&text, "%s%s: %s", i > 0 ? "; " : "",
						 result.errors[i].path, result.errors[i].message);
	if (result.count > result.nerrors)
		appendStringInfo(&text, "; and %d more", result.count - result.nerrors);
	if (problems)
		*problems = text.data;
	return false;
}

/*
 * Check a payload against the active payment schema.  Returns true when
 * valid; otherwise *problems (if not NULL) lists up to 10 broken rules by
 * JSON path.
 */
bool
payment_validate(Jsonb *payload, char **problems)
{
	return payment_validate_version(payload, -1, problems);
}

/*
 * Size limit and schema check of a submitted payload against the given
 * schema version (from payment_schema_active_version()); raises class 22.
 * text_length is that of the rendered text, whose size was bounded before
 * rendering with payment_check_payload_size.
 */
void
payment_check_payload(Jsonb *payload, Size text_length, int version)
{
	char	   *problems;

	payment_check_text_size(text_length);

	if (!payment_validate_version(payload, version, &problems))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payment does not match the payment schema"),
				 errdetail("%s", problems)));
}

/*
 * Store a new version and make it the active one at commit; returns its
 * number.  The schema must compile and require paymentId and userId.
 */
int
payment_schema_store(Jsonb *schema, const char *comment)
{
	JsonSchema *compiled = compile_version(schema, CurrentMemoryContext,
										   "payment schema check");
	JsonSchemaNode *root = compiled->root;
	bool		has_payment_id = false,
				has_user_id = false;
	Oid			relid = lookup_schemas_relid();
	char	   *created_by = GetUserNameFromId(GetOuterUserId(), false);
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr deactivate_plan = NULL;
	static SPIPlanPtr insert_plan = NULL;
	int			version;
	bool		isnull;

	while (root->ref != NULL)
		root = root->ref;
	for (int i = 0; i < root->nrequired; i++)
	{
		has_payment_id |= (strcmp(root->required[i], "paymentId") == 0);
		has_user_id |= (strcmp(root->required[i], "userId") == 0);
	}
	json_schema_free(compiled);
	if (!has_payment_id || !has_user_id)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payment schema must require paymentId and userId"),
				 errdetail("They are the key of payment.payments; its top-level \"required\" lacks %s.",
						   !has_payment_id ? "\"paymentId\"" : "\"userId\""),
				 errhint("Add \"required\": [\"paymentId\", \"userId\"] to the schema's top level.")));
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("payment.schemas does not exist"),
				 errhint("Run ALTER EXTENSION payment UPDATE.")));

	SPI_connect();
	/* one version change at a time: the second waits, then sees the first */
	payment_prepare(&lock_plan, "LOCK TABLE payment.schemas IN SHARE ROW EXCLUSIVE MODE",
					0, NULL);
	if (SPI_execute_plan(lock_plan, NULL, NULL, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "locking payment.schemas failed");
	payment_prepare(&deactivate_plan,
					"UPDATE payment.schemas SET active = false WHERE active", 0, NULL);
	if (SPI_execute_plan(deactivate_plan, NULL, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "updating payment.schemas failed");
	payment_prepare(&insert_plan,
					"INSERT INTO payment.schemas (schema, comment, created_by, active)"
					" VALUES ($1, $2, $3, true) RETURNING version",
					3, (Oid[]) {JSONBOID, TEXTOID, NAMEOID});
	if (SPI_execute_plan(insert_plan,
						 (Datum[]) {JsonbPGetDatum(schema),
							 comment ? CStringGetTextDatum(comment) : (Datum) 0,
						 DirectFunctionCall1(namein, CStringGetDatum(created_by))},
						 comment ? NULL : " n ", false, 1) != SPI_OK_INSERT_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "inserting into payment.schemas failed");
	version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										  1, &isnull));
	SPI_finish();

	/* every backend re-reads the active version once this commits */
	CacheInvalidateRelcacheByRelid(relid);
	return version;
}

/*
 * For the trigger on payment.schemas, after a statement changed it: the
 * active version, if any, must compile and not be too expensive to apply
 * (raises 22023 or 54001, so that the change is refused).
 */
void
payment_schema_check_active(void)
{
	static SPIPlanPtr plan = NULL;

	SPI_connect();
	payment_prepare(&plan, "SELECT schema FROM payment.schemas WHERE active", 0, NULL);
	/* not read-only: the statement's own changes are seen */
	if (SPI_execute_plan(plan, NULL, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "reading payment.schemas failed");
	if (SPI_processed == 1)
	{
		Jsonb	   *doc = column_jsonb(1);

		if (doc != NULL)
			json_schema_free(compile_version(doc, CurrentMemoryContext,
											 "payment schema check"));
	}
	SPI_finish();
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

/* A top-level property that is a uuid in canonical form, else false. */
bool
payment_try_get_uuid(Jsonb *payload, const char *key, Datum *uuid)
{
	JsonbValue *v = top_level_value(payload, key);

	if (v == NULL || v->type != jbvString ||
		!json_is_canonical_uuid(v->val.string.val, v->val.string.len))
		return false;
	*uuid = DirectFunctionCall1(uuid_in,
								CStringGetDatum(pnstrdup(v->val.string.val,
														 v->val.string.len)));
	return true;
}

/*
 * The stored columns of a payload that payment_validate accepted: the keys
 * always, the others when present with a fitting type.
 */
void
payment_extract_fields(Jsonb *payload, PaymentFields *fields)
{
	JsonbValue *amount = top_level_value(payload, "amount");

	if (!payment_try_get_uuid(payload, "paymentId", &fields->payment_id) ||
		!payment_try_get_uuid(payload, "userId", &fields->user_id))
		elog(ERROR, "payment_extract_fields called on an unvalidated payload");
	fields->has_amount = (amount != NULL && amount->type == jbvNumeric);
	fields->amount = fields->has_amount ? NumericGetDatum(amount->val.numeric) : (Datum) 0;
	fields->currency = payment_try_get_string(payload, "currency");
	fields->description = payment_try_get_string(payload, "description");
	fields->date_timestamp = payment_try_get_string(payload, "dateTimestamp");
}
