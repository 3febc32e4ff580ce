/*-------------------------------------------------------------------------
 * json_util.h
 *	  Reading untrusted JSON into jsonb without raising, and reading members
 *	  of jsonb objects: the one set of JSON helpers of the extension.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_JSON_UTIL_H
#define PAYMENT_JSON_UTIL_H

#include "utils/jsonb.h"

/*
 * Text to a jsonb object, or NULL when it is not one (bad syntax, NUL bytes,
 * invalid encoding, not an object).  Syntax is checked with the
 * non-throwing parser first, so untrusted input gets the caller's own
 * SQLSTATE; what jsonb itself refuses (e.g. numbers out of range) still raises.
 */
extern Jsonb *json_parse_object(const char *text, size_t len);

/* the member named by name[0..len) of an object; NULL when absent or not an object */
extern JsonbValue *json_find_member(JsonbContainer *obj, const char *name, int len);

/* members of an object; NULL / false where absent or of another type */
extern char *json_get_string(JsonbContainer *obj, const char *key);
extern bool json_get_number(JsonbContainer *obj, const char *key, double *value);
extern JsonbContainer *json_get_container(JsonbContainer *obj, const char *key);

/* arrays: size (0 when not an array) and the i-th element if an object */
extern int	json_array_size(JsonbContainer *arr);
extern JsonbContainer *json_array_object(JsonbContainer *arr, int i);

#endif							/* PAYMENT_JSON_UTIL_H */
