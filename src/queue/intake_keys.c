/*-------------------------------------------------------------------------
 * intake_keys.c
 *	  The key record of accepted payments (payment.idempotency_keys, from
 *	  extension 1.2): what makes the front door idempotent on both backends.
 *
 *	  A payment's key (paymentId, userId) is recorded in the transaction
 *	  that enqueues it, with a digest of its body (json_digest), the
 *	  request id and the caller, and removed in the store's transaction
 *	  that settles it; from then on payment.payments is the record (a
 *	  dead-lettered payment leaves none, so that submitting it again is a
 *	  fresh attempt).  The table thus holds the backlog only, and a retry
 *	  is found either here or among the stored payments.
 *
 *	  A payment already stored is answered from payment.payments, writing
 *	  nothing.  Otherwise the record is taken, by INSERT ... ON CONFLICT DO
 *	  NOTHING: its unique index makes a second transaction submitting the
 *	  same key wait for the first, and raises 40001 for a REPEATABLE READ
 *	  caller whose snapshot cannot see the committed record.  Then the
 *	  stored payments are looked at again, with a snapshot newer than the
 *	  wait: a worker that stored the payment meanwhile has removed the
 *	  record, and its stored row is what the caller is answered from.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "nodes/execnodes.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "common/json_util.h"
#include "payment.h"
#include "queue/intake_keys.h"
#include "queue/layout.h"
#include "schema/json_digest.h"
#include "schema/payment_schema.h"

/* a key's record (or stored payment) as found */
typedef struct FoundKey
{
	bool		found;
	bool		same_body;
	char	   *message_id;
	char	   *request_id;
	char	   *submitted_by;
	char	   *accepted_at;	/* text, for the conflict's detail */
} FoundKey;

static const Oid record_types[6] = {UUIDOID, UUIDOID, TEXTOID, BYTEAOID, TEXTOID, TEXTOID};

bool
intake_keys_in_use(void)
{
	return queue_layout()->idempotency_keys;
}

static Datum
digest_datum(const unsigned char *digest)
{
	bytea	   *b = palloc(VARHDRSZ + SHA256_BYTES);

	SET_VARSIZE(b, VARHDRSZ + SHA256_BYTES);
	memcpy(VARDATA(b), digest, SHA256_BYTES);
	return PointerGetDatum(b);
}

static void
record_values(const QueuedPayment *p, Datum *values, bool *nulls)
{
	values[0] = p->payment_id;
	values[1] = p->user_id;
	values[2] = p->message_id ? CStringGetTextDatum(p->message_id) : (Datum) 0;
	values[3] = digest_datum(p->body_digest);
	values[4] = p->request_id ? CStringGetTextDatum(p->request_id) : (Datum) 0;
	values[5] = p->submitted_by ? CStringGetTextDatum(p->submitted_by) : (Datum) 0;
	for (int c = 0; c < 6; c++)
		nulls[c] = values[c] == (Datum) 0;
}

static char *
nulls_of(const bool *nulls, int n)
{
	char	   *out = palloc(n + 1);

	for (int i = 0; i < n; i++)
		out[i] = nulls[i] ? 'n' : ' ';
	out[n] = '\0';
	return out;
}

/* Take one key's record; true when this call took it. */
static bool
record_one(const QueuedPayment *p)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[6];
	bool		nulls[6];

	record_values(p, values, nulls);
	payment_prepare(&plan,
					"INSERT INTO payment.idempotency_keys"
					" (payment_id, user_id, message_id, body_digest, request_id, submitted_by)"
					" VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
					6, (Oid *) record_types);
	if (SPI_execute_plan(plan, values, nulls_of(nulls, 6), false, 0) != SPI_OK_INSERT)
		elog(ERROR, "recording a payment's key failed");
	return SPI_processed == 1;
}

