/*-------------------------------------------------------------------------
 * throttle.c
 *	  Token buckets and quotas in shared memory, shared by all backends:
 *	  the server-wide limit of authenticated calls (payment.rate_limit,
 *	  payment.burst_limit, like the reference API's stage throttling), one
 *	  bucket plus quota per API key (like a usage plan), and the server-wide
 *	  limit of failed authentications (payment.auth_failure_rate_limit,
 *	  payment.auth_failure_burst_limit), apart so that callers without a
 *	  valid credential cannot use up the others' calls.  State lives only in
 *	  shared memory, so a restart refills every bucket and resets every quota.
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
	Bucket		auth_failures;
	KeySlot		keys[THROTTLE_KEY_SLOTS];
} ThrottleShared;

double		payment_rate_limit = 0;
int			payment_burst_limit = 0;
double		payment_auth_failure_rate_limit = 0;
int			payment_auth_failure_burst_limit = 0;

static ThrottleShared *throttle = NULL;

/*
 * All server-wide: PGC_SIGHUP, so that every backend refills a bucket at
 * the same rate (and no session can lift a limit for itself).
 */
void
throttle_define_settings(void)
{
	DefineCustomRealVariable("payment.rate_limit",
							 gettext_noop("Server-wide steady rate of authenticated entry-point calls per second (0 = off)."),
							 gettext_noop("Each payment of a batch counts as one call; failed authentications do not count."),
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

	DefineCustomRealVariable("payment.auth_failure_rate_limit",
							 gettext_noop("Server-wide steady rate of failed authentications per second (0 = off)."),
							 gettext_noop("Beyond it, a failed authentication is refused as throttled; valid credentials are not affected."),
							 &payment_auth_failure_rate_limit,
							 0, 0, 1e9,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("payment.auth_failure_burst_limit",
							gettext_noop("Server-wide burst of failed authentications (0 = the rate, at least 1)."),
							NULL,
							&payment_auth_failure_burst_limit,
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
		/* filled on first use */
		throttle->server.tokens = -1;
		throttle->auth_failures.tokens = -1;
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
 * Refill a bucket for the time elapsed.  A bucket with negative tokens is
 * new and starts full.  Caller holds the lock.
 */
static void
bucket_refill(Bucket *b, double rate, int burst, TimestampTz now)
{
	if (b->tokens < 0)
		b->tokens = burst;
	else if (now > b->last)
		b->tokens = Min((double) burst,
						b->tokens + rate * (double) (now - b->last) / USECS_PER_SEC);
	/* a lowered burst takes effect at once */
	b->tokens = Min(b->tokens, (double) burst);
	b->last = now;
}

/*
 * After a refill: 0 when the bucket holds `calls` tokens, else the seconds
 * until it will, or -1 when it never can (more calls than the burst).
 */
static double
bucket_wait(const Bucket *b, double rate, int burst, int calls)
{
	if (calls > burst)
		return -1;
	if (b->tokens >= (double) calls)
		return 0;
	return ((double) calls - b->tokens) / rate;
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
 * Whether the key's quota and bucket allow `calls` calls now; takes nothing
 * but refills the bucket and starts a new quota period when one began.
 * Sets the slot's idle time.  Caller holds the lock.
 */
static ThrottleResult
key_check(KeySlot *slot, const ThrottleLimits *limits, int calls,
		  TimestampTz now, ThrottleRefusal *refusal)
{
	ThrottleResult result = THROTTLE_OK;
	int			burst = effective_burst(limits->rate, limits->burst);
	TimestampTz idle_after = now;
	double		tokens_after;

	/* quota periods are fixed windows aligned to the Unix epoch */
	if (limits->quota_limit >= 0)
	{
		TimestampTz unix_now = now + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
		int64		window = unix_now / limits->quota_period;
		TimestampTz window_end = (window + 1) * limits->quota_period;

		if (slot->quota_window != window)
		{
			slot->quota_window = window;
			slot->quota_used = 0;
		}
		/* (a single call over a quota of 0 waits for the next period, as ever) */
		if (calls > 1 && calls > limits->quota_limit)
		{
			result = THROTTLE_QUOTA;
			refusal->retry_after = -1;
			refusal->most = limits->quota_limit;
		}
		else if (slot->quota_used > limits->quota_limit - calls)
		{
			result = THROTTLE_QUOTA;
			refusal->retry_after = (double) (window_end - unix_now) / USECS_PER_SEC;
		}
		idle_after = now + (window_end - unix_now);
	}
	if (limits->rate > 0)
	{
		bucket_refill(&slot->bucket, limits->rate, burst, now);
		if (result == THROTTLE_OK)
		{
			double		wait = bucket_wait(&slot->bucket, limits->rate, burst, calls);

			if (wait != 0)
			{
				result = THROTTLE_RATE;
				refusal->retry_after = wait;
				refusal->most = burst;
			}
		}
		/* an idle slot may go once its bucket is full again (after this take, if allowed) */
		tokens_after = slot->bucket.tokens - (result == THROTTLE_OK ? calls : 0);
		idle_after = Max(idle_after,
						 now + (TimestampTz) ((burst - tokens_after) / limits->rate * USECS_PER_SEC));
	}
	slot->idle_after = idle_after;
	return result;
}

/*
 * Take `calls` calls (at least 1) of an authenticated caller: from the
 * server-wide bucket and, for an API key (key_id not NULL), from the key's
 * bucket and quota.  All or nothing, under one lock: nothing is taken unless
 * every limit allows all the calls now, so a refused batch, or a call its
 * key refuses, costs no limit anything.  The server-wide limit is checked
 * first.  On a refusal, *refusal says which limit refused and when to retry.
 */
ThrottleResult
throttle_calls(const char *key_id, const ThrottleLimits *limits, int calls,
			   ThrottleRefusal *refusal)
{
	bool		server_on = payment_rate_limit > 0;
	bool		key_on = key_id != NULL &&
		(limits->rate > 0 || limits->quota_limit >= 0);
	int			server_burst = effective_burst(payment_rate_limit, payment_burst_limit);
	ThrottleResult result = THROTTLE_OK;
	KeySlot    *slot = NULL;
	TimestampTz now;

	Assert(calls >= 1);
	memset(refusal, 0, sizeof(*refusal));
	if (!server_on && !key_on)
		return THROTTLE_OK;
	Assert(throttle != NULL);

	now = GetCurrentTimestamp();
	LWLockAcquire(throttle->lock, LW_EXCLUSIVE);
	if (server_on)
	{
		double		wait;

		bucket_refill(&throttle->server, payment_rate_limit, server_burst, now);
		wait = bucket_wait(&throttle->server, payment_rate_limit, server_burst, calls);
		if (wait != 0)
		{
			result = THROTTLE_RATE;
			refusal->server = true;
			refusal->retry_after = wait;
			refusal->most = server_burst;
		}
	}
	if (result == THROTTLE_OK && key_on)
	{
		slot = find_slot(key_id, now);
		if (slot == NULL)
			result = THROTTLE_NO_SLOT;
		else
			result = key_check(slot, limits, calls, now, refusal);
	}
	if (result == THROTTLE_OK)
	{
		if (server_on)
			throttle->server.tokens -= calls;
		if (slot != NULL && limits->rate > 0)
			slot->bucket.tokens -= calls;
		if (slot != NULL && limits->quota_limit >= 0)
			slot->quota_used += calls;
	}
	LWLockRelease(throttle->lock);

	return result;
}

/*
 * Count one failed authentication against its own server-wide bucket.
 * THROTTLE_RATE (and the seconds to wait) when the bucket is empty.
 */
ThrottleResult
throttle_auth_failure(double *retry_after)
{
	int			burst;
	double		wait;

	*retry_after = 0;
	if (payment_auth_failure_rate_limit <= 0)
		return THROTTLE_OK;
	Assert(throttle != NULL);

	burst = effective_burst(payment_auth_failure_rate_limit, payment_auth_failure_burst_limit);
	LWLockAcquire(throttle->lock, LW_EXCLUSIVE);
	bucket_refill(&throttle->auth_failures, payment_auth_failure_rate_limit, burst,
				  GetCurrentTimestamp());
	wait = bucket_wait(&throttle->auth_failures, payment_auth_failure_rate_limit, burst, 1);
	if (wait == 0)
		throttle->auth_failures.tokens -= 1.0;
	LWLockRelease(throttle->lock);

	*retry_after = wait;
	return wait > 0 ? THROTTLE_RATE : THROTTLE_OK;
}
