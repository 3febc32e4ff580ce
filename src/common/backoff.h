/*-------------------------------------------------------------------------
 * backoff.h
 *	  Exponential backoff with jitter, for every retry in the extension.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_BACKOFF_H
#define PAYMENT_BACKOFF_H

/*
 * The delay before retry number attempt (0 for the first): first * 2^attempt,
 * at most cap, with "equal jitter": half of it fixed, half random, so that
 * retries spread out but never come back at once.  Units are the caller's.
 */
extern int64 backoff_delay(int attempt, int64 first, int64 cap);

#endif							/* PAYMENT_BACKOFF_H */
