/*-------------------------------------------------------------------------
 * digest.h
 *	  Hashes, HMAC and hex encoding, all through OpenSSL's EVP interface.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_DIGEST_H
#define PAYMENT_DIGEST_H

#define SHA256_BYTES 32
#define MD5_BYTES 16

/* lower-case hex of len bytes; out holds 2 * len + 1 */
extern void hex_encode_lower(const unsigned char *in, size_t len, char *out);

/* SHA-256 of data into out (SHA256_BYTES) */
extern void digest_sha256(const void *data, size_t len, unsigned char *out);

/* lower-case hex SHA-256 (out: 65 bytes) and MD5 (out: 33 bytes) of data */
extern void digest_sha256_hex(const void *data, size_t len, char *out);
extern void digest_md5_hex(const void *data, size_t len, char *out);

/* HMAC-SHA256 of data under key into out (SHA256_BYTES) */
extern void digest_hmac_sha256(const unsigned char *key, size_t keylen,
							   const void *data, size_t len, unsigned char *out);

#endif							/* PAYMENT_DIGEST_H */
