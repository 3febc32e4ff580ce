/*-------------------------------------------------------------------------
 * worker_privileges.c
 *	  What the payment workers may do, in one list: the privileges a
 *	  non-superuser payment.worker_role needs on the extension's objects.
 *	  payment.grant_worker_privileges(role) grants exactly these, and a
 *	  starting worker checks them, so that a missing one is one clear error
 *	  in the log rather than a failure in the middle of a batch.
 *
 *	  The reference design's consumer may write the payments table and
 *	  nothing else; here the consumer also settles the queue, so it also
 *	  reads the queue's tables and writes its batch log, retries and dead
 *	  letters.  It never reads API keys, never writes the schemas, and runs
 *	  no entry point.  payment.payments has row-level security for reader
 *	  roles: a policy for the worker role alone lets it see and insert every
 *	  row, without the BYPASSRLS attribute, which would reach every table.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_policy.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "drain/worker_privileges.h"

PG_FUNCTION_INFO_V1(payment_grant_worker_privileges);

typedef struct WorkerPrivilege
{
	const char *relation;		/* in schema payment */
	AclMode		modes;
} WorkerPrivilege;

static const WorkerPrivilege worker_privileges[] = {
	/* the store (SELECT: a repeated key's stored body) */
	{"payments", ACL_SELECT | ACL_INSERT},
	/* a dead letter is looked up by message_id before it is written */
	{"dead_letters", ACL_SELECT | ACL_INSERT},
	/* a settled payment's key record goes, with what it said of the call (1.2) */
	{"idempotency_keys", ACL_SELECT | ACL_DELETE},
	/* the active schema version a message is checked against */
	{"schemas", ACL_SELECT},
	/* messages retried later: claimed, delayed, deleted, added */
	{"queue_retry", ACL_SELECT | ACL_INSERT | ACL_UPDATE | ACL_DELETE},
	/* event tables: read, emptied once settled */
	{"queue_events_0", ACL_SELECT | ACL_TRUNCATE},
	{"queue_events_1", ACL_SELECT | ACL_TRUNCATE},
	{"queue_events_2", ACL_SELECT | ACL_TRUNCATE},
	/* the batch log: cut, settled, carried over, emptied */
	{"queue_batches_0", ACL_SELECT | ACL_INSERT | ACL_TRUNCATE},
	{"queue_batches_1", ACL_SELECT | ACL_INSERT | ACL_TRUNCATE},
	{"queue_batches_2", ACL_SELECT | ACL_INSERT | ACL_TRUNCATE},
	/* a replaced SQS queue, recorded and forgotten by the workers */
	{"retired_queues", ACL_SELECT | ACL_INSERT | ACL_UPDATE | ACL_DELETE},
};

/* the table whose row-level security the worker role is let through */
#define RLS_TABLE "payments"

static const struct
{
	AclMode		mode;
	const char *name;
}			privilege_names[] = {
	{ACL_SELECT, "SELECT"},
	{ACL_INSERT, "INSERT"},
	{ACL_UPDATE, "UPDATE"},
	{ACL_DELETE, "DELETE"},
	{ACL_TRUNCATE, "TRUNCATE"},
};

/* "SELECT, INSERT" for modes */
static void
append_modes(StringInfo out, AclMode modes)
{
	bool		first = true;

	for (int i = 0; i < lengthof(privilege_names); i++)
	{
		if ((modes & privilege_names[i].mode) == 0)
			continue;
		appendStringInfo(out, "%s%s", first ? "" : ", ", privilege_names[i].name);
		first = false;
	}
}

static char *
policy_name(Oid roleid)
{
	return psprintf("payments_worker_%u", roleid);
}

static bool
policy_exists(Oid relid, const char *name)
{
	Relation	catalog = table_open(PolicyRelationId, AccessShareLock);
	SysScanDesc scan;
	ScanKeyData key[2];
	bool		found;

	ScanKeyInit(&key[0], Anum_pg_policy_polrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	ScanKeyInit(&key[1], Anum_pg_policy_polname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum(name));
	scan = systable_beginscan(catalog, PolicyPolrelidPolnameIndexId, true, NULL, 2, key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(catalog, AccessShareLock);
	return found;
}

static Oid
payment_namespace(void)
{
	Oid			nsp = get_namespace_oid("payment", true);

	if (!OidIsValid(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"payment\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION payment first.")));
	return nsp;
}

static void
run_utility(const char *sql)
{
	if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "payment could not run \"%s\"", sql);
}

