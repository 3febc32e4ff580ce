/*-------------------------------------------------------------------------
 * pool_hooks.h
 *	  The pool's ProcessUtility hook (pool_hooks.c): DROP DATABASE stops
 *	  the payment workers of the database first.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_POOL_HOOKS_H
#define PAYMENT_POOL_HOOKS_H

/* from _PG_init while preloading */
extern void pool_install_hooks(void);

#endif							/* PAYMENT_POOL_HOOKS_H */
