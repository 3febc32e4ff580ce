/*-------------------------------------------------------------------------
 * store.c
 *	  Storing a claimed batch in payment.payments, idempotently: the Lambda
 *	  of the reference design.  Each message ends in exactly one outcome:
 *	  stored, duplicate (identical payment already stored: nothing written),
 *	  dead-lettered (invalid, conflicting, or received too often), or retry
 *	  (a transient failure; delivered again after a backoff).
 *
 *	  The caller owns the transaction and the SPI connection.  A batch is
 *	  first stored without subtransactions; if anything in it raises, the
 *	  caller aborts and stores it again with isolate = true, one
 *	  subtransaction per message, so one bad message never fails the others.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/relcache.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

#include "common/backoff.h"
#include "drain/store.h"
#include "drain/worker_faults.h"
#include "payment.h"
#include "schema/payment_schema.h"

static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr same_body_plan = NULL;
static SPIPlanPtr dead_letter_lock_plan = NULL;

/* retries come back after about 1, 2, 4 ... seconds, at most a minute */
#define FIRST_RETRY_DELAY 1
#define MAX_RETRY_DELAY 60

static int
retry_delay(int receive_count)
{
	return (int) Max(1, backoff_delay(receive_count - 1, FIRST_RETRY_DELAY,
									  MAX_RETRY_DELAY));
}

static void
insert_dead_letter(const QueueMessage *m, DeadLetterReason reason, const char *error)
{
	static SPIPlanPtr dead_letter_plans[2] = {NULL, NULL};
	Oid			argtypes[8] = {TEXTOID, UUIDOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID,
	INT4OID, INT4OID};
	Datum		values[8];
	char		nulls[8] = {' ', 'n', 'n', ' ', ' ', ' ', ' ', ' '};
	const char *body = m->body;
	bool		versioned = queue_layout()->schema_versions;

	/* keep the payment's keys where the body has them, for payment_status */
	payment_find_keys(body, &values[1], &values[2]);
	if (values[1] != (Datum) 0)
		nulls[1] = ' ';
	if (values[2] != (Datum) 0)
		nulls[2] = ' ';

	values[0] = CStringGetTextDatum(m->message_id ? m->message_id : "");
	values[3] = CStringGetTextDatum(body);
	values[4] = CStringGetTextDatum(dead_letter_reason_name(reason));
	values[5] = CStringGetTextDatum(error ? error : "");
	values[6] = Int32GetDatum(m->receive_count);
	/* kept, so that a redriven payment is checked as it was accepted */
	values[7] = Int32GetDatum(m->schema_version);
	if (m->schema_version < 0)
		nulls[7] = 'n';

	/*
	 * Delivery is at least once: a message dead-lettered before (its delete
	 * failed, its worker died before deleting, SQS delivered it twice) is
	 * written once.  The lock orders two workers holding the same message.
	 */
	payment_prepare(&dead_letter_lock_plan,
					"SELECT pg_advisory_xact_lock(hashtext('payment.dead_letters'), hashtext($1))",
					1, argtypes);
	if (SPI_execute_plan(dead_letter_lock_plan, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "locking a dead letter's message id failed");
	payment_prepare(&dead_letter_plans[versioned],
					versioned ?
					"INSERT INTO payment.dead_letters"
					" (message_id, payment_id, user_id, body, reason, error, receive_count,"
					"  schema_version)"
					" SELECT $1, $2, $3, $4, $5, $6, $7, $8"
					"  WHERE $1 = '' OR NOT EXISTS"
					"   (SELECT 1 FROM payment.dead_letters WHERE message_id = $1)" :
					"INSERT INTO payment.dead_letters"
					" (message_id, payment_id, user_id, body, reason, error, receive_count)"
					" SELECT $1, $2, $3, $4, $5, $6, $7"
					"  WHERE $1 = '' OR NOT EXISTS"
					"   (SELECT 1 FROM payment.dead_letters WHERE message_id = $1)",
					versioned ? 8 : 7, argtypes);
	if (SPI_execute_plan(dead_letter_plans[versioned], values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "writing a dead letter failed");
}

static void
dead_letter(QueueMessage *m, DeadLetterReason reason, const char *error)
{
	insert_dead_letter(m, reason, error);
	m->outcome = STORE_DEAD_LETTERED;
	m->reason = reason;
	m->error = pstrdup(error);
}

/*
 * Parse a body as jsonb.  On the hot path (precheck false) a body that is
 * not JSON raises, and the batch is stored again message by message; there
 * (precheck true) a syntax error is reported in *why without raising, and
 * NULL returned, so that the dead letter says what is wrong.
 */
static Jsonb *
parse_body(const char *body, bool precheck, char **why)
{
	if (precheck)
	{
		JsonLexContext *lex = makeJsonLexContextCstringLen((char *) body, strlen(body),
														   GetDatabaseEncoding(), true);
		JsonParseErrorType result = pg_parse_json(lex, &nullSemAction);

		if (result != JSON_SUCCESS)
		{
			*why = psprintf("body is not valid JSON: %s", json_errdetail(result, lex));
			return NULL;
		}
	}
	/* what jsonb itself refuses (huge numbers, ...) raises: a data error */
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(body)));
}

