/*-------------------------------------------------------------------------
 * base64url.c
 *	  base64url (RFC 4648 section 5, unpadded), as JWTs and JWKs use it:
 *	  translated to base64 and decoded by PostgreSQL's common code.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/base64.h"

#include "common/base64url.h"

/*
 * base64url (RFC 4648 section 5, unpadded) to bytes, NUL-terminated for
 * convenience.  NULL when the input is not base64url.
 */
char *
base64url_decode(const char *src, int srclen, int *dstlen)
{
	int			padded = srclen + (4 - srclen % 4) % 4;
	char	   *b64 = palloc(padded + 1);
	char	   *dst;
	int			len;

	if (srclen % 4 == 1)
		return NULL;
	for (int i = 0; i < srclen; i++)
	{
		char		c = src[i];

		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
				   (c >= '0' && c <= '9')))
			return NULL;
		b64[i] = c;
	}
	for (int i = srclen; i < padded; i++)
		b64[i] = '=';
	b64[padded] = '\0';

	dst = palloc(pg_b64_dec_len(padded) + 1);
	len = pg_b64_decode(b64, padded, dst, pg_b64_dec_len(padded));
	pfree(b64);
	if (len < 0)
		return NULL;
	dst[len] = '\0';
	*dstlen = len;
	return dst;
}
