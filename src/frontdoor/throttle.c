/*-------------------------------------------------------------------------
 * throttle.c
 *	  Token buckets and quotas in shared memory, shared by all backends:
 *	  the server-wide limit (payment.rate_limit, payment.burst_limit, like
 *	  the reference API's stage throttling) and one bucket plus quota per API
 *	  key (like a usage plan).  State lives only in shared memory, so a
 *	  restart refills every bucket and resets every quota.
 *
 *	  Only decisions are made here; auth.c reports refusals.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "frontdoor/throttle.h"

/* API keys tracked at once; an idle key's slot is reused when full */
#define THROTTLE_KEY_SLOTS 1024

typedef struct Bucket
{
	double		tokens;
	TimestampTz last;			/* last refill */
} Bucket;

typedef struct KeySlot
{
	char		key_id[THROTTLE_KEY_LEN + 1];	/* "" = free */
	Bucket		bucket;
	int64		quota_window;	/* index of the current quota period */
	int32		quota_used;
	TimestampTz idle_after;		/* slot may be reused after this */
} KeySlot;

typedef struct ThrottleShared
{
	LWLock	   *lock;
	Bucket		server;
	KeySlot		keys[THROTTLE_KEY_SLOTS];
} ThrottleShared;

double		payment_rate_limit = 0;
int			payment_burst_limit = 0;

static ThrottleShared *throttle = NULL;

void
throttle_define_settings(void)
{
	DefineCustomRealVariable("payment.rate_limit",
							 gettext_noop("Server-wide steady rate of authenticated entry-point calls per second (0 = off)."),
							 NULL,
							 &payment_rate_limit,
							 0, 0, 1e9,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("payment.burst_limit",
							gettext_noop("Server-wide burst of entry-point calls (0 = the rate, at least 1)."),
							NULL,
							&payment_burst_limit,
							0, 0, INT_MAX,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
}

/*
 * Called from the shmem_request hook (PG15), which is also the only place a
 * named LWLock tranche may be requested.
 */
Size
throttle_shmem_size(void)
{
	RequestNamedLWLockTranche("payment_throttle", 1);
	return MAXALIGN(sizeof(ThrottleShared));
}

void
throttle_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	throttle = ShmemInitStruct("payment throttle", sizeof(ThrottleShared), &found);
	if (!found)
	{
		memset(throttle, 0, sizeof(ThrottleShared));
		throttle->lock = &(GetNamedLWLockTranche("payment_throttle"))->lock;
		throttle->server.tokens = -1;	/* filled on first use */
	}
	LWLockRelease(AddinShmemInitLock);
}

bool
throttle_available(void)
{
	return throttle != NULL;
}

static int
effective_burst(double rate, int burst)
{
	if (burst > 0)
		return burst;
	return (int) Max(1.0, ceil(rate));
}

/*
 * Refill a bucket for the time elapsed and try to take one token.  Returns 0
 * when taken, else the seconds until a token will be there.  A bucket with
 * negative tokens is new and starts full.
 */
static double
bucket_take(Bucket *b, double rate, int burst, TimestampTz now, bool take)
{
	if (b->tokens < 0)
		b->tokens = burst;
	else if (now > b->last)
		b->tokens = Min((double) burst,
						b->tokens + rate * (double) (now - b->last) / USECS_PER_SEC);
	/* a lowered burst takes effect at once */
	b->tokens = Min(b->tokens, (double) burst);
	b->last = now;

	if (b->tokens >= 1.0)
	{
		if (take)
			b->tokens -= 1.0;
		return 0;
	}
	return (1.0 - b->tokens) / rate;
}

ThrottleResult
throttle_server(double *retry_after)
{
	double		wait;

	*retry_after = 0;
	if (payment_rate_limit <= 0)
		return THROTTLE_OK;
	Assert(throttle != NULL);

	LWLockAcquire(throttle->lock, LW_EXCLUSIVE);
	wait = bucket_take(&throttle->server, payment_rate_limit,
					   effective_burst(payment_rate_limit, payment_burst_limit),
					   GetCurrentTimestamp(), true);
	LWLockRelease(throttle->lock);

	*retry_after = wait;
	return wait > 0 ? THROTTLE_RATE : THROTTLE_OK;
}

/* Find the key's slot, or claim a free or idle one.  Caller holds the lock. */
static KeySlot *
find_slot(const char *key_id, TimestampTz now)
{
	KeySlot    *free_slot = NULL;

	for (int i = 0; i < THROTTLE_KEY_SLOTS; i++)
	{
		KeySlot    *s = &throttle->keys[i];

		if (s->key_id[0] == '\0' || s->idle_after < now)
		{
			if (free_slot == NULL)
				free_slot = s;
		}
		if (strcmp(s->key_id, key_id) == 0)
			return s;
	}
	if (free_slot != NULL)
	{
		strlcpy(free_slot->key_id, key_id, sizeof(free_slot->key_id));
		free_slot->bucket.tokens = -1;
		free_slot->quota_window = -1;
		free_slot->quota_used = 0;
	}
	return free_slot;
}

/*
 * Take one call from the key's bucket and quota.  Nothing is taken unless
 * both allow the call, so a throttled call does not use up quota.
 */
ThrottleResult
throttle_key(const char *key_id, const ThrottleLimits *limits,
			 double *retry_after)
{
	TimestampTz now = GetCurrentTimestamp();
	ThrottleResult result = THROTTLE_OK;
	KeySlot    *slot;
	int			burst = effective_burst(limits->rate, limits->burst);
	int64		window = 0;

	*retry_after = 0;
	if (limits->rate <= 0 && limits->quota_limit < 0)
		return THROTTLE_OK;
	Assert(throttle != NULL);

	LWLockAcquire(throttle->lock, LW_EXCLUSIVE);
	slot = find_slot(key_id, now);
	if (slot == NULL)
		result = THROTTLE_NO_SLOT;
	else
	{
		TimestampTz idle_after = now;

		/* quota periods are fixed windows aligned to the Unix epoch */
		if (limits->quota_limit >= 0)
		{
			TimestampTz unix_now = now + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;

			window = unix_now / limits->quota_period;
			if (slot->quota_window != window)
			{
				slot->quota_window = window;
				slot->quota_used = 0;
			}
			if (slot->quota_used >= limits->quota_limit)
			{
				result = THROTTLE_QUOTA;
				*retry_after = (double) ((window + 1) * limits->quota_period - unix_now) / USECS_PER_SEC;
			}
			idle_after = now + ((window + 1) * limits->quota_period - unix_now);
		}
		if (result == THROTTLE_OK && limits->rate > 0)
		{
			double		wait = bucket_take(&slot->bucket, limits->rate, burst, now, false);

			if (wait > 0)
			{
				result = THROTTLE_RATE;
				*retry_after = wait;
			}
		}
		if (result == THROTTLE_OK)
		{
			if (limits->rate > 0)
				slot->bucket.tokens -= 1.0;
			if (limits->quota_limit >= 0)
				slot->quota_used++;
		}
		/* an idle slot may go once its bucket is full again */
		if (limits->rate > 0)
			idle_after = Max(idle_after,
							 now + (TimestampTz) ((burst - slot->bucket.tokens) / limits->rate * USECS_PER_SEC));
		slot->idle_after = idle_after;
	}
	LWLockRelease(throttle->lock);

	return result;
}
