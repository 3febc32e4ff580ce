/*-------------------------------------------------------------------------
 * worker.h
 *	  The payment background workers (worker.c).
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_WORKER_H
#define PAYMENT_WORKER_H

#include "fmgr.h"

/*
 * Register the payment.workers static workers and the pool's launcher (which
 * starts the dynamic ones, pool.c); from _PG_init while preloading.
 */
extern void payment_register_workers(void);

extern PGDLLEXPORT void payment_worker_main(Datum main_arg);

#endif							/* PAYMENT_WORKER_H */
