/*-------------------------------------------------------------------------
 * base64url.h
 *	  Decoding base64url (JWT segments, JWK key parameters).
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_BASE64URL_H
#define PAYMENT_BASE64URL_H

/* bytes, NUL-terminated, with their count in *dstlen; NULL if not base64url */
extern char *base64url_decode(const char *src, int srclen, int *dstlen);

#endif							/* PAYMENT_BASE64URL_H */
