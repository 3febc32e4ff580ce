/*-------------------------------------------------------------------------
 * jwks.h
 *	  The JSON Web Key Set named by payment.jwks_url: fetched with libcurl,
 *	  cached per backend, refetched (rate-limited) for an unknown kid.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_JWKS_H
#define PAYMENT_JWKS_H

#include <openssl/evp.h>

extern char *payment_jwks_url;
extern int	payment_jwks_refetch_interval;

extern void jwks_define_settings(void);

/*
 * Changes whenever payment.jwks_url does: tokens verified against another
 * key set must not be trusted from a cache.
 */
extern uint64 jwks_url_generation(void);

/*
 * The RSA public key with this kid, or NULL when the set has none, even after
 * a refetch (if one was allowed).  The key belongs to the cache: do not free.
 */
extern EVP_PKEY *jwks_get_key(const char *kid);

#endif							/* PAYMENT_JWKS_H */