/*
 * Take the records of keys not recorded yet, written without the executor
 * (as the embedded queue appends an event): a submit's own time went mostly
 * to the executor around one insert, and ON CONFLICT's speculative
 * insertion writes a second WAL record per row.  Each row goes into the
 * table, then into its unique index with a check that reports a possible
 * duplicate instead of waiting or raising; taken[i] says which rows this
 * call took.  A row that finds its key possibly taken (recorded, being
 * recorded by another transaction, or earlier in this call) is deleted
 * again, and the careful path (settle_conflict) decides.  The caller is the
 * extension's own code, running as its owner: no privilege to check.
 */
static void
record_fast(const QueuedPayment *payments, int count, bool *taken)
{
	Relation	rel = table_open(get_relname_relid("idempotency_keys",
												  get_namespace_oid("payment", false)),
								 RowExclusiveLock);
	TupleDesc	desc = RelationGetDescr(rel);
	TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);
	EState	   *estate = CreateExecutorState();
	ResultRelInfo *info = makeNode(ResultRelInfo);
	TimestampTz now = GetCurrentTimestamp();

	InitResultRelInfo(info, rel, 1, NULL, 0);
	ExecOpenIndices(info, false);
	for (int i = 0; i < count; i++)
	{
		Datum		values[6];
		bool		nulls[6];
		bool		conflict = false;
		List	   *possible;

		record_values(&payments[i], values, nulls);
		ExecClearTuple(slot);
		for (int a = 0; a < desc->natts; a++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, a);
			const char *name = NameStr(att->attname);
			static const char *const columns[6] = {"payment_id", "user_id", "message_id",
			"body_digest", "request_id", "submitted_by"};
			int			c;

			slot->tts_isnull[a] = true;
			if (att->attisdropped)
				continue;
			if (strcmp(name, "accepted_at") == 0)
			{
				slot->tts_values[a] = TimestampTzGetDatum(now);
				slot->tts_isnull[a] = false;
				continue;
			}
			for (c = 0; c < 6 && strcmp(name, columns[c]) != 0; c++)
				;
			if (c == 6)
				elog(ERROR, "payment.idempotency_keys has a column the key record does not fill: %s",
					 name);
			slot->tts_values[a] = values[c];
			slot->tts_isnull[a] = nulls[c];
		}
		ExecStoreVirtualTuple(slot);
		table_tuple_insert(rel, slot, GetCurrentCommandId(true), 0, NULL);
		possible = ExecInsertIndexTuples(info, slot, estate, false, true, &conflict, NIL);
		taken[i] = possible == NIL;
		if (!taken[i])
		{
			/* visible to the delete once the command counter moved on */
			CommandCounterIncrement();
			simple_table_tuple_delete(rel, &slot->tts_tid, GetActiveSnapshot());
		}
		list_free(possible);
	}
	ExecCloseIndices(info);
	FreeExecutorState(estate);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
	/* later commands of the transaction (payment_status, the careful path) see the rows */
	CommandCounterIncrement();
}

/*
 * Lookups of keys in the key index of payment.payments or of the key
 * records: the table, its index and a scan opened once for many keys of a
 * call, with one snapshot.  Intake must not wait for the store's table:
 * while someone holds a lock on it that conflicts with reading (an ALTER
 * TABLE, a LOCK), usable is false and every key counts as not found; the
 * store then tells a copy (a duplicate) or another body (a conflict)
 * later, as it always did.
 */
typedef struct KeyProbe
{
	bool		usable;
	Relation	heap;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	Snapshot	snapshot;
} KeyProbe;

/* relname in schema payment; snapshot NULL: the latest */
static void
probe_begin(KeyProbe *pr, const char *relname, Snapshot snapshot)
{
	Oid			relid = get_relname_relid(relname, get_namespace_oid("payment", false));
	Oid			index_oid;

	memset(pr, 0, sizeof(*pr));
	if (!ConditionalLockRelationOid(relid, AccessShareLock))
		return;
	pr->heap = table_open(relid, NoLock);
	index_oid = RelationGetPrimaryKeyIndex(pr->heap);
	if (!ConditionalLockRelationOid(index_oid, AccessShareLock))
	{
		table_close(pr->heap, AccessShareLock);
		return;
	}
	pr->index = index_open(index_oid, NoLock);
	pr->snapshot = RegisterSnapshot(snapshot ? snapshot : GetLatestSnapshot());
	pr->scan = index_beginscan(pr->heap, pr->index, pr->snapshot, 2, 0);
	pr->slot = table_slot_create(pr->heap, NULL);
	pr->usable = true;
}

