/*-------------------------------------------------------------------------
 * apikey.c
 *	  API keys (the reference API's x-api-key): create_api_key and
 *	  revoke_api_key, and checking a presented key.
 *
 *	  A key reads "pay_<id>.<secret>": <id> is 16 hex digits, public, and
 *	  finds the row; <secret> is 32 random bytes (RAND_bytes) in base64url.
 *	  Only the SHA-256 of the whole key is stored, and hashes are compared
 *	  in constant time (CRYPTO_memcmp).  The key is shown once, by
 *	  create_api_key.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "catalog/pg_type.h"
#include "common/base64.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "common/digest.h"
#include "frontdoor/apikey.h"

#define APIKEY_PREFIX "pay_"
#define APIKEY_PREFIX_LEN 4
#define APIKEY_SECRET_BYTES 32
#define APIKEY_SECRET_LEN 43	/* unpadded base64url of 32 bytes */
#define APIKEY_LEN (APIKEY_PREFIX_LEN + APIKEY_ID_LEN + 1 + APIKEY_SECRET_LEN)

/* usage plans without a stated period count per week, like the reference */
#define DEFAULT_QUOTA_PERIOD_USECS (7 * USECS_PER_DAY)

PG_FUNCTION_INFO_V1(create_api_key);
PG_FUNCTION_INFO_V1(revoke_api_key);

static SPIPlanPtr lookup_plan = NULL;

const char *
apikey_result_text(ApiKeyResult result)
{
	switch (result)
	{
		case APIKEY_OK:
			return "valid";
		case APIKEY_MALFORMED:
			return "malformed API key";
		case APIKEY_UNKNOWN:
			return "unknown API key";
		case APIKEY_WRONG_SECRET:
			return "wrong API key secret";
		case APIKEY_REVOKED:
			return "revoked API key";
	}
	return "unknown";
}

static bytea *
key_hash(const char *key)
{
	bytea	   *hash = palloc(VARHDRSZ + SHA256_BYTES);

	SET_VARSIZE(hash, VARHDRSZ + SHA256_BYTES);
	digest_sha256(key, strlen(key), (unsigned char *) VARDATA(hash));
	return hash;
}

static void
random_bytes(unsigned char *buf, int len)
{
	if (RAND_bytes(buf, len) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes for an API key")));
}

/* a new key, "pay_<16 hex>.<43 base64url>" */
static char *
generate_key(char *key_id)
{
	unsigned char id[APIKEY_ID_LEN / 2];
	unsigned char secret[APIKEY_SECRET_BYTES];
	char		b64[64];
	int			len;
	StringInfoData key;

	random_bytes(id, sizeof(id));
	random_bytes(secret, sizeof(secret));
	hex_encode_lower(id, sizeof(id), key_id);

	len = pg_b64_encode((const char *) secret, sizeof(secret), b64, sizeof(b64));
	if (len < 0)
		elog(ERROR, "could not encode an API key");
	initStringInfo(&key);
	appendStringInfo(&key, "%s%s.", APIKEY_PREFIX, key_id);
	for (int i = 0; i < len && b64[i] != '='; i++)
		appendStringInfoChar(&key, b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i]);
	Assert(key.len == APIKEY_LEN);
	explicit_bzero(secret, sizeof(secret));
	return key.data;
}

/* Run sql on payment.api_keys in a connection of its own; rows it changed. */
static uint64
change_key_row(const char *sql, int nargs, Oid *argtypes, Datum *values,
			   const char *nulls, int expected)
{
	uint64		changed;

	SPI_connect();
	if (SPI_execute_with_args(sql, nargs, argtypes, values, nulls, false, 0) != expected)
		elog(ERROR, "could not change payment.api_keys: %s", sql);
	changed = SPI_processed;
	SPI_finish();
	return changed;
}

/*
 * create_api_key(name, rate_limit, burst_limit, quota_limit, quota_period)
 * returns the new key; only its hash is kept.
 */
