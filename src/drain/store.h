/*-------------------------------------------------------------------------
 * store.h
 *	  Idempotent writes of a claimed batch (store.c).
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_STORE_H
#define PAYMENT_STORE_H

#include "queue/queue.h"

/*
 * Store a claimed batch, setting each message's outcome.  The caller owns
 * the transaction and the SPI connection.  With isolate, each message is
 * stored in a subtransaction of its own.
 */
extern void store_batch(QueueMessage *messages, int count, bool isolate);

/* after the store committed: count the outcomes for payment.stats */
extern void store_count_outcomes(QueueMessage *messages, int count);

#endif							/* PAYMENT_STORE_H */
