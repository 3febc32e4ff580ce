/*-------------------------------------------------------------------------
 * json_digest.h
 *	  A digest of a JSON document that JSON-equal documents share
 *	  (json_digest.c).
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_JSON_DIGEST_H
#define PAYMENT_JSON_DIGEST_H

#include "utils/jsonb.h"

#include "common/digest.h"

/*
 * SHA-256 (SHA256_BYTES into out) of the document in a canonical form:
 * equal for documents jsonb's equality finds equal (keys in any order,
 * 7.990 and 7.99), different otherwise.
 */
extern void json_digest(Jsonb *doc, unsigned char *out);

#endif							/* PAYMENT_JSON_DIGEST_H */
