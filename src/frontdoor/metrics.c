/*-------------------------------------------------------------------------
 * metrics.c
 *	  payment.metrics(): what the server counts in shared memory, in the
 *	  long shape a scraper reads (metric, label, value): the counters, dead
 *	  letters by reason, workers busy, and the submit-to-stored latency of
 *	  the last minute (latency.c).  Reads no table: the queue's depth and
 *	  the dead letters kept are payment.stats's, which reads them.
 *
 *	  Every figure here resets at server restart.  The names and labels are
 *	  an interface (monitoring/queries.yaml reads them): add, never rename.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "latency.h"
#include "payment.h"
#include "queue/queue.h"

PG_FUNCTION_INFO_V1(payment_metrics);

typedef struct MetricsOut
{
	Tuplestorestate *store;
	TupleDesc	desc;
} MetricsOut;

/* one row; has_value false: NULL (not preloaded, or no sample yet) */
static void
emit(MetricsOut *out, const char *metric, const char *label, bool has_value, double value)
{
	Datum		values[3];
	bool		nulls[3] = {false, label == NULL, !has_value};

	values[0] = CStringGetTextDatum(metric);
	values[1] = label ? CStringGetTextDatum(label) : (Datum) 0;
	values[2] = Float8GetDatum(value);
	tuplestore_putvalues(out->store, out->desc, values, nulls);
}

static void
emit_counter(MetricsOut *out, const char *metric, const char *label, pg_atomic_uint64 *counter)
{
	bool		known = payment_shared != NULL;

	emit(out, metric, label, known, known ? (double) pg_atomic_read_u64(counter) : 0);
}

Datum
payment_metrics(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PaymentCounters dummy;
	PaymentCounters *c = payment_shared ? payment_counters_here() : &dummy;
	PaymentLatency latency;
	bool		known;
	MetricsOut	out;

	InitMaterializedSRF(fcinfo, 0);
	out.store = rsinfo->setResult;
	out.desc = rsinfo->setDesc;

	emit_counter(&out, "submitted_total", NULL, &c->submitted);
	emit_counter(&out, "stored_total", NULL, &c->stored);
	emit_counter(&out, "duplicates_total", NULL, &c->duplicates);
	for (DeadLetterReason r = DEAD_LETTER_INVALID; r <= DEAD_LETTER_MAX_RECEIVES; r++)
		emit_counter(&out, "dead_lettered_total", dead_letter_reason_name(r),
					 &c->dead_lettered_by_reason[r]);
	emit_counter(&out, "retried_total", NULL, &c->retried);
	emit_counter(&out, "redriven_total", NULL, &c->redriven);
	emit_counter(&out, "scale_events_total", NULL,
				 payment_shared ? &payment_shared->counters.scale_events : &dummy.scale_events);
	/* the workers of another database are not this one's */
	emit(&out, "workers_busy", NULL, payment_shared != NULL,
		 payment_shared != NULL && payment_serves_this_database() ?
		 (double) payment_workers_busy() : 0);

	known = payment_latency_read(&latency);
	emit(&out, "stored_last_minute", NULL, known, (double) latency.samples);
	emit(&out, "store_latency_p50_seconds", NULL, latency.samples > 0, latency.p50);
	emit(&out, "store_latency_p99_seconds", NULL, latency.samples > 0, latency.p99);
	emit(&out, "store_latency_max_seconds", NULL, latency.samples > 0, latency.max);
	return (Datum) 0;
}
