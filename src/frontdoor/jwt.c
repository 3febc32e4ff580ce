/*-------------------------------------------------------------------------
 * jwt.c
 *	  Verification of RS256 JSON Web Tokens issued by a Cognito-style user
 *	  pool: compact-form parsing, the signature (OpenSSL EVP, always
 *	  RSA-SHA256: the algorithm comes from our key, never from the token),
 *	  the claims (exp, nbf, iat with leeway, iss, audience per token_use),
 *	  the user claim, and a bounded per-backend cache of verified tokens
 *	  keyed by the token's SHA-256 and expiring with it.
 *
 *	  JSON is parsed by PostgreSQL's own parser into jsonb (common/json_util.c).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include <openssl/evp.h>

#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "common/base64url.h"
#include "common/digest.h"
#include "common/json_util.h"
#include "frontdoor/jwks.h"
#include "frontdoor/jwt.h"

/* longer "tokens" are not parsed at all; Cognito's are a few KB */
#define JWT_MAX_LENGTH 16384
/* the unverified header is parsed first: keep it small (Cognito's is ~80) */
#define JWT_MAX_HEADER_LENGTH 1024

char	   *payment_jwt_issuer = NULL;
char	   *payment_jwt_audience = NULL;
char	   *payment_jwt_user_claim = NULL;
int			payment_jwt_leeway = 60;
/* verified tokens kept per backend (0: off); the cache is emptied when full */
static int	payment_jwt_cache_size = 1024;

typedef struct TokenCacheEntry
{
	uint8		hash[SHA256_BYTES];	/* key: SHA-256 of the token */
	double		exp;			/* the token's exp, Unix seconds */
	char	   *user_id;		/* in token_cache_cxt */
} TokenCacheEntry;

static MemoryContext token_cache_cxt = NULL;
static HTAB *token_cache = NULL;

/* bumped when a setting that decides validity changes; empties the cache */
static uint64 settings_generation = 0;
static uint64 cache_generation = 0;

static void
settings_changed(const char *newval, void *extra)
{
	settings_generation++;
}

/* changes with any setting deciding validity, the JWKS URL included */
static uint64
current_generation(void)
{
	return settings_generation + jwks_url_generation();
}

void
jwt_define_settings(void)
{
	DefineCustomStringVariable("payment.jwt_issuer",
							   gettext_noop("Required iss claim of tokens (the user pool's issuer URL)."),
							   NULL,
							   &payment_jwt_issuer,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, settings_changed, NULL);

	DefineCustomStringVariable("payment.jwt_audience",
							   gettext_noop("App client id: client_id of access tokens, aud of ID tokens."),
							   NULL,
							   &payment_jwt_audience,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, settings_changed, NULL);

	DefineCustomStringVariable("payment.jwt_user_claim",
							   gettext_noop("Claim naming the user; must equal the payment's userId."),
							   NULL,
							   &payment_jwt_user_claim,
							   "sub",
							   PGC_SUSET,
							   0,
							   NULL, settings_changed, NULL);

	DefineCustomIntVariable("payment.jwt_leeway",
							gettext_noop("Clock skew allowed when checking exp, nbf and iat."),
							NULL,
							&payment_jwt_leeway,
							60, 0, 3600,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payment.jwt_cache_size",
							gettext_noop("Verified tokens remembered per session (0 = verify every call)."),
							NULL,
							&payment_jwt_cache_size,
							1024, 0, 1000000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
}

const char *
jwt_result_text(JwtResult result)
{
	switch (result)
	{
		case JWT_OK:
			return "valid";
		case JWT_MALFORMED:
			return "malformed token";
		case JWT_BAD_ALG:
			return "token algorithm is not RS256";
		case JWT_UNKNOWN_KID:
			return "token names a key not in the JWKS";
		case JWT_BAD_SIGNATURE:
			return "bad token signature";
		case JWT_EXPIRED:
			return "token expired";
		case JWT_NOT_YET_VALID:
			return "token not yet valid (nbf or iat in the future)";
		case JWT_BAD_ISSUER:
			return "wrong token issuer";
		case JWT_BAD_AUDIENCE:
			return "wrong token audience";
		case JWT_BAD_TOKEN_USE:
			return "token_use is neither access nor id";
		case JWT_NO_USER_CLAIM:
			return "token lacks the user claim";
	}
	return "unknown";
}

/* ID tokens: aud is a string, or (RFC 7519) an array of strings */
static bool
audience_matches(Jsonb *payload, const char *audience)
{
	JsonbValue	v;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	elem;
	size_t		alen = strlen(audience);

	if (getKeyJsonValueFromContainer(&payload->root, "aud", 3, &v) == NULL)
		return false;
	if (v.type == jbvString)
		return v.val.string.len == alen &&
			memcmp(v.val.string.val, audience, alen) == 0;
	if (v.type != jbvBinary)
		return false;

	it = JsonbIteratorInit(v.val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		if (tok == WJB_ELEM && elem.type == jbvString &&
			elem.val.string.len == alen &&
			memcmp(elem.val.string.val, audience, alen) == 0)
			return true;
	}
	return false;
}

static double
unix_now(void)
{
	return (double) GetCurrentTimestamp() / USECS_PER_SEC +
		(double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
}

static void
require_setting(const char *name, const char *value)
{
	if (value == NULL || value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s must be set when payment.auth is \"jwt\"", name),
				 errhint("Set it in postgresql.conf or with ALTER SYSTEM, then reload.")));
}