static bool
probe_find(KeyProbe *pr, const QueuedPayment *p)
{
	ScanKeyData keys[2];

	if (!pr->usable)
		return false;
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_UUID_EQ, p->payment_id);
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_UUID_EQ, p->user_id);
	index_rescan(pr->scan, keys, 2, NULL, 0);
	return index_getnext_slot(pr->scan, ForwardScanDirection, pr->slot);
}

static void
probe_end(KeyProbe *pr)
{
	if (!pr->usable)
		return;
	index_endscan(pr->scan);
	ExecDropSingleTupleTableSlot(pr->slot);
	UnregisterSnapshot(pr->snapshot);
	index_close(pr->index, AccessShareLock);
	table_close(pr->heap, AccessShareLock);
}

/* whether payment.payments has the key, as snapshot (NULL: the latest) sees it */
static bool
stored_in(const QueuedPayment *p, Snapshot snapshot)
{
	KeyProbe	probe;
	bool		found;

	probe_begin(&probe, "payments", snapshot);
	found = probe_find(&probe, p);
	probe_end(&probe);
	return found;
}

/*
 * A payment found stored with the latest snapshot: a REPEATABLE READ
 * caller whose snapshot does not see it cannot be answered from it: 40001,
 * as PostgreSQL's own ON CONFLICT does.
 */
static void
refuse_unseen_store(const QueuedPayment *p)
{
	if (IsolationUsesXactSnapshot() && !stored_in(p, GetTransactionSnapshot()))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to a concurrent store of the payment"),
				 errhint("Retry the transaction.")));
}

/*
 * Whether the key's payment is stored, looked at with the latest snapshot
 * (pr: the payments probe of the call; NULL: one of its own): the record's
 * insert may have waited for the worker that stored it.
 */
static bool
stored_now(KeyProbe *pr, const QueuedPayment *p)
{
	if (!(pr ? probe_find(pr, p) : stored_in(p, NULL)))
		return false;
	refuse_unseen_store(p);
	return true;
}

static char *
value_or_null(int col)
{
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);
}

/*
 * The key's row of a table (sql: its message id, request id, caller, time
 * and body or digest, by $1 and $2), as the statement's snapshot sees it;
 * *last is the fifth column.
 */
static FoundKey
find_key(SPIPlanPtr *plan, const char *sql, const QueuedPayment *p, Datum *last)
{
	FoundKey	found = {0};
	bool		isnull;

	payment_prepare(plan, sql, 2, (Oid[]) {UUIDOID, UUIDOID});
	if (SPI_execute_plan(*plan, (Datum[]) {p->payment_id, p->user_id}, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "reading a payment's key failed");
	if (SPI_processed == 0)
		return found;
	found.found = true;
	found.message_id = value_or_null(1);
	found.request_id = value_or_null(2);
	found.submitted_by = value_or_null(3);
	found.accepted_at = value_or_null(4);
	*last = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull);
	if (isnull)
		*last = (Datum) 0;
	return found;
}

/* The key's record. */
static FoundKey
find_record(const QueuedPayment *p)
{
	static SPIPlanPtr plan = NULL;
	Datum		digest;
	FoundKey	found = find_key(&plan,
								 "SELECT message_id, request_id, submitted_by, accepted_at::text, body_digest"
								 "  FROM payment.idempotency_keys WHERE payment_id = $1 AND user_id = $2",
								 p, &digest);

	found.same_body = found.found && digest != (Datum) 0 &&
		VARSIZE_ANY_EXHDR(DatumGetPointer(digest)) == SHA256_BYTES &&
		memcmp(VARDATA_ANY(DatumGetPointer(digest)), p->body_digest, SHA256_BYTES) == 0;
	return found;
}

