/*-------------------------------------------------------------------------
 * latency.h
 *	  Submit-to-stored latency over the last minute (latency.c): a ring of
 *	  per-second log-scale histograms in shared memory, fed by the store
 *	  after each commit and read by payment.metrics() / payment.stats.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_LATENCY_H
#define PAYMENT_LATENCY_H

#include "datatype/timestamp.h"

#include "payment.h"

/* the ring's struct in shared memory (see PaymentShmem) */
extern const PaymentShmem payment_latency_shmem;

/*
 * Note the payments stored (committed) at stored_at that were enqueued at
 * enqueued_at[0 .. n-1]; entries of 0 (enqueue time unknown) are skipped.
 */
extern void payment_latency_note(TimestampTz stored_at, const TimestampTz *enqueued_at, int n);

/* What the last minute's histograms say; seconds, NaN-free. */
typedef struct PaymentLatency
{
	uint64		samples;		/* payments stored in the last minute */
	double		p50;			/* seconds; valid when samples > 0 */
	double		p99;
	double		max;			/* upper bound of the highest bucket seen */
} PaymentLatency;

/* false when the library is not preloaded (no shared memory) */
extern bool payment_latency_read(PaymentLatency *out);

#endif							/* PAYMENT_LATENCY_H */