static TokenCacheEntry *
cache_lookup(const uint8 *hash, double now)
{
	TokenCacheEntry *entry;

	if (token_cache == NULL || cache_generation != current_generation() ||
		payment_jwt_cache_size == 0)
		return NULL;
	entry = hash_search(token_cache, hash, HASH_FIND, NULL);
	if (entry != NULL && now > entry->exp + payment_jwt_leeway)
	{
		hash_search(token_cache, hash, HASH_REMOVE, NULL);
		return NULL;
	}
	return entry;
}

static void
cache_store(const uint8 *hash, double exp, const char *user_id)
{
	TokenCacheEntry *entry;
	bool		found;

	if (payment_jwt_cache_size == 0)
		return;
	if (token_cache_cxt == NULL)
		token_cache_cxt = AllocSetContextCreate(TopMemoryContext,
												"payment token cache",
												ALLOCSET_SMALL_SIZES);
	/* empty it when full or when the settings changed */
	if (token_cache != NULL &&
		(cache_generation != current_generation() ||
		 hash_get_num_entries(token_cache) >= payment_jwt_cache_size))
	{
		token_cache = NULL;
		MemoryContextReset(token_cache_cxt);
	}
	if (token_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = SHA256_BYTES;
		ctl.entrysize = sizeof(TokenCacheEntry);
		ctl.hcxt = token_cache_cxt;
		token_cache = hash_create("payment token cache", Min(payment_jwt_cache_size, 1024), &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		cache_generation = current_generation();
	}
	entry = hash_search(token_cache, hash, HASH_ENTER, &found);
	entry->exp = exp;
	entry->user_id = MemoryContextStrdup(token_cache_cxt, user_id);
}

static bool
signature_valid(EVP_PKEY *key, const char *signed_part, size_t signed_len,
				const char *sig, size_t sig_len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool		ok;

	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
		EVP_DigestVerify(ctx, (const unsigned char *) sig, sig_len,
						 (const unsigned char *) signed_part, signed_len) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

JwtResult
jwt_verify(const char *token, char **user_id)
{
	size_t		token_len = strlen(token);
	const char *dot1;
	const char *dot2;
	uint8		hash[SHA256_BYTES];
	double		now = unix_now();
	TokenCacheEntry *cached;
	char	   *text;
	int			len;
	Jsonb	   *header;
	Jsonb	   *payload;
	char	   *alg;
	char	   *kid;
	char	   *sig;
	int			sig_len;
	EVP_PKEY   *key;
	double		exp,
				nbf,
				iat;
	char	   *iss;
	char	   *token_use;
	char	   *user;
	JsonbValue	crit;

	*user_id = NULL;
	require_setting("payment.jwt_issuer", payment_jwt_issuer);
	require_setting("payment.jwt_audience", payment_jwt_audience);
	require_setting("payment.jwks_url", payment_jwks_url);

	if (token_len == 0 || token_len > JWT_MAX_LENGTH)
		return JWT_MALFORMED;
	dot1 = strchr(token, '.');
	dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	if (dot1 == NULL || dot2 == NULL || strchr(dot2 + 1, '.') != NULL ||
		dot1 - token > JWT_MAX_HEADER_LENGTH)
		return JWT_MALFORMED;

	digest_sha256(token, token_len, hash);
	cached = cache_lookup(hash, now);
	if (cached != NULL)
	{
		*user_id = pstrdup(cached->user_id);
		return JWT_OK;
	}

	/* header: only RS256 with a kid; "crit" extensions are not understood */
	text = base64url_decode(token, dot1 - token, &len);
	header = text ? json_parse_object(text, len) : NULL;
	if (header == NULL)
		return JWT_MALFORMED;
	alg = json_get_string(&header->root, "alg");
	if (alg == NULL || strcmp(alg, "RS256") != 0)
		return JWT_BAD_ALG;
	kid = json_get_string(&header->root, "kid");
	if (kid == NULL ||
		getKeyJsonValueFromContainer(&header->root, "crit", 4, &crit) != NULL)
		return JWT_MALFORMED;

	/* signature before anything in the payload is believed */
	sig = base64url_decode(dot2 + 1, token + token_len - (dot2 + 1), &sig_len);
	if (sig == NULL || sig_len == 0)
		return JWT_BAD_SIGNATURE;
	key = jwks_get_key(kid);
	if (key == NULL)
		return JWT_UNKNOWN_KID;
	if (!signature_valid(key, token, dot2 - token, sig, sig_len))
		return JWT_BAD_SIGNATURE;

	text = base64url_decode(dot1 + 1, dot2 - (dot1 + 1), &len);
	payload = text ? json_parse_object(text, len) : NULL;
	if (payload == NULL)
		return JWT_MALFORMED;

	if (!json_get_number(&payload->root, "exp", &exp))
		return JWT_MALFORMED;
	if (now > exp + payment_jwt_leeway)
		return JWT_EXPIRED;
	if (json_get_number(&payload->root, "nbf", &nbf) && nbf > now + payment_jwt_leeway)
		return JWT_NOT_YET_VALID;
	if (json_get_number(&payload->root, "iat", &iat) && iat > now + payment_jwt_leeway)
		return JWT_NOT_YET_VALID;

	iss = json_get_string(&payload->root, "iss");
	if (iss == NULL || strcmp(iss, payment_jwt_issuer) != 0)
		return JWT_BAD_ISSUER;

	/* Cognito: access tokens name the app in client_id, ID tokens in aud */
	token_use = json_get_string(&payload->root, "token_use");
	if (token_use != NULL && strcmp(token_use, "access") == 0)
	{
		char	   *client_id = json_get_string(&payload->root, "client_id");

		if (client_id == NULL || strcmp(client_id, payment_jwt_audience) != 0)
			return JWT_BAD_AUDIENCE;
	}
	else if (token_use != NULL && strcmp(token_use, "id") == 0)
	{
		if (!audience_matches(payload, payment_jwt_audience))
			return JWT_BAD_AUDIENCE;
	}
	else
		return JWT_BAD_TOKEN_USE;

	user = json_get_string(&payload->root, payment_jwt_user_claim);
	if (user == NULL || user[0] == '\0')
		return JWT_NO_USER_CLAIM;

	cache_store(hash, exp, user);
	*user_id = user;
	return JWT_OK;
}
