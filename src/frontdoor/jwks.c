/*-------------------------------------------------------------------------
 * jwks.c
 *	  The JSON Web Key Set at payment.jwks_url: fetched with common/http.c
 *	  (TLS verified; plain http only to loopback, for tests), parsed with
 *	  PostgreSQL's JSON parser, its RSA keys built from n and e with
 *	  OpenSSL, and cached per backend.  A token naming an unknown kid causes
 *	  a refetch, at most once per payment.jwks_refetch_interval, so keys can
 *	  rotate without a restart; a set older than JWKS_MAX_AGE is refetched
 *	  on next use.  A failed refetch keeps the keys already known.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>

#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "common/base64url.h"
#include "common/http.h"
#include "common/json_util.h"
#include "frontdoor/jwks.h"

#define JWKS_MAX_SIZE (1024 * 1024)
#define JWKS_CONNECT_TIMEOUT_MS 5000
#define JWKS_TIMEOUT_MS 10000
#define JWKS_MAX_AGE_SECS 3600
#define JWKS_MIN_RSA_BITS 2048

typedef struct JwksKey
{
	char	   *kid;
	EVP_PKEY   *pkey;
} JwksKey;

char	   *payment_jwks_url = NULL;
int			payment_jwks_refetch_interval = 30;

/* the cached set; kids live in jwks_cxt, keys in OpenSSL's heap */
static MemoryContext jwks_cxt = NULL;
static JwksKey *jwks_keys = NULL;
static int	jwks_nkeys = 0;
static char *jwks_from_url = NULL;	/* URL the cache came from */
static TimestampTz jwks_fetched_at = 0;
static TimestampTz jwks_attempted_at = 0;

/*
 * https anywhere; plain http only to the loopback host (tests, local
 * proxies).  The URL is parsed by libcurl itself, so that what is checked is
 * what will be fetched (no "http://127.0.0.1:1@elsewhere/" tricks).
 */
static bool
check_jwks_url(char **newval, void **extra, GucSource source)
{
	HttpUrl		url;
	char	   *problem;
	bool		ok;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	ok = http_parse_url(*newval, &url, &problem) &&
		(strcmp(url.scheme, "https") == 0 ||
		 (strcmp(url.scheme, "http") == 0 &&
		  (strcmp(url.hostname, "127.0.0.1") == 0 ||
		   strcmp(url.hostname, "localhost") == 0 ||
		   strcmp(url.hostname, "[::1]") == 0)));
	if (!ok)
		GUC_check_errdetail("The JWKS must be fetched over https (plain http only from the loopback host).");
	return ok;
}

/* bumped when payment.jwks_url changes; see jwks_url_generation() */
static uint64 url_generation = 0;

static void
jwks_url_changed(const char *newval, void *extra)
{
	url_generation++;
}

uint64
jwks_url_generation(void)
{
	return url_generation;
}

void
jwks_define_settings(void)
{
	DefineCustomStringVariable("payment.jwks_url",
							   gettext_noop("URL of the user pool's JSON Web Key Set."),
							   NULL,
							   &payment_jwks_url,
							   "",
							   PGC_SUSET,
							   0,
							   check_jwks_url, jwks_url_changed, NULL);

	DefineCustomIntVariable("payment.jwks_refetch_interval",
							gettext_noop("Least time between fetches of the JWKS for unknown key ids."),
							NULL,
							&payment_jwks_refetch_interval,
							30, 0, 86400,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);
}

static BIGNUM *
base64url_bignum(const char *b64)
{
	int			len;
	char	   *bytes = b64 ? base64url_decode(b64, strlen(b64), &len) : NULL;

	if (bytes == NULL || len == 0)
		return NULL;
	return BN_bin2bn((const unsigned char *) bytes, len, NULL);
}

/* An RSA public key from a JWK's n and e, or NULL if it is not usable. */
static EVP_PKEY *
rsa_key_from_jwk(Jsonb *jwk)
{
	char	   *kty = json_get_string(&jwk->root, "kty");
	char	   *use = json_get_string(&jwk->root, "use");
	char	   *alg = json_get_string(&jwk->root, "alg");
	BIGNUM	   *n = NULL;
	BIGNUM	   *e = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY   *pkey = NULL;

	/* the key decides the algorithm: RSA keys for RS256 signatures only */
	if (kty == NULL || strcmp(kty, "RSA") != 0 ||
		(use != NULL && strcmp(use, "sig") != 0) ||
		(alg != NULL && strcmp(alg, "RS256") != 0))
		return NULL;

	n = base64url_bignum(json_get_string(&jwk->root, "n"));
	e = base64url_bignum(json_get_string(&jwk->root, "e"));
	if (n == NULL || e == NULL || BN_num_bits(n) < JWKS_MIN_RSA_BITS)
		goto done;

	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL ||
		!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
		!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
		(params = OSSL_PARAM_BLD_to_param(bld)) == NULL)
		goto done;
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
		EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;

done:
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	return pkey;
}

