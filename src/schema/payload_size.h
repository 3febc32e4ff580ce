/*-------------------------------------------------------------------------
 * payload_size.h
 *	  The size limits of a submitted payment (payment.max_payload_size, the
 *	  digits of its numbers), checked before and after it is rendered.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_PAYLOAD_SIZE_H
#define PAYMENT_PAYLOAD_SIZE_H

#include "utils/jsonb.h"

/*
 * Before a payload is rendered as text: raise 22001 when its JSON text
 * would be longer than payment.max_payload_size, and 22003 for a number
 * with more than 1,000 digits before or after the decimal point.  root is
 * the payload's container (a Jsonb's root or a jbvBinary value),
 * container_size its bytes (VARSIZE less the header).  Computed in one walk
 * that renders nothing but numbers of bounded length.
 */
extern void payment_check_payload_size(JsonbContainer *root, Size container_size);

/* After rendering: 22001 when the text is longer than payment.max_payload_size. */
extern void payment_check_text_size(Size text_length);

#endif							/* PAYMENT_PAYLOAD_SIZE_H */
