/*-------------------------------------------------------------------------
 * backoff.c
 *	  Exponential backoff with equal jitter (see backoff.h), drawn from
 *	  PostgreSQL's global PRNG.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"

#include "common/backoff.h"

int64
backoff_delay(int attempt, int64 first, int64 cap)
{
	int64		full = first << Min(Max(attempt, 0), 30);
	int64		half;

	full = Min(full, cap);
	half = full / 2;
	return half + (int64) pg_prng_uint64_range(&pg_global_prng_state, 0,
											  (uint64) (full - half));
}
