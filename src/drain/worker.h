/*-------------------------------------------------------------------------
 * worker.h
 *	  The payment background workers (worker.c).
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_WORKER_H
#define PAYMENT_WORKER_H

#include "fmgr.h"

/* register payment.workers workers; from _PG_init while preloading */
extern void payment_register_workers(void);

extern PGDLLEXPORT void payment_worker_main(Datum main_arg);

#endif							/* PAYMENT_WORKER_H */
