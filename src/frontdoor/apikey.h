/*-------------------------------------------------------------------------
 * apikey.h
 *	  API keys: creation, revocation and checking of a presented key.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_APIKEY_H
#define PAYMENT_APIKEY_H

#include "frontdoor/throttle.h"

/* length of an API key's public identifier (hex), see apikey.c */
#define APIKEY_ID_LEN 16

StaticAssertDecl(APIKEY_ID_LEN <= THROTTLE_KEY_LEN,
				 "an API key's id must fit a throttle slot's key");

typedef struct ApiKey
{
	char		key_id[APIKEY_ID_LEN + 1];	/* public part of the key */
	char	   *name;
	ThrottleLimits limits;
} ApiKey;

typedef enum ApiKeyResult
{
	APIKEY_OK = 0,
	APIKEY_MALFORMED,
	APIKEY_UNKNOWN,
	APIKEY_WRONG_SECRET,
	APIKEY_REVOKED
} ApiKeyResult;

/* Check a presented key against payment.api_keys; fills *key on APIKEY_OK. */
extern ApiKeyResult apikey_check(const char *presented, ApiKey *key);
extern const char *apikey_result_text(ApiKeyResult result);

#endif							/* PAYMENT_APIKEY_H */