/* The key's stored payment. */
static FoundKey
find_stored(const QueuedPayment *p)
{
	static SPIPlanPtr plan = NULL;
	Datum		body;
	unsigned char digest[SHA256_BYTES];
	FoundKey	found = find_key(&plan,
								 "SELECT message_id, request_id, submitted_by, stored_at::text, body"
								 "  FROM payment.payments WHERE payment_id = $1 AND user_id = $2",
								 p, &body);

	if (found.found)
	{
		json_digest(DatumGetJsonbP(body), digest);
		found.same_body = memcmp(digest, p->body_digest, SHA256_BYTES) == 0;
	}
	return found;
}

/* Give back a record this call took, for a payment found stored. */
static void
drop_record(const QueuedPayment *p)
{
	static SPIPlanPtr plan = NULL;

	payment_prepare(&plan,
					"DELETE FROM payment.idempotency_keys WHERE payment_id = $1 AND user_id = $2",
					2, (Oid[]) {UUIDOID, UUIDOID});
	if (SPI_execute_plan(plan, (Datum[]) {p->payment_id, p->user_id}, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "giving back a payment's key record failed");
}

static char *
key_text(Datum uuid)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, uuid));
}

/* A payment accepted before: its first answer, or 23505 for another body. */
static void
answer_found(const QueuedPayment *payments, int i, const FoundKey *found, KeyAnswer *answer)
{
	const QueuedPayment *p = &payments[i];

	if (!found->same_body)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("payment %s of user %s was already accepted with a different body",
						key_text(p->payment_id), key_text(p->user_id)),
				 errdetail("It was accepted as message %s at %s.",
						   found->message_id ? found->message_id : "(being enqueued)",
						   found->accepted_at),
				 errhint("Use a new paymentId for a different payment; submit the same body again to get the first answer.")));
	answer->replayed = true;
	answer->replay_of = -1;
	answer->message_id = found->message_id;
	answer->request_id = found->request_id;
	answer->submitted_by = found->submitted_by;
	/* a record without a message name is this transaction's, taken by an earlier payment of the call */
	if (found->message_id == NULL)
		for (int j = 0; j < i; j++)
			if (memcmp(DatumGetUUIDP(payments[j].payment_id), DatumGetUUIDP(p->payment_id), UUID_LEN) == 0 &&
				memcmp(DatumGetUUIDP(payments[j].user_id), DatumGetUUIDP(p->user_id), UUID_LEN) == 0)
			{
				answer->replay_of = j;
				break;
			}
}

/*
 * The record was taken by this call: a payment stored meanwhile (stored:
 * looked at after the record was taken) is a replay instead.
 */
static void
settle_taken(const QueuedPayment *payments, int i, KeyAnswer *answer, bool stored)
{
	FoundKey	found;

	if (!stored)
		return;
	drop_record(&payments[i]);
	found = find_stored(&payments[i]);
	if (!found.found)
		elog(ERROR, "stored payment vanished while answering a replay");
	answer_found(payments, i, &found, answer);
}

/* a key recorded by someone else (or earlier in the call): find what it is now */
static void
settle_conflict(const QueuedPayment *payments, int i, KeyAnswer *answer)
{
	/* each turn sees a record or a payment, unless a worker settled the key in between */
	for (int attempt = 0; attempt < 10; attempt++)
	{
		FoundKey	found = find_record(&payments[i]);

		if (!found.found)
			found = find_stored(&payments[i]);
		if (found.found)
		{
			answer_found(payments, i, &found, answer);
			return;
		}
		/* dead-lettered, or stored and not yet visible: record it anew */
		if (record_one(&payments[i]))
		{
			settle_taken(payments, i, answer, stored_now(NULL, &payments[i]));
			return;
		}
	}
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not settle the key of payment %s against concurrent submissions",
					key_text(payments[i].payment_id)),
			 errhint("Retry the transaction.")));
}

