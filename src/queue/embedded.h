/*-------------------------------------------------------------------------
 * embedded.h
 *	  The embedded queue backend, inside the database (embedded.c).
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_EMBEDDED_H
#define PAYMENT_EMBEDDED_H

#include "queue/backend.h"

/* the default backend: messages in this database's tables */
extern const QueueBackend embedded_queue;

#endif							/* PAYMENT_EMBEDDED_H */
