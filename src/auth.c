/*-------------------------------------------------------------------------
 * auth.c
 *	  Front-door authentication.  STUB: only payment.auth = 'role' (rely on
 *	  PostgreSQL's own authentication and EXECUTE grants) until issue 4.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "auth.h"

void
payment_auth_init(void)
{
}

Size
payment_auth_shmem_size(void)
{
	return 0;
}

void
payment_auth_shmem_startup(void)
{
}

void
payment_authenticate(const char *credential, const char *operation,
					 PaymentCaller *caller)
{
	caller->user_id = NULL;
	caller->key_name = NULL;
}

void
payment_authorize_user(const PaymentCaller *caller, const char *user_id,
					   const char *payment_id)
{
}
