/*-------------------------------------------------------------------------
 * validate_internal.h
 *	  Shared by validate.c, equality.c and budget.c only: the work budget
 *	  of the document being validated, and what a step is worth.  Not part
 *	  of the engine's API.
 *-------------------------------------------------------------------------
 */
#ifndef VALIDATE_INTERNAL_H
#define VALIDATE_INTERNAL_H

#include "schema/json_schema.h"

/*
 * Steps left for the document being validated (a huge number when the
 * budget is off) and its limit, for the message.  Validation never nests:
 * one of each per backend; json_schema_budget_start sets them.
 */
extern int64 jsv_steps_left;
extern int64 jsv_steps_limit;

/*
 * Work that is linear in a value's size costs a step per so many bytes, so
 * that a step stays worth roughly the same time (10-30 ns here): measured
 * as character counting and format checks (~1.4 ns a byte), regex matching
 * (~3.4 ns a byte), jsonb comparison or hashing (~7 ns a byte) and numeric
 * comparison (well under 1 ns a byte).
 */
#define JSV_TEXT_BYTES_PER_STEP 8
#define JSV_REGEX_BYTES_PER_STEP 4
#define JSV_COMPARE_BYTES_PER_STEP 4
#define JSV_NUMBER_BYTES_PER_STEP 32

static inline void
jsv_spend(int64 steps)
{
	jsv_steps_left -= steps;
	if (unlikely(jsv_steps_left < 0))
		json_schema_budget_exceeded(jsv_steps_limit);
}

/* budget.c */
extern void json_schema_budget_start(void);

/* equality.c */
extern int64 json_value_size(JsonbValue *v);
extern bool json_value_equals_jsonb(JsonbValue *v, Jsonb *j);
extern bool json_find_equal_items(JsonbValue *items, int count, int *first, int *second);

#endif							/* VALIDATE_INTERNAL_H */
