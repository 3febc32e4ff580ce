/*-------------------------------------------------------------------------
 * jwks.c
 *	  The JSON Web Key Set at payment.jwks_url: fetched with libcurl (TLS
 *	  verified; plain http only to loopback, for tests), parsed with
 *	  PostgreSQL's JSON parser, its RSA keys built from n and e with
 *	  OpenSSL, and cached per backend.  A token naming an unknown kid causes
 *	  a refetch, at most once per payment.jwks_refetch_interval, so keys can
 *	  rotate without a restart; a set older than JWKS_MAX_AGE is refetched
 *	  on next use.  A failed refetch keeps the keys already known.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "frontdoor/jwks.h"
#include "frontdoor/jwt.h"

#define JWKS_MAX_SIZE (1024 * 1024)
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
static bool curl_initialized = false;

/*
 * https anywhere; plain http only to the loopback host (tests, local
 * proxies).  The URL is parsed by libcurl itself, so that what is checked is
 * what will be fetched (no "http://127.0.0.1:1@elsewhere/" tricks).
 */
static bool
check_jwks_url(char **newval, void **extra, GucSource source)
{
	CURLU	   *u;
	char	   *scheme = NULL;
	char	   *host = NULL;
	bool		ok;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	u = curl_url();
	ok = u != NULL &&
		curl_url_set(u, CURLUPART_URL, *newval, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
		(strcmp(scheme, "https") == 0 ||
		 (strcmp(scheme, "http") == 0 &&
		  (strcmp(host, "127.0.0.1") == 0 || strcmp(host, "localhost") == 0 ||
		   strcmp(host, "[::1]") == 0)));
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	if (!ok)
		GUC_check_errdetail("The JWKS must be fetched over https (plain http only from the loopback host).");
	return ok;
}

/* tokens verified against another key set are not to be trusted from cache */
static void
jwks_url_changed(const char *newval, void *extra)
{
	jwt_forget_verified_tokens();
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

static size_t
collect_body(char *data, size_t size, size_t nmemb, void *arg)
{
	StringInfo	body = (StringInfo) arg;
	size_t		n = size * nmemb;

	if (body->len + n > JWKS_MAX_SIZE)
		return 0;				/* makes curl fail with a write error */
	appendBinaryStringInfo(body, data, n);
	return n;
}

/* lets a query cancel or shutdown interrupt a slow fetch */
static int
check_interrupts(void *arg, curl_off_t dltotal, curl_off_t dlnow,
				 curl_off_t ultotal, curl_off_t ulnow)
{
	return (QueryCancelPending || ProcDiePending) ? 1 : 0;
}

/* GET the URL; false with *error set on any failure */
static bool
http_get(const char *url, StringInfo body, char **error)
{
	CURL	   *curl;
	CURLcode	rc;
	long		status = 0;
	char		errbuf[CURL_ERROR_SIZE] = "";

	if (!curl_initialized)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		{
			*error = "could not initialize libcurl";
			return false;
		}
		curl_initialized = true;
	}
	curl = curl_easy_init();
	if (curl == NULL)
	{
		*error = "could not create a libcurl handle";
		return false;
	}

	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, body);
	curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, check_interrupts);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);

	rc = curl_easy_perform(curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(curl);

	CHECK_FOR_INTERRUPTS();
	if (rc != CURLE_OK)
	{
		*error = psprintf("%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
		return false;
	}
	if (status != 200)
	{
		*error = psprintf("HTTP status %ld", status);
		return false;
	}
	return true;
}

static BIGNUM *
base64url_bignum(const char *b64)
{
	int			len;
	char	   *bytes = b64 ? jwt_base64url_decode(b64, strlen(b64), &len) : NULL;

	if (bytes == NULL || len == 0)
		return NULL;
	return BN_bin2bn((const unsigned char *) bytes, len, NULL);
}

/* An RSA public key from a JWK's n and e, or NULL if it is not usable. */
static EVP_PKEY *
rsa_key_from_jwk(Jsonb *jwk)
{
	char	   *kty = jwt_json_string(jwk, "kty");
	char	   *use = jwt_json_string(jwk, "use");
	char	   *alg = jwt_json_string(jwk, "alg");
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

	n = base64url_bignum(jwt_json_string(jwk, "n"));
	e = base64url_bignum(jwt_json_string(jwk, "e"));
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
	StringInfoData body;
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
	initStringInfo(&body);
	if (!http_get(payment_jwks_url, &body, &error))
	{
		ereport(LOG,
				(errmsg("payment: could not fetch the JWKS from \"%s\": %s",
						payment_jwks_url, error),
				 errhidestmt(true)));
		return false;
	}
	doc = jwt_parse_json_object(body.data, body.len);
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
		kid = jwt_json_string(jwk, "kid");
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
