/*-------------------------------------------------------------------------
 * redact_scan.h
 *	  The scanner behind redact.c (redact_scan.c): the mask, a region of a
 *	  text to mask, the byte classes, which texts name the front door and
 *	  their masked copies.  For the redact*.c files only; redact.h is the
 *	  interface.
 *
 *	  These run inside error reporting (the emit_log_hook) and must not
 *	  fail: no ereport, no lexer, allocations with MCXT_ALLOC_NO_OOM only.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_REDACT_SCAN_H
#define PAYMENT_REDACT_SCAN_H

#define MASK "***"
#define MASK_LEN 3

/* A part of a text to mask: its bytes [start, end). */
typedef struct Region
{
	size_t		start;
	size_t		end;
} Region;

#define IS_ALPHA(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

/* a byte of an SQL identifier or keyword */
static inline bool
ident_byte(unsigned char c)
{
	return IS_ALPHA(c) || IS_DIGIT(c) || c == '_' || c == '$' || c >= 0x80;
}

static inline bool
b64url_byte(unsigned char c)
{
	return IS_ALPHA(c) || IS_DIGIT(c) || c == '_' || c == '-';
}

extern const char *redact_find_bytes(const char *hay, size_t hay_len,
									 const char *needle, size_t needle_len);
extern char *redact_alloc_no_oom(MemoryContext cxt, size_t size);
extern size_t redact_credential_len(const char *s);
extern bool redact_next_region(const char *s, size_t len, size_t *pos, Region *r);
extern char *redact_mask_sql(const char *text, MemoryContext cxt, bool *failed);
extern bool redact_names_frontdoor(const char *text, bool follow_execute);

#endif							/* PAYMENT_REDACT_SCAN_H */
