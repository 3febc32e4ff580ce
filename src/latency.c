/*-------------------------------------------------------------------------
 * latency.c
 *	  Submit-to-stored latency over the last minute, without a write per
 *	  payment anywhere but shared memory: a ring of LATENCY_SECONDS
 *	  histograms, one per wall-clock second, each counting the payments
 *	  committed in that second by how long they had waited since they were
 *	  enqueued (QueueMessage.enqueued_at).  The buckets are log-linear,
 *	  four per power of two of microseconds, so a quantile read from them is
 *	  within 12.5% of the true one (the bucket's midpoint is reported).
 *
 *	  One spinlock guards the ring: a writer holds it to add one batch's
 *	  bucket counts (built beforehand, outside the lock) and, once a second,
 *	  to clear the slot it enters; a reader to add one slot of the last
 *	  minute to its sum.  Everything here resets at server restart.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "port/pg_bitutils.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "latency.h"

#define LATENCY_SECONDS 60
/* values below 4 us each have a bucket; from 4 us on, four per octave */
#define SUB_BUCKETS 4
/* up to 2^36 us (19 hours): anything longer counts as that */
#define MAX_OCTAVE 36
#define NUM_BUCKETS (SUB_BUCKETS * (MAX_OCTAVE - 1))

typedef struct LatencySecond
{
	int64		second;			/* TimestampTz / USECS_PER_SEC; -1: empty */
	uint64		count;
	int64		max_us;
	uint64		buckets[NUM_BUCKETS];
} LatencySecond;

typedef struct LatencyRing
{
	slock_t		mutex;
	LatencySecond seconds[LATENCY_SECONDS];
} LatencyRing;

static LatencyRing *ring = NULL;

static void
latency_shmem_attach(void *shared, bool first)
{
	ring = shared;
	if (!first)
		return;
	SpinLockInit(&ring->mutex);
	for (int i = 0; i < LATENCY_SECONDS; i++)
	{
		memset(&ring->seconds[i], 0, sizeof(LatencySecond));
		ring->seconds[i].second = -1;
	}
}

const PaymentShmem payment_latency_shmem = {"payment latency", sizeof(LatencyRing),
latency_shmem_attach};

static int
bucket_of(int64 us)
{
	int			msb;

	if (us < SUB_BUCKETS)
		return (int) Max(us, 0);
	if (us >= ((int64) 1 << MAX_OCTAVE))
		return NUM_BUCKETS - 1;
	msb = pg_leftmost_one_pos64((uint64) us);
	return SUB_BUCKETS * (msb - 1) + (int) ((us >> (msb - 2)) & (SUB_BUCKETS - 1));
}

/* the midpoint of bucket b, in microseconds */
static double
bucket_value(int b)
{
	int			msb;
	int			sub;
	double		width;

	if (b < SUB_BUCKETS)
		return (double) b;
	msb = b / SUB_BUCKETS + 1;
	sub = b % SUB_BUCKETS;
	width = (double) ((int64) 1 << (msb - 2));
	return (SUB_BUCKETS + sub) * width + width / 2.0;
}

void
payment_latency_note(TimestampTz stored_at, const TimestampTz *enqueued_at, int n)
{
	uint32		local[NUM_BUCKETS];
	uint64		count = 0;
	int64		max_us = 0;
	int64		second = stored_at / USECS_PER_SEC;
	LatencySecond *slot;

	if (ring == NULL || n <= 0)
		return;
	memset(local, 0, sizeof(local));
	for (int i = 0; i < n; i++)
	{
		int64		us;

		if (enqueued_at[i] == 0)
			continue;
		/* a clock (SQS's) a little ahead of ours is no negative wait */
		us = Max(stored_at - enqueued_at[i], 0);
		local[bucket_of(us)]++;
		max_us = Max(max_us, us);
		count++;
	}
	if (count == 0)
		return;

	slot = &ring->seconds[second % LATENCY_SECONDS];
	SpinLockAcquire(&ring->mutex);
	if (slot->second != second)
	{
		memset(slot->buckets, 0, sizeof(slot->buckets));
		slot->count = 0;
		slot->max_us = 0;
		slot->second = second;
	}
	for (int b = 0; b < NUM_BUCKETS; b++)
		slot->buckets[b] += local[b];
	slot->count += count;
	slot->max_us = Max(slot->max_us, max_us);
	SpinLockRelease(&ring->mutex);
}

/* the value below which a fraction q of the samples fall */
static double
quantile(const uint64 *buckets, uint64 samples, double q)
{
	uint64		rank = (uint64) ceil(q * (double) samples);
	uint64		seen = 0;

	rank = Max(rank, 1);
	for (int b = 0; b < NUM_BUCKETS; b++)
	{
		seen += buckets[b];
		if (seen >= rank)
			return bucket_value(b);
	}
	return bucket_value(NUM_BUCKETS - 1);
}

bool
payment_latency_read(PaymentLatency *out)
{
	uint64		sum[NUM_BUCKETS];
	int64		now = GetCurrentTimestamp() / USECS_PER_SEC;
	int64		max_us = 0;

	memset(out, 0, sizeof(*out));
	if (ring == NULL)
		return false;
	memset(sum, 0, sizeof(sum));
	/* slot by slot, so that a storing worker never waits for the whole sum */
	for (int i = 0; i < LATENCY_SECONDS; i++)
	{
		LatencySecond *slot = &ring->seconds[i];

		SpinLockAcquire(&ring->mutex);
		/* the current second and the 59 before it */
		if (slot->second > now - LATENCY_SECONDS && slot->second <= now)
		{
			for (int b = 0; b < NUM_BUCKETS; b++)
				sum[b] += slot->buckets[b];
			out->samples += slot->count;
			max_us = Max(max_us, slot->max_us);
		}
		SpinLockRelease(&ring->mutex);
	}

	if (out->samples > 0)
	{
		out->p50 = quantile(sum, out->samples, 0.50) / USECS_PER_SEC;
		out->p99 = quantile(sum, out->samples, 0.99) / USECS_PER_SEC;
		/* the midpoint may overstate the largest sample: never above it */
		out->p50 = Min(out->p50, (double) max_us / USECS_PER_SEC);
		out->p99 = Min(out->p99, (double) max_us / USECS_PER_SEC);
		out->max = (double) max_us / USECS_PER_SEC;
	}
	return true;
}