/* payment.payments' columns for one checked message */
#define PAYMENT_COLUMNS 8
typedef struct PaymentRow
{
	Datum		values[PAYMENT_COLUMNS];
	bool		isnull[PAYMENT_COLUMNS];
} PaymentRow;

static const Oid payment_column_types[PAYMENT_COLUMNS] =
{UUIDOID, UUIDOID, NUMERICOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID};

/*
 * Check a message and build its row.  Returns false when the message ended
 * as a dead letter instead.
 */
static bool
prepare_row(QueueMessage *m, bool isolated, PaymentRow *row)
{
	PaymentFields fields;
	Jsonb	   *doc;
	char	   *why;
	size_t		length = strlen(m->body);

	if (m->receive_count > payment_max_receive_count)
	{
		dead_letter(m, DEAD_LETTER_MAX_RECEIVES,
					psprintf("received %d times, more than payment.max_receive_count (%d)",
							 m->receive_count, payment_max_receive_count));
		return false;
	}
	if (length > (size_t) payment_max_payload_size)
	{
		dead_letter(m, DEAD_LETTER_INVALID,
					psprintf("body is %zu bytes, more than payment.max_payload_size (%d)",
							 length, payment_max_payload_size));
		return false;
	}
	doc = parse_body(m->body, isolated, &why);
	if (doc == NULL)
	{
		dead_letter(m, DEAD_LETTER_INVALID, why);
		return false;
	}
	/* as it was accepted: a later schema must not refuse an accepted payment */
	if (!payment_validate_version(doc, m->schema_version, &why))
	{
		dead_letter(m, DEAD_LETTER_INVALID, psprintf("payment does not match the payment schema: %s", why));
		return false;
	}

	payment_extract_fields(doc, &fields);
	memset(row->isnull, 0, sizeof(row->isnull));
	row->values[0] = fields.payment_id;
	row->values[1] = fields.user_id;
	/* a team's schema need not have these: SQL NULL where absent */
	row->values[2] = fields.amount;
	row->isnull[2] = !fields.has_amount;
	row->values[3] = fields.currency ? CStringGetTextDatum(fields.currency) : (Datum) 0;
	row->isnull[3] = fields.currency == NULL;
	row->values[4] = fields.description ? CStringGetTextDatum(fields.description) : (Datum) 0;
	row->isnull[4] = fields.description == NULL;
	row->values[5] = fields.date_timestamp ? CStringGetTextDatum(fields.date_timestamp) : (Datum) 0;
	row->isnull[5] = fields.date_timestamp == NULL;
	row->values[6] = JsonbPGetDatum(doc);
	row->values[7] = CStringGetTextDatum(m->message_id ? m->message_id : "");
	return true;
}

