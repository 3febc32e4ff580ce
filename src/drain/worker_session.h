/*-------------------------------------------------------------------------
 * worker_session.h
 *	  The payment workers' session: role and pinned settings, and whether
 *	  the database is ready for them (worker_session.c).
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_WORKER_SESSION_H
#define PAYMENT_WORKER_SESSION_H

/* payment.worker_role: empty means the bootstrap superuser */
extern char *payment_worker_role;

extern void worker_session_define_settings(void);

/*
 * Connect to payment.database as payment.worker_role, then pin search_path
 * and the isolation level over whatever the database or role sets.
 */
extern void worker_session_connect(void);

/*
 * Outside any transaction: whether CREATE EXTENSION payment ran in the
 * worker's database; raises 42501 when the role lacks a privilege it needs.
 */
extern bool worker_session_ready(void);

#endif							/* PAYMENT_WORKER_SESSION_H */