void
intake_keys_claim(const QueuedPayment *payments, int count, KeyAnswer *answers, int *current)
{
	bool	   *stored = palloc(sizeof(bool) * count);
	bool	   *taken = palloc0(sizeof(bool) * count);
	QueuedPayment *unstored = palloc(sizeof(QueuedPayment) * count);
	bool	   *unstored_taken = palloc(sizeof(bool) * count);
	int		   *position = palloc(sizeof(int) * count);
	int			n = 0;
	MemoryContext caller = CurrentMemoryContext;
	KeyProbe	probe;
	KeyProbe	records;

	SPI_connect();

	/*
	 * A stored payment is answered from payment.payments without a write: a
	 * replay writes nothing.  The others take their record, and are looked
	 * for among the stored payments again after it (settle_taken): a worker
	 * may have stored one in between.
	 */
	probe_begin(&probe, "payments", NULL);
	probe_begin(&records, "idempotency_keys", NULL);
	for (int i = 0; i < count; i++)
	{
		*current = i;
		stored[i] = stored_now(&probe, &payments[i]);
		/* a key recorded already goes to the careful path without a write */
		if (stored[i] || probe_find(&records, &payments[i]))
			continue;
		position[n] = i;
		unstored[n++] = payments[i];
	}
	probe_end(&records);
	probe_end(&probe);
	*current = -1;
	if (n > 0)
		record_fast(unstored, n, unstored_taken);
	for (int k = 0; k < n; k++)
		taken[position[k]] = unstored_taken[k];
	/* a snapshot taken after the records were */
	probe_begin(&probe, "payments", NULL);

	for (int i = 0; i < count; i++)
	{
		*current = i;
		memset(&answers[i], 0, sizeof(KeyAnswer));
		answers[i].replay_of = -1;
		answers[i].message_id = (char *) payments[i].message_id;
		answers[i].request_id = (char *) payments[i].request_id;
		answers[i].submitted_by = (char *) payments[i].submitted_by;
		if (stored[i])
		{
			FoundKey	found = find_stored(&payments[i]);

			if (found.found)
				answer_found(payments, i, &found, &answers[i]);
			else
				settle_conflict(payments, i, &answers[i]);
		}
		else if (taken[i])
			settle_taken(payments, i, &answers[i], stored_now(&probe, &payments[i]));
		else
			settle_conflict(payments, i, &answers[i]);
		if (answers[i].replayed)
		{
			/* the strings outlive the SPI connection */
			MemoryContext spi = MemoryContextSwitchTo(caller);

			answers[i].message_id = answers[i].message_id ? pstrdup(answers[i].message_id) : NULL;
			answers[i].request_id = answers[i].request_id ? pstrdup(answers[i].request_id) : NULL;
			answers[i].submitted_by = answers[i].submitted_by ? pstrdup(answers[i].submitted_by) : NULL;
			MemoryContextSwitchTo(spi);
		}
	}
	probe_end(&probe);
	SPI_finish();
	pfree(stored);
	pfree(taken);
	pfree(unstored);
	pfree(unstored_taken);
	pfree(position);
}

