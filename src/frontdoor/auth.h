/*-------------------------------------------------------------------------
 * auth.h
 *	  Front-door authentication of submit_payment and payment_status
 *	  (settings payment.auth, payment.jwt_*, API keys, throttling).
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_AUTH_H
#define PAYMENT_AUTH_H

#include "utils/jsonb.h"

#include "frontdoor/throttle.h"

typedef struct PaymentCaller
{
	char	   *user_id;		/* user the credential speaks for, or NULL */
	char	   *key_name;		/* API key name, or NULL */
	/* for throttling: the API key's public id ("" if none) and its limits */
	char		key_id[THROTTLE_KEY_LEN + 1];
	ThrottleLimits key_limits;
} PaymentCaller;

/* define settings; called from _PG_init */
extern void payment_auth_init(void);

/*
 * Shared memory for throttling; called from payment.c's shmem hooks.
 * payment_auth_shmem_size also requests the LWLock tranche, so call it only
 * from the shmem_request hook.
 */
extern Size payment_auth_shmem_size(void);
extern void payment_auth_shmem_startup(void);

/*
 * Optional, just before payment_authenticate: the payment id the call is
 * about (unvalidated, may be NULL), so that a refusal's audit line can name
 * it.  Used for logging only.
 */
extern void payment_audit_note_payment(const char *payment_id);

/*
 * Authenticate and throttle the caller of an entry point, as one call,
 * before any other work.  credential may be NULL.  Raises an ERROR of class
 * 28 when authentication fails (53400 once failures exceed
 * payment.auth_failure_rate_limit), 53400 when throttled; fills *caller on
 * success.  Same as payment_identify then payment_throttle(caller, 1).
 */
extern void payment_authenticate(const char *credential, const char *operation,
								 PaymentCaller *caller);

/*
 * The two halves of payment_authenticate, for an entry point that counts as
 * several calls (submit_payments: one per payment) and checks its argument
 * in between.  Every successful payment_identify must be followed by
 * payment_throttle before the call does any work.
 */
extern void payment_identify(const char *credential, const char *operation,
							 PaymentCaller *caller);

/*
 * Take `calls` calls (at least 1) from the server-wide limit and the API
 * key's bucket and quota, all or none; raises 53400 when any of them
 * cannot allow them all now.
 */
extern void payment_throttle(const PaymentCaller *caller, int calls);

/*
 * Allow the caller to act for user_id (the payload's userId, or the owner
 * of a queried payment).  Raises 42501 when a caller bound to a user acts for
 * another.  payment_id is for the audit log only and may be NULL.
 */
extern void payment_authorize_user(const PaymentCaller *caller,
								   const char *user_id, const char *payment_id);

/*
 * Who made the call, as payment.payments.submitted_by records it: the API
 * key's public id, the token's user, or (payment.auth = 'role') the
 * session's role (the one SET ROLE chose, not the function's owner).
 */
extern char *payment_caller_name(const PaymentCaller *caller);

/* a header of PostgREST's request.headers (name in lower case), or NULL */
extern char *payment_request_header(const char *header);

/*
 * Defence in depth in place of a WAF: refuse a payload nested deeper than
 * payment.max_json_depth with SQLSTATE 54000 and an audit line.  Call it after
 * payment_authenticate and before validating the payload.
 */
extern void payment_defence_check(Jsonb *payload);

#endif							/* PAYMENT_AUTH_H */
