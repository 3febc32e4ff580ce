/*-------------------------------------------------------------------------
 * standby_flush.c
 *	  Whether the streaming standbys have flushed a commit, and the bounded
 *	  wait for it (payment.standby_flush_timeout).
 *
 *	  A queue outside the database (SQS) forgets a message once the worker
 *	  deletes it; the payment is then only in the database.  A commit is
 *	  durable on the primary, but an asynchronous standby may not have it
 *	  yet: promoted after a crash of the primary, it would have neither the
 *	  payment nor, in the queue, its message.  So the delete waits until
 *	  every standby streaming from this server reports the commit flushed
 *	  (the walsenders' flush positions, WalSndCtl, each read under its
 *	  spinlock).  A synchronous standby has it once the commit returned, so
 *	  the wait ends at once.  A standby not streaming (disconnected, still
 *	  catching up) is not waited for: it lacks other commits as well, and
 *	  is no standby a failover can take without loss.  Logical walsenders (connected to a
 *	  database) and WAL streams that never flush (pg_basebackup's) are not
 *	  standbys and are skipped.
 *
 *	  The walsenders do not wake other processes when a standby answers,
 *	  so the wait polls, on the latch, from 1 ms up to 10 ms between looks.
 *	  After the timeout the caller leaves the messages in the queue: they
 *	  are delivered again, and the store recognises them (a duplicate).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "replication/walsender.h"
#include "replication/walsender_private.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "queue/standby_flush.h"

int			payment_standby_flush_timeout = 10000;

/* a timeout was warned about, and no wait has succeeded since */
static bool behind_warned = false;

#define FIRST_POLL_MS 1
#define MAX_POLL_MS 10

void
standby_flush_define_settings(void)
{
	DefineCustomIntVariable("payment.standby_flush_timeout",
							gettext_noop("How long a worker waits for the streaming standbys to flush a store's commit before it deletes the messages from SQS; 0: no wait."),
							gettext_noop("After it, the messages stay in SQS and are delivered again (stored as duplicates)."),
							&payment_standby_flush_timeout,
							10000, 0, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}

XLogRecPtr
standby_flush_target(void)
{
	/*
	 * Not only XactLastCommitEnd: a payment found stored already (a
	 * duplicate) was committed by another process, maybe later in the WAL.
	 * Every commit this process saw was flushed locally before it became
	 * visible (the workers commit with synchronous_commit on), so the local
	 * flush position covers them all.
	 */
	return Max(XactLastCommitEnd, GetFlushRecPtr(NULL));
}

/* a physical walsender's stream that reports flushing (a standby), not logical decoding */
static bool
is_standby(pid_t pid, XLogRecPtr write, XLogRecPtr flush)
{
	PGPROC	   *proc;

	/* pg_basebackup's WAL stream reports writes but never a flush */
	if (!XLogRecPtrIsInvalid(write) && XLogRecPtrIsInvalid(flush))
		return false;
	proc = BackendPidGetProc(pid);
	return proc != NULL && !OidIsValid(proc->databaseId);
}

/* how many streaming standbys have not flushed up to lsn */
static int
standbys_behind(XLogRecPtr lsn)
{
	int			behind = 0;

	if (WalSndCtl == NULL)
		return 0;
	for (int i = 0; i < max_wal_senders; i++)
	{
		WalSnd	   *walsnd = &WalSndCtl->walsnds[i];
		pid_t		pid;
		WalSndState state;
		XLogRecPtr	write;
		XLogRecPtr	flush;

		SpinLockAcquire(&walsnd->mutex);
		pid = walsnd->pid;
		state = walsnd->state;
		write = walsnd->write;
		flush = walsnd->flush;
		SpinLockRelease(&walsnd->mutex);

		if (pid == 0 || state != WALSNDSTATE_STREAMING)
			continue;
		if (flush >= lsn && !XLogRecPtrIsInvalid(flush))
			continue;
		if (is_standby(pid, write, flush))
			behind++;
	}
	return behind;
}

bool
standby_flush_wait(XLogRecPtr lsn, const char *consequence)
{
	TimestampTz start;
	long		poll_ms = FIRST_POLL_MS;
	bool		woken = false;
	int			behind;

	if (payment_standby_flush_timeout <= 0 || XLogRecPtrIsInvalid(lsn) ||
		max_wal_senders == 0)
		return true;
	start = GetCurrentTimestamp();
	while ((behind = standbys_behind(lsn)) > 0)
	{
		long		waited = TimestampDifferenceMilliseconds(start, GetCurrentTimestamp());
		int			rc;

		if (waited >= payment_standby_flush_timeout)
		{
			if (!behind_warned)
				ereport(WARNING,
						(errcode(ERRCODE_WARNING),
						 errmsg("%d streaming standby server(s) did not flush a payment commit within payment.standby_flush_timeout (%d ms)",
								behind, payment_standby_flush_timeout),
						 errdetail("%s", consequence),
						 errhint("Look at pg_stat_replication on the primary; this is warned once until the standbys catch up.")));
			behind_warned = true;
			break;
		}
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   Min(poll_ms, payment_standby_flush_timeout - waited),
					   PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			woken = true;
		}
		CHECK_FOR_INTERRUPTS();
		poll_ms = Min(poll_ms * 2, MAX_POLL_MS);
	}
	/* a commit's wake or a SIGHUP meanwhile is for the caller's next wait */
	if (woken)
		SetLatch(MyLatch);
	if (behind == 0 && behind_warned)
	{
		ereport(LOG,
				(errmsg("the streaming standby servers flush the payment commits again")));
		behind_warned = false;
	}
	return behind == 0;
}