Datum
payment_grant_worker_privileges(PG_FUNCTION_ARGS)
{
	char	   *role = NameStr(*PG_GETARG_NAME(0));
	const char *grantee = quote_identifier(role);
	Oid			roleid;
	HeapTuple	tuple;
	bool		can_login;
	Oid			nsp;
	char	   *policy;
	Oid			rls_table;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to grant the payment workers' privileges"),
				 errdetail("Only a superuser may choose what the payment workers run as.")));

	roleid = get_role_oid(role, false);
	tuple = SearchSysCache1(AUTHOID, ObjectIdGetDatum(roleid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for role %u", roleid);
	can_login = ((Form_pg_authid) GETSTRUCT(tuple))->rolcanlogin;
	ReleaseSysCache(tuple);
	if (!can_login)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("role \"%s\" cannot log in", role),
				 errdetail("A background worker of PostgreSQL 15 connects only as a role with LOGIN."),
				 errhint("Run ALTER ROLE %s LOGIN; pg_hba.conf need not admit it.", grantee)));

	nsp = payment_namespace();
	SPI_connect();
	run_utility(psprintf("GRANT USAGE ON SCHEMA payment TO %s", grantee));
	for (int i = 0; i < lengthof(worker_privileges); i++)
	{
		StringInfoData sql;

		/* a table an older layout lacks */
		if (!OidIsValid(get_relname_relid(worker_privileges[i].relation, nsp)))
			continue;
		initStringInfo(&sql);
		appendStringInfoString(&sql, "GRANT ");
		append_modes(&sql, worker_privileges[i].modes);
		appendStringInfo(&sql, " ON payment.%s TO %s", worker_privileges[i].relation, grantee);
		run_utility(sql.data);
	}

	rls_table = get_relname_relid(RLS_TABLE, nsp);
	policy = policy_name(roleid);
	if (!policy_exists(rls_table, policy))
		run_utility(psprintf("CREATE POLICY %s ON payment." RLS_TABLE
							 " FOR ALL TO %s USING (true) WITH CHECK (true)",
							 quote_identifier(policy), grantee));
	SPI_finish();
	PG_RETURN_VOID();
}

void
worker_check_privileges(void)
{
	Oid			roleid = GetUserId();
	Oid			nsp;
	Oid			rls_table;
	StringInfoData missing;
	const char *role;

	if (superuser_arg(roleid))
		return;
	nsp = payment_namespace();
	role = GetUserNameFromId(roleid, false);
	initStringInfo(&missing);
	if (pg_namespace_aclcheck(nsp, roleid, ACL_USAGE) != ACLCHECK_OK)
		appendStringInfoString(&missing, "USAGE on schema payment");
	for (int i = 0; i < lengthof(worker_privileges); i++)
	{
		Oid			relid = get_relname_relid(worker_privileges[i].relation, nsp);
		AclMode		lacking;

		if (!OidIsValid(relid))
			continue;
		lacking = worker_privileges[i].modes &
			~pg_class_aclmask(relid, roleid, worker_privileges[i].modes, ACLMASK_ALL);
		if (lacking == 0)
			continue;
		if (missing.len > 0)
			appendStringInfoString(&missing, "; ");
		append_modes(&missing, lacking);
		appendStringInfo(&missing, " on payment.%s", worker_privileges[i].relation);
	}
	rls_table = get_relname_relid(RLS_TABLE, nsp);
	if (OidIsValid(rls_table) && !has_bypassrls_privilege(roleid) &&
		!policy_exists(rls_table, policy_name(roleid)))
		appendStringInfo(&missing, "%sthe row-level security policy of payment." RLS_TABLE,
						 missing.len > 0 ? "; " : "");
	if (missing.len == 0)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("payment worker role \"%s\" lacks privileges the workers need", role),
			 errdetail("Missing: %s.", missing.data),
			 errhint("As a superuser, run SELECT payment.grant_worker_privileges(%s);",
					 quote_literal_cstr(role))));
}
