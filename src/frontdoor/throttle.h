/*-------------------------------------------------------------------------
 * throttle.h
 *	  Token-bucket throttling and quotas shared by all backends
 *	  (server-wide limit and per-API-key limits).
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

extern double payment_rate_limit;
extern int	payment_burst_limit;

extern void throttle_define_settings(void);
extern Size throttle_shmem_size(void);
extern void throttle_shmem_startup(void);
extern bool throttle_available(void);

/* On a refusal, *retry_after is the number of seconds to wait. */
extern ThrottleResult throttle_server(double *retry_after);
extern ThrottleResult throttle_key(const char *key_id,
								   const ThrottleLimits *limits,
								   double *retry_after);

#endif							/* PAYMENT_THROTTLE_H */
