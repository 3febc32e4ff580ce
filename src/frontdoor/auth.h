/*-------------------------------------------------------------------------
 * auth.h
 *	  Front-door authentication of submit_payment and payment_status
 *	  (settings payment.auth, payment.jwt_*, API keys, throttling).
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_AUTH_H
#define PAYMENT_AUTH_H

#include "utils/jsonb.h"

typedef struct PaymentCaller
{
	char	   *user_id;		/* user the credential speaks for, or NULL */
	char	   *key_name;		/* API key name, or NULL */
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
 * Authenticate (and throttle) the caller of an entry point before any other
 * work.  credential may be NULL.  Raises an ERROR of class 28 when
 * authentication fails; fills *caller on success.
 */
extern void payment_authenticate(const char *credential, const char *operation,
								 PaymentCaller *caller);

/*
 * Allow the caller to act for user_id (the payload's userId, or the owner
 * of a queried payment).  Raises 42501 when a caller bound to a user acts for
 * another.  payment_id is for the audit log only and may be NULL.
 */
extern void payment_authorize_user(const PaymentCaller *caller,
								   const char *user_id, const char *payment_id);

/*
 * Defence in depth in place of a WAF: refuse a payload nested deeper than
 * payment.max_json_depth with SQLSTATE 54000 and an audit line.  Call it after
 * payment_authenticate and before validating the payload.
 */
extern void payment_defence_check(Jsonb *payload);

#endif							/* PAYMENT_AUTH_H */
