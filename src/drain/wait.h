/*-------------------------------------------------------------------------
 * wait.h
 *	  How a payment worker and the pool's launcher wait, and answer the
 *	  signals they get meanwhile (wait.c).
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_WAIT_H
#define PAYMENT_WAIT_H

/* what a SIGHUP does in the process; NULL: read the configuration file */
typedef void (*DrainReload) (void);

/* how a wait ended */
typedef enum DrainWaitEnd
{
	DRAIN_WAIT_TIMEOUT,			/* the time ran out */
	DRAIN_WAIT_WOKEN,			/* the latch was set: a commit, the postmaster */
	DRAIN_WAIT_RELOADED			/* a SIGHUP: the configuration was read again */
} DrainWaitEnd;

/*
 * Answer the signals received: SIGTERM ends the process here (die's
 * ProcDiePending, through CHECK_FOR_INTERRUPTS), SIGHUP calls reload.
 * Returns true after a reload.  Outside any transaction.
 */
extern bool drain_handle_signals(DrainReload reload);

/*
 * Wait on the process latch for at most timeout_ms, reported as an
 * extension wait event, answering signals as drain_handle_signals does: a
 * signal ends any wait at once.  With absorb_wakes, a wake (the latch set
 * by a commit) is taken and the wait goes on for the rest of the time.
 */
extern DrainWaitEnd drain_wait(long timeout_ms, bool absorb_wakes, DrainReload reload);

#endif							/* PAYMENT_WAIT_H */