Datum
create_api_key(PG_FUNCTION_ARGS)
{
	char		key_id[APIKEY_ID_LEN + 1];
	char	   *key;
	Oid			argtypes[7] = {TEXTOID, TEXTOID, BYTEAOID, FLOAT8OID, INT4OID,
	INT4OID, INTERVALOID};
	Datum		values[7];
	char		nulls[7];
	Interval   *period = NULL;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("API key name must not be null")));
	if (!PG_ARGISNULL(1) && !(PG_GETARG_FLOAT8(1) > 0 && PG_GETARG_FLOAT8(1) <= 1e9))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rate_limit must be a positive number of calls per second")));
	if (!PG_ARGISNULL(2) && PG_GETARG_INT32(2) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("burst_limit must be positive")));
	if (!PG_ARGISNULL(2) && PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("burst_limit requires rate_limit")));
	if (!PG_ARGISNULL(3) && PG_GETARG_INT32(3) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("quota_limit must not be negative")));
	if (!PG_ARGISNULL(4))
	{
		period = PG_GETARG_INTERVAL_P(4);
		if (PG_ARGISNULL(3))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("quota_period requires quota_limit")));
		if (period->month != 0 ||
			period->time + period->day * USECS_PER_DAY < USECS_PER_SEC)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("quota_period must be at least one second, in days or smaller units"),
					 errhint("Write a month as '30 days'.")));
	}
	else if (!PG_ARGISNULL(3))
	{
		period = palloc0(sizeof(Interval));
		period->day = DEFAULT_QUOTA_PERIOD_USECS / USECS_PER_DAY;
	}

	key = generate_key(key_id);
	values[0] = PG_GETARG_DATUM(0);
	values[1] = CStringGetTextDatum(key_id);
	values[2] = PointerGetDatum(key_hash(key));
	for (int i = 0; i < 7; i++)
		nulls[i] = ' ';
	for (int i = 1; i <= 3; i++)
	{
		values[i + 2] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i + 2] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	values[6] = PointerGetDatum(period);
	nulls[6] = period ? ' ' : 'n';

	if (change_key_row("INSERT INTO payment.api_keys"
					   " (name, key_id, key_hash, rate_limit, burst_limit,"
					   "  quota_limit, quota_period)"
					   " VALUES ($1, $2, $3, $4, $5, $6, $7)"
					   " ON CONFLICT (name) DO NOTHING",
					   7, argtypes, values, nulls, SPI_OK_INSERT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("API key \"%s\" already exists", TextDatumGetCString(values[0])),
				 errhint("Revoke it and create a key with another name.")));

	PG_RETURN_TEXT_P(cstring_to_text(key));
}

/* revoke_api_key(name): the key stops working at once; the row stays. */
Datum
revoke_api_key(PG_FUNCTION_ARGS)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("API key name must not be null")));
	values[0] = PG_GETARG_DATUM(0);

	if (change_key_row("UPDATE payment.api_keys"
					   " SET revoked_at = coalesce(revoked_at, now())"
					   " WHERE name = $1",
					   1, argtypes, values, NULL, SPI_OK_UPDATE) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("API key \"%s\" does not exist", TextDatumGetCString(values[0]))));

	PG_RETURN_VOID();
}

static bool
well_formed(const char *key)
{
	if (strlen(key) != APIKEY_LEN || strncmp(key, APIKEY_PREFIX, APIKEY_PREFIX_LEN) != 0 ||
		key[APIKEY_PREFIX_LEN + APIKEY_ID_LEN] != '.')
		return false;
	for (int i = APIKEY_PREFIX_LEN; i < APIKEY_PREFIX_LEN + APIKEY_ID_LEN; i++)
		if (!((key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'f')))
			return false;
	return true;
}

ApiKeyResult
apikey_check(const char *presented, ApiKey *key)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	ApiKeyResult result;
	Datum		values[1];
	bool		isnull;
	HeapTuple	row;
	TupleDesc	desc;
	bytea	   *stored;
	bytea	   *hash;

	if (!well_formed(presented))
		return APIKEY_MALFORMED;
	memcpy(key->key_id, presented + APIKEY_PREFIX_LEN, APIKEY_ID_LEN);
	key->key_id[APIKEY_ID_LEN] = '\0';
	hash = key_hash(presented);

	SPI_connect();
	if (lookup_plan == NULL)
	{
		Oid			argtypes[1] = {TEXTOID};
		SPIPlanPtr	plan;

		plan = SPI_prepare("SELECT name, key_hash, revoked_at IS NOT NULL,"
						   " coalesce(rate_limit, 0), coalesce(burst_limit, 0),"
						   " coalesce(quota_limit, -1),"
						   " coalesce(extract(epoch FROM quota_period), 1)::float8"
						   " FROM payment.api_keys WHERE key_id = $1",
						   1, argtypes);
		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare the API key lookup: %s",
				 SPI_result_code_string(SPI_result));
		lookup_plan = plan;
	}
	values[0] = CStringGetTextDatum(key->key_id);
	if (SPI_execute_plan(lookup_plan, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up an API key");

	if (SPI_processed == 0)
	{
		SPI_finish();
		return APIKEY_UNKNOWN;
	}
	row = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	stored = DatumGetByteaPP(SPI_getbinval(row, desc, 2, &isnull));
	if (isnull || VARSIZE_ANY_EXHDR(stored) != SHA256_BYTES ||
		CRYPTO_memcmp(VARDATA_ANY(stored), VARDATA(hash), SHA256_BYTES) != 0)
		result = APIKEY_WRONG_SECRET;
	else if (DatumGetBool(SPI_getbinval(row, desc, 3, &isnull)))
		result = APIKEY_REVOKED;
	else
		result = APIKEY_OK;

	key->name = MemoryContextStrdup(caller_cxt, SPI_getvalue(row, desc, 1));
	key->limits.rate = DatumGetFloat8(SPI_getbinval(row, desc, 4, &isnull));
	key->limits.burst = DatumGetInt32(SPI_getbinval(row, desc, 5, &isnull));
	key->limits.quota_limit = DatumGetInt32(SPI_getbinval(row, desc, 6, &isnull));
	key->limits.quota_period =
		(int64) (DatumGetFloat8(SPI_getbinval(row, desc, 7, &isnull)) * USECS_PER_SEC);
	SPI_finish();
	return result;
}
