/*-------------------------------------------------------------------------
 * worker_privileges.h
 *	  The privileges a payment worker's role needs (worker_privileges.c).
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_WORKER_PRIVILEGES_H
#define PAYMENT_WORKER_PRIVILEGES_H

/*
 * In a transaction: raise 42501, naming every missing privilege and the
 * call that grants them, when the worker's role lacks one it needs.
 */
extern void worker_check_privileges(void);

#endif							/* PAYMENT_WORKER_PRIVILEGES_H */
