/*-------------------------------------------------------------------------
 * payment_schema.h
 *	  The payment layer over the JSON Schema engine: which schema a payment
 *	  is checked against (the built-in reference model, version 0, or a
 *	  team's version from payment.schemas), the key fields that are always
 *	  uuids, and the stored columns taken from a valid payload.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_SCHEMA_H
#define PAYMENT_SCHEMA_H

#include "utils/jsonb.h"

#include "schema/json_schema.h"

/* up to this many problems are listed in a rejection's detail */
#define PAYMENT_MAX_REPORTED_PROBLEMS 10

/*
 * The stored columns of a valid payload.  The keys are always there (they
 * are checked as uuids whatever the schema says); the other columns only
 * when the payload has them with a fitting type (else NULL / !has_amount).
 */
typedef struct PaymentFields
{
	Datum		payment_id;		/* uuid */
	Datum		user_id;		/* uuid */
	bool		has_amount;
	Datum		amount;			/* numeric, when has_amount */
	char	   *currency;
	char	   *description;
	char	   *date_timestamp;
} PaymentFields;

extern bool payment_validate(Jsonb *payload, char **problems);
extern bool payment_validate_version(Jsonb *payload, int version, char **problems);
extern int	payment_schema_active_version(void);
extern void payment_check_payload(Jsonb *payload, Size text_length, int version);
extern void payment_extract_fields(Jsonb *payload, PaymentFields *fields);
extern char *payment_try_get_string(Jsonb *payload, const char *key);
extern bool payment_try_get_uuid(Jsonb *payload, const char *key, Datum *uuid);
extern void payment_find_keys(const char *body, Datum *payment_id, Datum *user_id);

/* for the SQL entry points (frontdoor/schema_api.c) */
extern bool payment_validate_into(Jsonb *payload, int version, JsonSchemaResult *result);
extern int	payment_schema_store(Jsonb *schema, const char *comment);
extern void payment_schema_check_active(void);

#endif							/* PAYMENT_SCHEMA_H */
