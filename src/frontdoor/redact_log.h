/*-------------------------------------------------------------------------
 * redact_log.h
 *	  Masking the text fields of one log line (redact_log.c), for redact.c's
 *	  emit_log_hook only; redact.h is the interface.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_REDACT_LOG_H
#define PAYMENT_REDACT_LOG_H

/*
 * Runs inside error reporting and does not fail: where there is no memory
 * for a field's masked copy, the field is blanked in place.
 */
extern void redact_mask_fields(ErrorData *edata, const char *original, const char *shown,
							   bool scrub);

#endif							/* PAYMENT_REDACT_LOG_H */
