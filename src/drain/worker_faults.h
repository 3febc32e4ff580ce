/*-------------------------------------------------------------------------
 * worker_faults.h
 *	  What a payment worker makes of its failures (worker_faults.c).
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_WORKER_FAULTS_H
#define PAYMENT_WORKER_FAULTS_H

#include "utils/elog.h"

/*
 * A failed turn of the worker's loop (edata: its error, in a context that
 * may be reset): logged as a WARNING unless it repeats the fault already
 * logged.  Returns how long to wait before the next attempt, in ms.
 */
extern long worker_fault(ErrorData *edata);

/*
 * Whether an error is the database's (read-only, in recovery, shutting
 * down, a lock timeout, a connection refused...) rather than a message's:
 * it never counts against the messages of the batch.
 */
extern bool worker_fault_is_database(int sqlerrcode);

/* a turn stored messages: whatever fault there was is over */
extern void worker_fault_cleared(void);

#endif							/* PAYMENT_WORKER_FAULTS_H */
