/*-------------------------------------------------------------------------
 * throttle.h
 *	  Token-bucket throttling and quotas shared by all backends
 *	  (server-wide limit, per-API-key limits, and the server-wide limit of
 *	  failed authentications).
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_THROTTLE_H
#define PAYMENT_THROTTLE_H

/* longest key a caller may be throttled by (an API key's public id) */
#define THROTTLE_KEY_LEN 16

typedef struct ThrottleLimits
{
	double		rate;			/* tokens per second; <= 0: no throttling */
	int			burst;			/* bucket size; <= 0: derived from rate */
	int			quota_limit;	/* calls per period; < 0: no quota */
	int64		quota_period;	/* microseconds */
} ThrottleLimits;

typedef enum ThrottleResult
{
	THROTTLE_OK = 0,
	THROTTLE_RATE,				/* bucket empty: retry shortly */
	THROTTLE_QUOTA,				/* quota used up until the period ends */
	THROTTLE_NO_SLOT			/* more keys in use than slots */
} ThrottleResult;

/* why throttle_calls refused */
typedef struct ThrottleRefusal
{
	bool		server;			/* the server-wide limit refused, else the key's */
	double		retry_after;	/* seconds; < 0: never, more calls than the limit allows at once */
	int			most;			/* when never: the most calls the limit allows at once */
} ThrottleRefusal;

extern double payment_rate_limit;
extern int	payment_burst_limit;
extern double payment_auth_failure_rate_limit;
extern int	payment_auth_failure_burst_limit;

extern void throttle_define_settings(void);
extern Size throttle_shmem_size(void);
extern void throttle_shmem_startup(void);
extern bool throttle_available(void);

/*
 * Take `calls` (>= 1) calls of an authenticated caller from the server-wide
 * limit and, when key_id is not NULL, from that key's limits: all or nothing.
 */
extern ThrottleResult throttle_calls(const char *key_id,
									 const ThrottleLimits *limits, int calls,
									 ThrottleRefusal *refusal);

/* Count a failed authentication; on THROTTLE_RATE, *retry_after is the wait. */
extern ThrottleResult throttle_auth_failure(double *retry_after);

#endif							/* PAYMENT_THROTTLE_H */
