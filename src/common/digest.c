/*-------------------------------------------------------------------------
 * digest.c
 *	  SHA-256, MD5 (SQS's body checksum), HMAC-SHA256 and hex encoding: the
 *	  one place the extension computes digests, through OpenSSL's EVP API.
 *	  A failure here is OpenSSL's, never the caller's: it raises XX000.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>

#include "common/digest.h"

void
hex_encode_lower(const unsigned char *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++)
	{
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * len] = '\0';
}

static void
digest(const EVP_MD *md, size_t expected_len, const void *data, size_t len,
	   unsigned char *out)
{
	unsigned int outlen = 0;

	if (!EVP_Digest(data, len, out, &outlen, md, NULL) || outlen != expected_len)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a %s digest", EVP_MD_get0_name(md))));
}

void
digest_sha256(const void *data, size_t len, unsigned char *out)
{
	digest(EVP_sha256(), SHA256_BYTES, data, len, out);
}

void
digest_sha256_hex(const void *data, size_t len, char *out)
{
	unsigned char md[SHA256_BYTES];

	digest_sha256(data, len, md);
	hex_encode_lower(md, SHA256_BYTES, out);
}

void
digest_md5_hex(const void *data, size_t len, char *out)
{
	unsigned char md[MD5_BYTES];

	digest(EVP_md5(), MD5_BYTES, data, len, md);
	hex_encode_lower(md, MD5_BYTES, out);
}

void
digest_hmac_sha256(const unsigned char *key, size_t keylen,
				   const void *data, size_t len, unsigned char *out)
{
	size_t		outlen = 0;

	if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, keylen,
				  data, len, out, SHA256_BYTES, &outlen) == NULL ||
		outlen != SHA256_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute an HMAC-SHA256")));
}
