/*-------------------------------------------------------------------------
 * standby_flush.h
 *	  Waiting for the streaming standbys to flush the WAL up to a position,
 *	  before a queue outside the database forgets what was stored
 *	  (standby_flush.c); payment.standby_flush_timeout.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_STANDBY_FLUSH_H
#define PAYMENT_STANDBY_FLUSH_H

#include "access/xlogdefs.h"

/* payment.standby_flush_timeout, in ms; 0: no wait */
extern int	payment_standby_flush_timeout;

extern void standby_flush_define_settings(void);

/*
 * Right after a commit: the WAL position every commit this process could
 * have seen is within (its own, and the commits of what it found stored).
 */
extern XLogRecPtr standby_flush_target(void);

/*
 * Wait on the latch until every streaming physical standby reports the WAL
 * flushed up to lsn, for at most payment.standby_flush_timeout.  Returns
 * true once they have (at once when none streams, or the wait is off);
 * false after the timeout, with one WARNING per episode whose detail is
 * consequence (what the caller then leaves undone).  Outside any
 * transaction; SIGTERM ends the process during the wait.
 */
extern bool standby_flush_wait(XLogRecPtr lsn, const char *consequence);

#endif							/* PAYMENT_STANDBY_FLUSH_H */
