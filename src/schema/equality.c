/*-------------------------------------------------------------------------
 * equality.c
 *	  JSON equality, as enum and uniqueItems use it: jsonb's own comparison,
 *	  where numbers compare as numbers (1 equals 1.0) and key order does not
 *	  matter.  uniqueItems finds the first item equal to an earlier one in
 *	  time linear in the array: items are hashed with jsonb's own hash, which
 *	  agrees with that equality (it is the hash of jsonb's hash opclass),
 *	  into an open-addressing table, and only items of equal hash are
 *	  compared.  Every hash, probe and comparison is charged to the
 *	  document's budget, so items crafted to collide cost steps, not time.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/fmgrprotos.h"

#include "schema/validate_internal.h"

Jsonb *
json_value_to_jsonb(JsonbValue *v)
{
	return JsonbValueToJsonb(v);
}

bool
json_values_equal(JsonbValue *a, JsonbValue *b)
{
	Jsonb	   *ja = json_value_to_jsonb(a);
	Jsonb	   *jb = json_value_to_jsonb(b);

	/* jsonb's own ordering compares numbers as numeric: 1 equals 1.0 */
	return compareJsonbContainers(&ja->root, &jb->root) == 0;
}

static bool
scalars_equal(JsonbValue *a, JsonbValue *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case jbvNull:
			return true;
		case jbvBool:
			return a->val.boolean == b->val.boolean;
		case jbvString:
			/* jsonb compares strings in a deterministic collation: equal means same bytes */
			return a->val.string.len == b->val.string.len &&
				memcmp(a->val.string.val, b->val.string.val, a->val.string.len) == 0;
		case jbvNumeric:
			return DatumGetBool(DirectFunctionCall2(numeric_eq,
													NumericGetDatum(a->val.numeric),
													NumericGetDatum(b->val.numeric)));
		default:
			elog(ERROR, "unexpected jsonb scalar type %d", (int) a->type);
	}
	return false;
}

/*
 * json_values_equal(v, j) without converting v, and without walking
 * containers that cannot be equal: enum compares each value with each of
 * its values, most of which differ in type.
 */
bool
json_value_equals_jsonb(JsonbValue *v, Jsonb *j)
{
	JsonbValue	scalar;

	if (JB_ROOT_IS_SCALAR(j))
	{
		if (v->type == jbvBinary)
			return false;
		JsonbExtractScalar(&j->root, &scalar);
		return scalars_equal(v, &scalar);
	}
	if (v->type != jbvBinary ||
		JsonContainerIsObject(v->val.binary.data) != JB_ROOT_IS_OBJECT(j) ||
		JsonContainerSize(v->val.binary.data) != JB_ROOT_COUNT(j))
		return false;
	return compareJsonbContainers(v->val.binary.data, &j->root) == 0;
}

/* bytes that comparing or hashing v may read */
int64
json_value_size(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvBinary:
			return v->val.binary.len;
		case jbvString:
			return v->val.string.len;
		case jbvNumeric:
			return VARSIZE(v->val.numeric);
		default:
			return 0;
	}
}

/* as jsonb_hash computes it, for a value inside a document */
static uint32
value_hash(JsonbValue *v)
{
	uint32		hash = 0;
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;

	if (v->type != jbvBinary)
	{
		JsonbHashScalarValue(v, &hash);
		return hash;
	}
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, false)) != WJB_DONE)
	{
		CHECK_FOR_INTERRUPTS();
		if (tok == WJB_BEGIN_ARRAY)
			hash ^= JB_FARRAY;
		else if (tok == WJB_BEGIN_OBJECT)
			hash ^= JB_FOBJECT;
		else if (tok == WJB_KEY || tok == WJB_VALUE || tok == WJB_ELEM)
			JsonbHashScalarValue(&elem, &hash);
	}
	return hash;
}

/*
 * Is some item equal to an earlier one?  If so, *second is the first such
 * item and *first the earlier one it equals (the items before *second are
 * all distinct, so there is exactly one).
 */
bool
json_find_equal_items(JsonbValue *items, int count, int *first, int *second)
{
	uint32	   *hashes = palloc(sizeof(uint32) * count);
	int			size = 2;
	int		   *slots;				/* item index + 1; 0 is empty */

	while (size < 2 * count)
		size *= 2;
	slots = palloc0(sizeof(int) * size);
	for (int j = 0; j < count; j++)
	{
		uint32		pos;

		CHECK_FOR_INTERRUPTS();
		jsv_spend(2 + json_value_size(&items[j]) / JSV_COMPARE_BYTES_PER_STEP);
		hashes[j] = value_hash(&items[j]);
		for (pos = hashes[j] & (size - 1); slots[pos] != 0; pos = (pos + 1) & (size - 1))
		{
			int			i = slots[pos] - 1;

			jsv_spend(1);
			if (hashes[i] != hashes[j])
				continue;
			jsv_spend(Min(json_value_size(&items[i]), json_value_size(&items[j])) /
					  JSV_COMPARE_BYTES_PER_STEP);
			if (json_values_equal(&items[i], &items[j]))
			{
				*first = i;
				*second = j;
				return true;
			}
		}
		slots[pos] = j + 1;
	}
	pfree(slots);
	pfree(hashes);
	return false;
}
