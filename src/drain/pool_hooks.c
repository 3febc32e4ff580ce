/*-------------------------------------------------------------------------
 * pool_hooks.c
 *	  The ProcessUtility hook of the pool (payment.database '*'): DROP
 *	  DATABASE, and ALTER DATABASE ... RENAME, which refuse to run while
 *	  another session is connected, first stop the payment workers of that
 *	  database and wait for them (at most DROP_WAIT_MS; DROP DATABASE then
 *	  waits its own 5 s for other sessions), as TimescaleDB's loader stops a
 *	  database's scheduler.  The launcher starts none there meanwhile; after
 *	  a rename, or a DROP that failed, it serves the database again.  With
 *	  one named database the hook does nothing: as before, the workers'
 *	  database cannot be dropped while they run.  DROP EXTENSION payment
 *	  wakes the database's workers at commit, so that they leave at once
 *	  rather than at their next idle look.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"

#include "drain/pool.h"
#include "drain/pool_hooks.h"
#include "payment.h"

#define DROP_WAIT_MS 5000

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* the database a statement drops or renames, or InvalidOid */
static Oid
database_to_stop(Node *stmt, bool *drop)
{
	*drop = false;
	if (IsA(stmt, DropdbStmt))
	{
		*drop = true;
		return get_database_oid(((DropdbStmt *) stmt)->dbname, true);
	}
	if (IsA(stmt, RenameStmt) && ((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
		return get_database_oid(((RenameStmt *) stmt)->subname, true);
	return InvalidOid;
}

/* DROP EXTENSION naming payment */
static bool
drops_payment(Node *stmt)
{
	ListCell   *lc;

	if (!IsA(stmt, DropStmt) || ((DropStmt *) stmt)->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, ((DropStmt *) stmt)->objects)
		if (strcmp(strVal(lfirst(lc)), "payment") == 0)
			return true;
	return false;
}

static void
pool_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					 ProcessUtilityContext context, ParamListInfo params,
					 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	bool		drop = false;
	Oid			dboid = payment_serves_every_database() ?
		database_to_stop(pstmt->utilityStmt, &drop) : InvalidOid;
	int			p = OidIsValid(dboid) ? pool_stop_database(dboid, DROP_WAIT_MS) : -1;

	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
									queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		/* the database is still there: served again */
		pool_database_changed(p, true);
		PG_RE_THROW();
	}
	PG_END_TRY();
	pool_database_changed(p, !drop);
	if (payment_serves_every_database() && drops_payment(pstmt->utilityStmt))
		payment_note_extension_dropped();
}

void
pool_install_hooks(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = pool_process_utility;
}
