/*-------------------------------------------------------------------------
 * wait.c
 *	  The one way a payment worker or the pool's launcher waits: on its
 *	  latch, with a timeout, as an extension wait event, exiting if the
 *	  postmaster dies.  SIGTERM (die) and SIGHUP (SignalHandlerForConfigReload)
 *	  set the latch, so no wait outlasts them: a stopped worker exits within
 *	  milliseconds, whether idle or gathering a batch.
 *
 *	  A worker gathering the next batch for payment.batch_window absorbs
 *	  the wakes of the commits meanwhile (absorb_wakes): it claims once
 *	  the window is over, and the wakes must not have it claim again at
 *	  once, a few messages at a time.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "drain/wait.h"

bool
drain_handle_signals(DrainReload reload)
{
	CHECK_FOR_INTERRUPTS();
	if (!ConfigReloadPending)
		return false;
	ConfigReloadPending = false;
	if (reload != NULL)
		reload();
	else
		ProcessConfigFile(PGC_SIGHUP);
	return true;
}

DrainWaitEnd
drain_wait(long timeout_ms, bool absorb_wakes, DrainReload reload)
{
	long		remaining = Max(timeout_ms, 1);
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), remaining);
	DrainWaitEnd result = DRAIN_WAIT_TIMEOUT;

	for (;;)
	{
		int			rc = WaitLatch(MyLatch,
								   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								   remaining, PG_WAIT_EXTENSION);

		if (rc & WL_LATCH_SET)
			ResetLatch(MyLatch);
		if (drain_handle_signals(reload))
			return DRAIN_WAIT_RELOADED;
		if (!(rc & WL_LATCH_SET))
			return result;
		result = DRAIN_WAIT_WOKEN;
		if (!absorb_wakes)
			return result;
		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), end);
		if (remaining <= 0)
			return result;
	}
}