static void
free_keys(void)
{
	for (int i = 0; i < jwks_nkeys; i++)
		EVP_PKEY_free(jwks_keys[i].pkey);
	jwks_keys = NULL;
	jwks_nkeys = 0;
	MemoryContextReset(jwks_cxt);
}

/*
 * Fetch the set and replace the cache.  False (with the reason in the server
 * log) when the fetch or the document fails; the old cache then stays.
 */
static bool
fetch_jwks(void)
{
	HttpRequest req = {
		.peer = "JWKS",
		.method = "GET",
		.url = payment_jwks_url,
		.connect_timeout_ms = JWKS_CONNECT_TIMEOUT_MS,
		.timeout_ms = JWKS_TIMEOUT_MS,
		.max_response = JWKS_MAX_SIZE,
	};
	HttpResponse resp;
	char	   *error = NULL;
	Jsonb	   *doc;
	JsonbValue	keys;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	elem;
	JwksKey    *found;
	int			nfound = 0;
	int			capacity = 8;

	jwks_attempted_at = GetCurrentTimestamp();
	if (http_try(&req, &resp, &error) && resp.status != 200)
		error = psprintf("HTTP status %ld", resp.status);
	if (error != NULL)
	{
		ereport(LOG,
				(errmsg("payment: could not fetch the JWKS from \"%s\": %s",
						payment_jwks_url, error),
				 errhidestmt(true)));
		return false;
	}
	doc = json_parse_object(resp.body, resp.body_len);
	if (doc == NULL ||
		getKeyJsonValueFromContainer(&doc->root, "keys", 4, &keys) == NULL ||
		keys.type != jbvBinary || !JsonContainerIsArray(keys.val.binary.data))
	{
		ereport(LOG,
				(errmsg("payment: the JWKS from \"%s\" is not a JSON object with a \"keys\" array",
						payment_jwks_url),
				 errhidestmt(true)));
		return false;
	}

	found = palloc(sizeof(JwksKey) * capacity);
	it = JsonbIteratorInit(keys.val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		Jsonb	   *jwk;
		char	   *kid;
		EVP_PKEY   *pkey;

		if (tok != WJB_ELEM || elem.type != jbvBinary ||
			!JsonContainerIsObject(elem.val.binary.data))
			continue;
		jwk = JsonbValueToJsonb(&elem);
		kid = json_get_string(&jwk->root, "kid");
		if (kid == NULL || (pkey = rsa_key_from_jwk(jwk)) == NULL)
			continue;
		if (nfound == capacity)
		{
			capacity *= 2;
			found = repalloc(found, sizeof(JwksKey) * capacity);
		}
		found[nfound].kid = kid;
		found[nfound].pkey = pkey;
		nfound++;
	}

	/* nothing below can fail, so no OpenSSL key leaks */
	free_keys();
	jwks_keys = MemoryContextAlloc(jwks_cxt, sizeof(JwksKey) * Max(nfound, 1));
	for (int i = 0; i < nfound; i++)
	{
		jwks_keys[i].kid = MemoryContextStrdup(jwks_cxt, found[i].kid);
		jwks_keys[i].pkey = found[i].pkey;
	}
	jwks_nkeys = nfound;
	jwks_from_url = MemoryContextStrdup(jwks_cxt, payment_jwks_url);
	jwks_fetched_at = jwks_attempted_at;
	ereport(DEBUG1,
			(errmsg_internal("payment: fetched %d usable keys from the JWKS", nfound)));
	return true;
}

static EVP_PKEY *
find_key(const char *kid)
{
	for (int i = 0; i < jwks_nkeys; i++)
		if (strcmp(jwks_keys[i].kid, kid) == 0)
			return jwks_keys[i].pkey;
	return NULL;
}

EVP_PKEY *
jwks_get_key(const char *kid)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		may_fetch;
	EVP_PKEY   *key;

	if (jwks_cxt == NULL)
		jwks_cxt = AllocSetContextCreate(TopMemoryContext, "payment JWKS cache",
										 ALLOCSET_SMALL_SIZES);

	/* a changed URL makes the cache worthless */
	if (jwks_from_url != NULL && strcmp(jwks_from_url, payment_jwks_url) != 0)
	{
		free_keys();
		jwks_from_url = NULL;
		jwks_attempted_at = 0;
	}

	may_fetch = TimestampDifferenceExceeds(jwks_attempted_at, now,
										   payment_jwks_refetch_interval * 1000);
	if (jwks_from_url == NULL ||
		TimestampDifferenceExceeds(jwks_fetched_at, now, JWKS_MAX_AGE_SECS * 1000))
	{
		if (may_fetch)
			fetch_jwks();
		may_fetch = false;
		if (jwks_from_url == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("token verification is unavailable"),
					 errdetail("The signing keys could not be fetched."),
					 errhint("Try again later."),
					 errhidestmt(true)));
	}

	key = find_key(kid);
	if (key == NULL && may_fetch && fetch_jwks())
		key = find_key(kid);
	return key;
}
