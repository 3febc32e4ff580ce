/*-------------------------------------------------------------------------
 * budget.c
 *	  The bounds on the engine's work, so that no schema and no document
 *	  can hold a backend or a worker:
 *
 *	  - the work budget of one document, payment.max_validation_steps:
 *	    validate.c charges a step for each application of a schema node to
 *	    a value, and for each unit of work a keyword does per element (a
 *	    key or item visited, an enum value or a uniqueItems pair compared,
 *	    a required name or dependency looked up, a regex tried, a stretch of
 *	    a long string or number); past the budget, 54001;
 *
 *	  - the static cost of a compiled schema: how many node applications
 *	    one value can cause when every $ref, combinator and child schema is
 *	    unfolded.  Computed once per compilation, linearly (memoized over
 *	    the node graph); the payment layer refuses a schema above
 *	    MAX_STATIC_COST before it can become active.  validate_json does
 *	    not: the budget and interrupts bound it.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"

#include "schema/validate_internal.h"

/*
 * The default, measured: 1 MiB documents (payment.max_payload_size) take
 * 0.37M steps (10,500 line items under a team schema) to 0.58M (115,000
 * tiny objects), the reference payment 33.  A step costs 10-30 ns, so a
 * document that runs out has used 50-150 ms.
 */
#define DEFAULT_MAX_VALIDATION_STEPS 5000000

/*
 * The static limit, far above real schemas: the reference model costs 7,
 * a team schema with line items 15, a large one (parties, addresses, line
 * items, fees, refunds, a oneOf of payment methods) 121, the draft-04
 * meta-schema 60.  A chain of 17 doublings (2^17) is refused; a schema at
 * the limit validates a document with one value per subschema in 2% of
 * the default budget.
 */
#define MAX_STATIC_COST 100000

int			json_schema_max_validation_steps = DEFAULT_MAX_VALIDATION_STEPS;

int64		jsv_steps_left;
int64		jsv_steps_limit;

void
json_schema_define_settings(void)
{
	DefineCustomIntVariable("payment.max_validation_steps",
							gettext_noop("Most work one document's JSON Schema validation may take, in steps; 0 means no limit."),
							gettext_noop("A step is one application of a schema to a value, or one element a keyword examines."),
							&json_schema_max_validation_steps,
							DEFAULT_MAX_VALIDATION_STEPS, 0, PG_INT32_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
}

/* A document's validation begins: its budget is full. */
void
json_schema_budget_start(void)
{
	jsv_steps_limit = json_schema_max_validation_steps;
	jsv_steps_left = jsv_steps_limit > 0 ? jsv_steps_limit : PG_INT64_MAX;
}

void
json_schema_budget_exceeded(int64 steps)
{
	ereport(ERROR,
			(errcode(ERRCODE_STATEMENT_TOO_COMPLEX),
			 errmsg("JSON Schema validation exceeded its work budget"),
			 errdetail("Validating the document took more than " INT64_FORMAT " steps.",
					   steps),
			 errhint("The budget is payment.max_validation_steps; a schema that applies the same subschemas many times over (allOf, anyOf, oneOf or not of repeated $refs) needs many steps per value.")));
}

static uint64
add_saturated(uint64 a, uint64 b)
{
	return (a > PG_UINT64_MAX - b) ? PG_UINT64_MAX : a + b;
}

static uint64 unfolded(JsonSchemaNode *node);

static uint64
list_cost(JsonSchemaList *list)
{
	uint64		cost = 0;

	for (int i = 0; i < list->count; i++)
		cost = add_saturated(cost, unfolded(list->nodes[i]));
	return cost;
}

static uint64
named_cost(JsonSchemaNamed *named, int count)
{
	uint64		cost = 0;

	for (int i = 0; i < count; i++)
		if (named[i].node != NULL)
			cost = add_saturated(cost, unfolded(named[i].node));
	return cost;
}

static uint64
single_cost(JsonSchemaNode *node)
{
	return node != NULL ? unfolded(node) : 0;
}

/*
 * One application of node, plus everything it applies: the same value's
 * subschemas and each child schema once.  A recursion (only possible
 * through a child: compile.c refuses any other) counts one application:
 * each level needs a deeper document, which the budget pays for.
 */
static uint64
unfolded(JsonSchemaNode *node)
{
	uint64		cost;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	if (node->cost_mark == 2)
		return node->cost;
	if (node->cost_mark == 1)
		return 1;
	node->cost_mark = 1;
	if (node->ref != NULL)
		cost = unfolded(node->ref);		/* "$ref" replaces the node */
	else
	{
		cost = 1;
		cost = add_saturated(cost, list_cost(&node->all_of));
		cost = add_saturated(cost, list_cost(&node->any_of));
		cost = add_saturated(cost, list_cost(&node->one_of));
		cost = add_saturated(cost, single_cost(node->not_schema));
		cost = add_saturated(cost, named_cost(node->dependencies, node->ndependencies));
		cost = add_saturated(cost, named_cost(node->properties, node->nproperties));
		cost = add_saturated(cost, named_cost(node->pattern_properties,
											  node->npattern_properties));
		cost = add_saturated(cost, single_cost(node->additional_properties));
		cost = add_saturated(cost, single_cost(node->items));
		cost = add_saturated(cost, list_cost(&node->items_list));
		cost = add_saturated(cost, single_cost(node->additional_items));
	}
	node->cost = cost;
	node->cost_mark = 2;
	return cost;
}

uint64
json_schema_unfolded_cost(JsonSchemaNode *root)
{
	return unfolded(root);
}

/* Is a schema of this static cost cheap enough to be a payment schema? */
bool
json_schema_static_cost_acceptable(uint64 cost)
{
	return cost <= MAX_STATIC_COST;
}

void
json_schema_refuse_static_cost(uint64 cost)
{
	ereport(ERROR,
			(errcode(ERRCODE_STATEMENT_TOO_COMPLEX),
			 errmsg("JSON schema is too expensive to validate with"),
			 errdetail("One value can cause " UINT64_FORMAT " applications of its subschemas when every $ref, combinator and child schema is unfolded; the limit is %d.",
					   cost, MAX_STATIC_COST),
			 errhint("Apply each subschema once: allOf, anyOf, oneOf or not that repeat the same $ref at several levels multiply the work at every level.")));
}
