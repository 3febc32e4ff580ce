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
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "common/backoff.h"
#include "drain/store.h"
#include "drain/worker_faults.h"
#include "latency.h"
#include "payment.h"
#include "schema/payment_schema.h"

static SPIPlanPtr insert_plans[2] = {NULL, NULL};
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

/*
 * Keep a message's keys with the message, in its own memory: a batch stored
 * again message by message, after the first attempt was rolled back, finds
 * them there.
 */
static void
remember_keys(QueueMessage *m, Datum payment_id, Datum user_id)
{
	MemoryContext message_context = GetMemoryChunkContext(m->body);

	m->payment_id = payment_id ?
		PointerGetDatum(MemoryContextAlloc(message_context, UUID_LEN)) : (Datum) 0;
	if (payment_id)
		memcpy(DatumGetPointer(m->payment_id), DatumGetPointer(payment_id), UUID_LEN);
	m->user_id = user_id ?
		PointerGetDatum(MemoryContextAlloc(message_context, UUID_LEN)) : (Datum) 0;
	if (user_id)
		memcpy(DatumGetPointer(m->user_id), DatumGetPointer(user_id), UUID_LEN);
}

static void
insert_dead_letter(QueueMessage *m, DeadLetterReason reason, const char *error)
{
	static SPIPlanPtr dead_letter_plans[3] = {NULL, NULL, NULL};
	Oid			argtypes[10] = {TEXTOID, UUIDOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID,
	INT4OID, INT4OID, TEXTOID, TEXTOID};
	Datum		values[10];
	char		nulls[10] = {' ', 'n', 'n', ' ', ' ', ' ', ' ', ' ', 'n', 'n'};
	const char *body = m->body;
	const QueueLayout *layout = queue_layout();
	int			form = layout->idempotency_keys ? 2 : layout->schema_versions ? 1 : 0;

	/* keep the payment's keys where the body has them, for payment_status */
	if (m->payment_id == (Datum) 0 || m->user_id == (Datum) 0)
	{
		Datum		payment_id;
		Datum		user_id;

		payment_find_keys(body, &payment_id, &user_id);
		remember_keys(m, payment_id, user_id);
	}
	values[1] = m->payment_id;
	values[2] = m->user_id;
	if (values[1] != (Datum) 0)
		nulls[1] = ' ';
	if (values[2] != (Datum) 0)
		nulls[2] = ' ';
	/* a dead-lettered payment leaves no key record: submitting it again is a fresh attempt */
	intake_keys_settle(&m, 1);

	values[0] = CStringGetTextDatum(m->message_id ? m->message_id : "");
	values[3] = CStringGetTextDatum(body);
	values[4] = CStringGetTextDatum(dead_letter_reason_name(reason));
	values[5] = CStringGetTextDatum(error ? error : "");
	values[6] = Int32GetDatum(m->receive_count);
	/* kept, so that a redriven payment is checked as it was accepted */
	values[7] = Int32GetDatum(m->schema_version);
	if (m->schema_version < 0)
		nulls[7] = 'n';
	if (m->request_id)
	{
		values[8] = CStringGetTextDatum(m->request_id);
		nulls[8] = ' ';
	}
	if (m->submitted_by)
	{
		values[9] = CStringGetTextDatum(m->submitted_by);
		nulls[9] = ' ';
	}

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
	if (dead_letter_plans[form] == NULL)
		payment_prepare(&dead_letter_plans[form],
						psprintf("INSERT INTO payment.dead_letters"
								 " (message_id, payment_id, user_id, body, reason, error, receive_count%s)"
								 " SELECT $1, $2, $3, $4, $5, $6, $7%s"
								 "  WHERE $1 = '' OR NOT EXISTS"
								 "   (SELECT 1 FROM payment.dead_letters WHERE message_id = $1)",
								 form == 2 ? ", schema_version, request_id, submitted_by" :
								 form == 1 ? ", schema_version" : "",
								 form == 2 ? ", $8, $9, $10" : form == 1 ? ", $8" : ""),
						form == 2 ? 10 : form == 1 ? 8 : 7, argtypes);
	if (SPI_execute_plan(dead_letter_plans[form], values, nulls, false, 0) != SPI_OK_INSERT)
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

/*
 * payment.payments' columns for one checked message; the last two
 * (request_id, submitted_by) from 1.2 on
 */
#define PAYMENT_COLUMNS 10
#define PAYMENT_COLUMNS_1_1 8
typedef struct PaymentRow
{
	Datum		values[PAYMENT_COLUMNS];
	bool		isnull[PAYMENT_COLUMNS];
} PaymentRow;

static const Oid payment_column_types[PAYMENT_COLUMNS] =
{UUIDOID, UUIDOID, NUMERICOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID, TEXTOID, TEXTOID};

/* the columns this database's payment.payments has */
static int
payment_columns(void)
{
	return queue_layout()->idempotency_keys ? PAYMENT_COLUMNS : PAYMENT_COLUMNS_1_1;
}

#define PAYMENT_COLUMN_NAMES \
	"payment_id, user_id, amount, currency, description, date_timestamp, body, message_id"

/* the call's request id and caller, once the key record is settled (intake_keys_settle) */
static void
fill_caller(const QueueMessage *m, PaymentRow *row)
{
	row->values[8] = m->request_id ? CStringGetTextDatum(m->request_id) : (Datum) 0;
	row->isnull[8] = m->request_id == NULL;
	row->values[9] = m->submitted_by ? CStringGetTextDatum(m->submitted_by) : (Datum) 0;
	row->isnull[9] = m->submitted_by == NULL;
}

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
	row->isnull[8] = row->isnull[9] = true;
	if (m->payment_id == (Datum) 0)
		remember_keys(m, fields.payment_id, fields.user_id);
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
	int			ncolumns = payment_columns();
	int			form = ncolumns == PAYMENT_COLUMNS;

	if (!prepare_row(m, isolated, &row))
		return;
	intake_keys_settle(&m, 1);
	fill_caller(m, &row);
	for (int c = 0; c < PAYMENT_COLUMNS; c++)
		nulls[c] = row.isnull[c] ? 'n' : ' ';
	if (insert_plans[form] == NULL)
		payment_prepare(&insert_plans[form],
						form ?
						"INSERT INTO payment.payments (" PAYMENT_COLUMN_NAMES ", request_id, submitted_by)"
						" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
						" ON CONFLICT (payment_id, user_id) DO NOTHING" :
						"INSERT INTO payment.payments (" PAYMENT_COLUMN_NAMES ")"
						" VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
						" ON CONFLICT (payment_id, user_id) DO NOTHING",
						ncolumns, (Oid *) payment_column_types);
	if (SPI_execute_plan(insert_plans[form], row.values, nulls, false, 0) != SPI_OK_INSERT)
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
	static SPIPlanPtr batch_plans[2] = {NULL, NULL};
	Datum		arrays[PAYMENT_COLUMNS];
	Oid			array_types[PAYMENT_COLUMNS];
	bool	   *later = later_of_same_key(rows, n);
	bool	   *taken = stored_before(rows, n, later);
	int			offered = 0;
	int			ncolumns = payment_columns();
	int			form = ncolumns == PAYMENT_COLUMNS;

	intake_keys_settle(ms, n);
	for (int i = 0; i < n; i++)
		fill_caller(ms[i], &rows[i]);
	for (int c = 0; c < ncolumns; c++)
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
		if (batch_plans[form] == NULL)
		{
			for (int c = 0; c < ncolumns; c++)
				array_types[c] = get_array_type(payment_column_types[c]);
			payment_prepare(&batch_plans[form],
							form ?
							"INSERT INTO payment.payments (" PAYMENT_COLUMN_NAMES ", request_id, submitted_by)"
							" SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)" :
							"INSERT INTO payment.payments (" PAYMENT_COLUMN_NAMES ")"
							" SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8)",
							ncolumns, array_types);
		}
		if (SPI_execute_plan(batch_plans[form], arrays, NULL, false, 0) != SPI_OK_INSERT ||
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
		/* the rollback gave the key record back */
		m->outcome = STORE_PENDING;
		m->key_settled = false;
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
		messages[i].key_settled = false;
		if (isolate)
			store_isolated(&messages[i]);
		else if (prepare_row(&messages[i], false, &rows[n]))
			checked[n++] = &messages[i];
	}
	if (n > 0)
		store_rows(checked, rows, n);
}

/*
 * After the store committed: count outcomes for payment.stats, and note how
 * long the stored payments waited since their submit (latency.c).
 */
void
store_count_outcomes(QueueMessage *messages, int count)
{
	PaymentCounters *c;
	TimestampTz *waited;
	int			stored = 0;

	StaticAssertStmt(DEAD_LETTER_MAX_RECEIVES < PAYMENT_DEAD_LETTER_REASONS,
					 "a counter for each dead-letter reason");
	if (payment_shared == NULL)
		return;
	c = payment_counters_here();
	waited = palloc(sizeof(TimestampTz) * Max(count, 1));
	for (int i = 0; i < count; i++)
	{
		switch (messages[i].outcome)
		{
			case STORE_STORED:
				payment_count(&c->stored, 1);
				waited[stored++] = messages[i].enqueued_at;
				break;
			case STORE_DUPLICATE:
				payment_count(&c->duplicates, 1);
				break;
			case STORE_DEAD_LETTERED:
				payment_count(&c->dead_lettered, 1);
				payment_count(&c->dead_lettered_by_reason[messages[i].reason], 1);
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
	payment_latency_note(GetCurrentTimestamp(), waited, stored);
	pfree(waited);
}
