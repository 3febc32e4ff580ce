/*-------------------------------------------------------------------------
 * schema_api.c
 *	  SQL entry points of the payment schemas: validate_json (any draft-04
 *	  schema, any document), set_payment_schema (a new active version),
 *	  validate_payment (a dry run against the active version) and
 *	  payment_schema_from_openapi.  The work is done in src/schema/; this
 *	  file owns argument checks and the {"valid", "errors"} result shape.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/rel.h"

#include "schema/json_schema.h"
#include "schema/payment_schema.h"

PG_FUNCTION_INFO_V1(payment_validate_json);
PG_FUNCTION_INFO_V1(payment_set_payment_schema);
PG_FUNCTION_INFO_V1(payment_validate_payment);
PG_FUNCTION_INFO_V1(payment_schema_from_openapi);
PG_FUNCTION_INFO_V1(payment_schemas_changed);

/* a result lists at most this many problems */
#define MAX_LISTED_ERRORS 1000

/* validate_json's schema, compiled once per call site while it is the same */
typedef struct CompiledArgument
{
	Jsonb	   *schema;			/* a copy, to compare the next call's with */
	JsonSchema *compiled;
} CompiledArgument;

static Datum
result_jsonb(bool valid, JsonSchemaResult *result)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"valid\": %s, \"errors\": [", valid ? "true" : "false");
	for (int i = 0; i < result->nerrors; i++)
	{
		JsonSchemaError *e = &result->errors[i];

		appendStringInfoString(&buf, i > 0 ? ", {\"path\": " : "{\"path\": ");
		escape_json(&buf, e->path);
		appendStringInfoString(&buf, ", \"keyword\": ");
		escape_json(&buf, e->keyword);
		appendStringInfoString(&buf, ", \"message\": ");
		escape_json(&buf, e->message);
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoString(&buf, "]}");
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

Datum
payment_validate_json(PG_FUNCTION_ARGS)
{
	Jsonb	   *document = PG_GETARG_JSONB_P(0);
	Jsonb	   *schema = PG_GETARG_JSONB_P(1);
	CompiledArgument *cached = fcinfo->flinfo->fn_extra;
	JsonSchemaResult result = {0};
	bool		valid;

	if (cached == NULL)
	{
		cached = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(CompiledArgument));
		fcinfo->flinfo->fn_extra = cached;
	}
	if (cached->schema == NULL || VARSIZE(cached->schema) != VARSIZE(schema) ||
		memcmp(cached->schema, schema, VARSIZE(schema)) != 0)
	{
		if (cached->schema != NULL)
		{
			json_schema_free(cached->compiled);
			pfree(cached->schema);
			cached->schema = NULL;
		}
		cached->compiled = json_schema_compile(schema, fcinfo->flinfo->fn_mcxt,
											   "validate_json schema");
		cached->schema = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, VARSIZE(schema));
		memcpy(cached->schema, schema, VARSIZE(schema));
	}

	result.max_errors = MAX_LISTED_ERRORS;
	valid = json_schema_validate(cached->compiled, document, &result);
	PG_RETURN_DATUM(result_jsonb(valid, &result));
}

Datum
payment_set_payment_schema(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("payment schema must not be null")));
	PG_RETURN_INT32(payment_schema_store(PG_GETARG_JSONB_P(0),
										 PG_ARGISNULL(1) ? NULL :
										 text_to_cstring(PG_GETARG_TEXT_PP(1))));
}

Datum
payment_validate_payment(PG_FUNCTION_ARGS)
{
	JsonSchemaResult result = {0};
	bool		valid;

	result.max_errors = MAX_LISTED_ERRORS;
	valid = payment_validate_into(PG_GETARG_JSONB_P(0), -1, &result);
	PG_RETURN_DATUM(result_jsonb(valid, &result));
}

Datum
payment_schema_from_openapi(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(json_schema_from_openapi(PG_GETARG_JSONB_P(0),
											   text_to_cstring(PG_GETARG_TEXT_PP(1))));
}

/*
 * Statement trigger on payment.schemas: a change made by hand (say, an
 * operator re-activating an older version) reaches every backend's cached
 * active version at commit, as set_payment_schema's does.  An insert or
 * update that leaves an active version that does not compile, or that is
 * too expensive to apply (54001), is refused.
 */
Datum
payment_schemas_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("payment_schemas_changed must be called as a trigger")));
	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		payment_schema_check_active();
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	PG_RETURN_POINTER(NULL);
}
