/*-------------------------------------------------------------------------
 * worker_session.c
 *	  The session a payment worker runs its SQL in: the role it connects as
 *	  (payment.worker_role) and the settings it pins, so that nothing a
 *	  database owner or a role can set reaches the statements it runs; and
 *	  whether the database is ready for it (the extension installed, the
 *	  role's privileges granted, and the database able to store: not
 *	  read-only, payment.payments not locked past lock_timeout).
 *
 *	  A background worker takes the database's and the role's settings
 *	  (ALTER DATABASE / ALTER ROLE ... SET) as a client session does.  The
 *	  owner of the database, who need not be a superuser, could otherwise
 *	  set its search_path to a schema of theirs and have a function of theirs
 *	  (clock_timestamp, make_interval, an operator) run by the workers, with
 *	  the workers' rights.  search_path is therefore pinned at the override
 *	  level, above every database, role and file setting, and the isolation
 *	  level the claims depend on with it.  Other settings a database may
 *	  set (default_transaction_read_only, lock_timeout) are kept: they are
 *	  the operator's and the worker handles them as faults of the database.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "drain/pool.h"
#include "drain/worker_privileges.h"
#include "drain/worker_session.h"
#include "payment.h"

char	   *payment_worker_role = NULL;

/* what the workers' SQL resolves names in: the catalog only */
#define WORKER_SEARCH_PATH "pg_catalog, pg_temp"

void
worker_session_define_settings(void)
{
	GucContext	restart_only = process_shared_preload_libraries_in_progress ?
		PGC_POSTMASTER : PGC_SIGHUP;

	DefineCustomStringVariable("payment.worker_role",
							   gettext_noop("Role the payment workers connect as; empty: the bootstrap superuser."),
							   gettext_noop("Give it what the workers need with payment.grant_worker_privileges(role)."),
							   &payment_worker_role,
							   "",
							   restart_only,
							   0,
							   NULL, NULL, NULL);
}

void
worker_session_connect(void)
{
	const char *role = payment_worker_role && payment_worker_role[0] != '\0' ?
		payment_worker_role : NULL;

	BackgroundWorkerInitializeConnection(pool_worker_database(), role, 0);

	SetConfigOption("search_path", WORKER_SEARCH_PATH, PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * Whether the database can store now, without claiming anything: a claim
 * that would fail on the database (read-only, a lock on payment.payments)
 * counts a receive against its messages in SQS, which no give-back undoes.
 * Raises what the store would (25006, 55P03 under lock_timeout), so that
 * the worker's fault log sees the same fault and stays quiet.
 */
static void
check_can_store(void)
{
	Oid			payments = get_relname_relid("payments", get_namespace_oid("payment", false));

	PreventCommandIfReadOnly("INSERT");
	if (OidIsValid(payments))
		LockRelationOid(payments, RowExclusiveLock);
}

/*
 * The worker serves its database once CREATE EXTENSION payment ran there,
 * and its role has the privileges it needs (else 42501, raised).  Looked
 * at again after every failure: then it also checks that the database can
 * store (check_can_store) before the worker claims again.
 */
bool
worker_session_ready(void)
{
	MemoryContext context = CurrentMemoryContext;
	bool		installed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("payment", true));
	if (installed)
	{
		worker_check_privileges();
		check_can_store();
	}
	CommitTransactionCommand();
	/* commit leaves TopMemoryContext current: the batch must not go there */
	MemoryContextSwitchTo(context);
	return installed;
}