/* A row whose key is taken: an identical body is a duplicate delivery, another a conflict. */
static void
settle_taken_key(QueueMessage *m, const PaymentRow *row)
{
	bool		isnull;
	bool		same;

	payment_prepare(&same_body_plan,
					"SELECT body = $3 FROM payment.payments"
					" WHERE payment_id = $1 AND user_id = $2",
					3, (Oid[]) {UUIDOID, UUIDOID, JSONBOID});
	if (SPI_execute_plan(same_body_plan, (Datum[]) {row->values[0], row->values[1], row->values[6]},
						 NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "stored payment vanished while checking a duplicate");
	same = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (same)
		m->outcome = STORE_DUPLICATE;
	else
		dead_letter(m, DEAD_LETTER_CONFLICT,
					"a different payment with the same paymentId and userId is already stored");
}

static void
store_one(QueueMessage *m, bool isolated)
{
	PaymentRow	row;
	char		nulls[PAYMENT_COLUMNS];

	if (!prepare_row(m, isolated, &row))
		return;
	for (int c = 0; c < PAYMENT_COLUMNS; c++)
		nulls[c] = row.isnull[c] ? 'n' : ' ';
	payment_prepare(&insert_plan,
					"INSERT INTO payment.payments"
					" (payment_id, user_id, amount, currency, description,"
					"  date_timestamp, body, message_id)"
					" VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
					" ON CONFLICT (payment_id, user_id) DO NOTHING",
					PAYMENT_COLUMNS, (Oid *) payment_column_types);
	if (SPI_execute_plan(insert_plan, row.values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "storing a payment failed");
	if (SPI_processed == 1)
		m->outcome = STORE_STORED;
	else
		settle_taken_key(m, &row);
}

/* order of two rows' keys (paymentId, userId) */
static int
compare_keys(const PaymentRow *x, const PaymentRow *y)
{
	for (int c = 0; c < 2; c++)
	{
		int			diff = memcmp(DatumGetUUIDP(x->values[c]),
								  DatumGetUUIDP(y->values[c]), UUID_LEN);

		if (diff != 0)
			return diff;
	}
	return 0;
}

/* qsort_arg order of row positions (arg: the rows): by key, then by position */
static int
compare_positions(const void *a, const void *b, void *arg)
{
	const PaymentRow *rows = arg;
	int			i = *(const int *) a;
	int			j = *(const int *) b;
	int			diff = compare_keys(&rows[i], &rows[j]);

	return diff != 0 ? diff : (i > j) - (i < j);
}

/*
 * Which rows repeat the key of an earlier row of the batch.  Checked rows
 * always have both keys (the schema's paymentId and userId are uuids).
 */
static bool *
later_of_same_key(const PaymentRow *rows, int n)
{
	int		   *order = palloc(sizeof(int) * n);
	bool	   *later = palloc0(sizeof(bool) * n);

	for (int i = 0; i < n; i++)
		order[i] = i;
	qsort_arg(order, n, sizeof(int), compare_positions, (void *) rows);
	for (int k = 1; k < n; k++)
		if (compare_keys(&rows[order[k]], &rows[order[k - 1]]) == 0)
			later[order[k]] = true;
	pfree(order);
	return later;
}

/*
 * Which rows find their key stored already: a probe of the primary key
 * each, with the active snapshot (as a statement would see the table).
 */
static bool *
stored_before(const PaymentRow *rows, int n, const bool *skip)
{
	bool	   *taken = palloc0(sizeof(bool) * n);
	Relation	heap = table_open(get_relname_relid("payments",
												   get_namespace_oid("payment", false)),
								  AccessShareLock);
	Relation	index = index_open(RelationGetPrimaryKeyIndex(heap), AccessShareLock);
	IndexScanDesc scan = index_beginscan(heap, index, GetActiveSnapshot(), 2, 0);
	TupleTableSlot *slot = table_slot_create(heap, NULL);
	ScanKeyData keys[2];

	for (int i = 0; i < n; i++)
	{
		if (skip[i])
			continue;
		for (int c = 0; c < 2; c++)
			ScanKeyInit(&keys[c], c + 1, BTEqualStrategyNumber, F_UUID_EQ, rows[i].values[c]);
		index_rescan(scan, keys, 2, NULL, 0);
		taken[i] = index_getnext_slot(scan, ForwardScanDirection, slot);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);
	return taken;
}

/*
 * The checked rows of a batch in one INSERT: one executor run, not one per
 * message.  Not INSERT ... ON CONFLICT: its speculative insertion writes a
 * second WAL record per row (a tenth of what storing a payment writes).
 * Instead, of two rows with one key only the first is offered, and a row
 * whose key is stored already is not; those found their key taken.  A
 * payment another worker stores at the same moment makes the INSERT raise
 * a unique violation, and the batch is stored again message by message,
 * where ON CONFLICT settles it.
 */
static void
store_rows(QueueMessage **ms, PaymentRow *rows, int n)
{
	static SPIPlanPtr batch_plan = NULL;
	Datum		arrays[PAYMENT_COLUMNS];
	Oid			array_types[PAYMENT_COLUMNS];
	bool	   *later = later_of_same_key(rows, n);
	bool	   *taken = stored_before(rows, n, later);
	int			offered = 0;

	for (int c = 0; c < PAYMENT_COLUMNS; c++)
	{
		Datum	   *items = palloc(sizeof(Datum) * n);
		bool	   *nulls = palloc(sizeof(bool) * n);

		offered = 0;
		for (int i = 0; i < n; i++)
		{
			if (later[i] || taken[i])
				continue;
			items[offered] = rows[i].values[c];
			nulls[offered] = rows[i].isnull[c];
			offered++;
		}
		arrays[c] = payment_array(items, nulls, offered, payment_column_types[c]);
	}
	if (offered > 0)
	{
		if (batch_plan == NULL)
			for (int c = 0; c < PAYMENT_COLUMNS; c++)
				array_types[c] = get_array_type(payment_column_types[c]);
		payment_prepare(&batch_plan,
						"INSERT INTO payment.payments"
						" (payment_id, user_id, amount, currency, description,"
						"  date_timestamp, body, message_id)"
						" SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8)",
						PAYMENT_COLUMNS, array_types);
		if (SPI_execute_plan(batch_plan, arrays, NULL, false, 0) != SPI_OK_INSERT ||
			SPI_processed != (uint64) offered)
			elog(ERROR, "storing a batch of payments failed");
	}
	for (int i = 0; i < n; i++)
	{
		if (later[i] || taken[i])
			settle_taken_key(ms[i], &rows[i]);
		else
			ms[i]->outcome = STORE_STORED;
	}
}

/*
 * Data errors, and limits a body exceeds (nested too deep to parse), are
 * permanent; anything else may pass (locks, read-only, ...).
 */
static bool
is_permanent(int sqlerrcode)
{
	int			category = ERRCODE_TO_CATEGORY(sqlerrcode);

	return category == ERRCODE_DATA_EXCEPTION ||
		category == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION ||
		category == ERRCODE_PROGRAM_LIMIT_EXCEEDED;
}

static void
store_failed(QueueMessage *m, ErrorData *edata)
{
	if (is_permanent(edata->sqlerrcode))
		dead_letter(m, DEAD_LETTER_INVALID, edata->message);
	else if (m->receive_count >= payment_max_receive_count)
		dead_letter(m, DEAD_LETTER_MAX_RECEIVES,
					psprintf("received %d times; last error: %s",
							 m->receive_count, edata->message));
	else
	{
		m->outcome = STORE_RETRY;
		m->retry_delay = retry_delay(m->receive_count);
		m->error = pstrdup(edata->message);
		ereport(LOG,
				(errmsg("payment worker will retry message %s in %d s",
						m->message_id, m->retry_delay),
				 errdetail_internal("%s", edata->message)));
	}
}

/* One message in its own subtransaction, as PL/pgSQL's exception blocks do. */
static void
store_isolated(QueueMessage *m)
{
	MemoryContext context = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(context);
	PG_TRY();
	{
		store_one(m, true);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(context);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(context);
		CurrentResourceOwner = owner;

		/* the database's failure, not this message's: the whole batch waits */
		if (worker_fault_is_database(edata->sqlerrcode))
			ReThrowError(edata);
		m->outcome = STORE_PENDING;
		store_failed(m, edata);
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

void
store_batch(QueueMessage *messages, int count, bool isolate)
{
	PaymentRow *rows = isolate ? NULL : palloc(sizeof(PaymentRow) * count);
	QueueMessage **checked = isolate ? NULL : palloc(sizeof(QueueMessage *) * count);
	int			n = 0;

	for (int i = 0; i < count; i++)
	{
		messages[i].outcome = STORE_PENDING;
		messages[i].reason = DEAD_LETTER_NONE;
		messages[i].error = NULL;
		if (isolate)
			store_isolated(&messages[i]);
		else if (prepare_row(&messages[i], false, &rows[n]))
			checked[n++] = &messages[i];
	}
	if (n > 0)
		store_rows(checked, rows, n);
}

/* After the store committed: count outcomes for payment.stats. */
void
store_count_outcomes(QueueMessage *messages, int count)
{
	PaymentCounters *c;

	if (payment_shared == NULL)
		return;
	c = &payment_shared->counters;
	for (int i = 0; i < count; i++)
	{
		switch (messages[i].outcome)
		{
			case STORE_STORED:
				payment_count(&c->stored, 1);
				break;
			case STORE_DUPLICATE:
				payment_count(&c->duplicates, 1);
				break;
			case STORE_DEAD_LETTERED:
				payment_count(&c->dead_lettered, 1);
				if (messages[i].reason == DEAD_LETTER_CONFLICT)
					payment_count(&c->conflicts, 1);
				break;
			case STORE_RETRY:
				payment_count(&c->retried, 1);
				break;
			case STORE_PENDING:
				break;
		}
	}
}