void
intake_keys_name(const QueuedPayment *payments, const KeyAnswer *answers,
				 char **message_ids, int count)
{
	static SPIPlanPtr plan = NULL;

	SPI_connect();
	payment_prepare(&plan,
					"UPDATE payment.idempotency_keys SET message_id = $3"
					" WHERE payment_id = $1 AND user_id = $2 AND message_id IS NULL",
					3, (Oid[]) {UUIDOID, UUIDOID, TEXTOID});
	for (int i = 0; i < count; i++)
	{
		if (answers[i].replayed || message_ids[i] == NULL)
			continue;
		if (SPI_execute_plan(plan, (Datum[]) {payments[i].payment_id, payments[i].user_id,
											  CStringGetTextDatum(message_ids[i])},
							 NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "naming a payment's message in its key record failed");
	}
	SPI_finish();
}

void
intake_keys_settle(QueueMessage **messages, int count)
{
	static SPIPlanPtr plan = NULL;
	Datum	   *columns[3];
	Datum		arrays[3];
	int			n = 0;

	if (!intake_keys_in_use())
		return;
	for (int c = 0; c < 3; c++)
		columns[c] = palloc(sizeof(Datum) * Max(count, 1));
	for (int i = 0; i < count; i++)
	{
		QueueMessage *m = messages[i];

		if (m->key_settled || m->payment_id == (Datum) 0 || m->user_id == (Datum) 0 ||
			m->message_id == NULL)
			continue;
		m->key_settled = true;
		columns[0][n] = m->payment_id;
		columns[1][n] = m->user_id;
		columns[2][n] = CStringGetTextDatum(m->message_id);
		n++;
	}
	if (n == 0)
		return;
	arrays[0] = payment_array(columns[0], NULL, n, UUIDOID);
	arrays[1] = payment_array(columns[1], NULL, n, UUIDOID);
	arrays[2] = payment_array(columns[2], NULL, n, TEXTOID);
	/* the store's SPI connection; only the message that took a record removes it */
	payment_prepare(&plan,
					"DELETE FROM payment.idempotency_keys AS k"
					" USING unnest($1::uuid[], $2::uuid[], $3::text[]) AS s(payment_id, user_id, message_id)"
					" WHERE k.payment_id = s.payment_id AND k.user_id = s.user_id"
					"   AND k.message_id = s.message_id"
					" RETURNING k.message_id, k.request_id, k.submitted_by",
					3, (Oid[]) {UUIDARRAYOID, UUIDARRAYOID, TEXTARRAYOID});
	if (SPI_execute_plan(plan, arrays, NULL, false, 0) != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "settling the payments' key records failed");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	row = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *message_id = SPI_getvalue(row, desc, 1);

		for (int i = 0; i < count; i++)
		{
			QueueMessage *m = messages[i];
			MemoryContext message_context;
			char	   *value;

			if (m->message_id == NULL || strcmp(m->message_id, message_id) != 0)
				continue;

			/*
			 * What the call said wins over what the message carried.  Kept
			 * in the message's memory: a batch stored again after a
			 * rollback must not find them freed.
			 */
			message_context = GetMemoryChunkContext(m->message_id);
			value = SPI_getvalue(row, desc, 2);
			if (value)
				m->request_id = MemoryContextStrdup(message_context, value);
			value = SPI_getvalue(row, desc, 3);
			if (value)
				m->submitted_by = MemoryContextStrdup(message_context, value);
			break;
		}
	}
}

int
intake_keys_attempt(const QueuedPayment *payment)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;
	int64		dead;

	SPI_connect();
	payment_prepare(&plan,
					"SELECT count(*) FROM payment.dead_letters WHERE payment_id = $1 AND user_id = $2",
					2, (Oid[]) {UUIDOID, UUIDOID});
	if (SPI_execute_plan(plan, (Datum[]) {payment->payment_id, payment->user_id}, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "counting a payment's dead letters failed");
	dead = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return (int) dead;
}

void
intake_keys_note(const QueuedPayment *payments, char **message_ids, int count)
{
	if (!intake_keys_in_use())
		return;
	SPI_connect();
	for (int i = 0; i < count; i++)
	{
		QueuedPayment p = payments[i];
		Jsonb	   *doc;

		/* a row written to payment.queue names its keys in the body only */
		if (p.payment_id == (Datum) 0 || p.user_id == (Datum) 0)
			payment_find_keys(p.body, &p.payment_id, &p.user_id);
		if (p.payment_id == (Datum) 0 || p.user_id == (Datum) 0 || message_ids[i] == NULL)
			continue;

		/*
		 * A stored payment is its own record: this message is a duplicate or
		 * a conflict the store settles, and a record of its body would refuse
		 * a replay of the stored one until then.
		 */
		if (stored_in(&p, NULL))
			continue;
		doc = json_parse_object(p.body, strlen(p.body));
		if (doc == NULL)
			continue;
		json_digest(doc, p.body_digest);
		p.message_id = message_ids[i];
		/* a key recorded already (a new submission of it) keeps its record */
		record_one(&p);
	}
	SPI_finish();
}
