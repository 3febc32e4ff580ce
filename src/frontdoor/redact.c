/*-------------------------------------------------------------------------
 * redact.c
 *	  Keeping credentials out of the server log and pg_stat_activity.
 *
 *	  The entry points take a credential argument, and PostgREST passes one
 *	  in request.headers, so the text of a statement that names
 *	  submit_payment, submit_payments, payment_status or request.headers may
 *	  hold an API key or a token.  PostgreSQL shows statement text in many
 *	  places: the STATEMENT of a logged error, log_statement and
 *	  log_min_duration_statement lines, the "parameters:" of an extended-
 *	  protocol execute, messages that echo a literal ("invalid input syntax
 *	  for type uuid: ..."), the error context, and pg_stat_activity.query.
 *
 *	  Such a statement (or an EXECUTE of a prepared one) gets a masked copy:
 *	  the contents of every string, dollar-quoted string, comment and unusual
 *	  quoted identifier, and every bare word shaped like an API key or a JWT,
 *	  become ***.  debug_query_string points at the copy (so STATEMENT lines
 *	  and the query field of csvlog and jsonlog show it), and so does
 *	  pg_stat_activity, from whichever comes first of parse analysis,
 *	  executor start and run (a prepared statement run again) and the
 *	  statement's first log line.  The emit_log_hook masks each log line of
 *	  the statement: the embedded statement text and the bind parameter
 *	  values replaced, the context hidden, and, until an entry point has
 *	  started, whatever the statement's masked parts would show (an echoed
 *	  literal) replaced too.  An entry point's own lines keep their messages:
 *	  they never hold the credential.  PostgreSQL sends the client the same
 *	  ErrorData, so an error it raised before the call reaches the client
 *	  masked as well (elog.c calls changing edata other than output_to_server
 *	  unsupported; PostgreSQL 15 prints the fields after the hook returns).
 *
 *	  The emit_log_hook runs inside error reporting and must not fail: the
 *	  scanner is a plain loop that accepts any input (an unterminated
 *	  literal runs to the end), nothing calls the PostgreSQL lexer, and every
 *	  allocation is MCXT_ALLOC_NO_OOM, a failed one blanking the field.
 *
 *	  This file owns the hooks and their state: the masked copy in
 *	  TopMemoryContext that debug_query_string and pg_stat_activity show,
 *	  which statement is sensitive, and whether an entry point has started.
 *	  redact_scan.c holds the scanner (which texts name the front door,
 *	  their masked copies); redact_log.c masks the text fields of one log
 *	  line.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "parser/analyze.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/memutils.h"

#include "frontdoor/redact.h"
#include "frontdoor/redact_log.h"
#include "frontdoor/redact_scan.h"

static emit_log_hook_type prev_emit_log_hook = NULL;
static post_parse_analyze_hook_type prev_post_parse_analyze_hook = NULL;
static ExecutorStart_hook_type prev_ExecutorStart_hook = NULL;
static ExecutorRun_hook_type prev_ExecutorRun_hook = NULL;

/*
 * The masked copy of the last statement masked and a copy of its text, in
 * TopMemoryContext.  PostgreSQL points debug_query_string at each message's
 * text; while it points at masked_text instead, that message's text is
 * masked_source.  The copies are freed only when debug_query_string does
 * not point at masked_text, and are kept for the next message of the same
 * text (a prepared statement run again), unless they are large.
 */
static char *masked_text = NULL;
static char *masked_source = NULL;

/* copies of longer statements are not kept past their message */
#define MASK_KEEP_MAX 16384

/*
 * The last decision whether a statement names the front door, so that a
 * message of many statements, or of many log lines, is scanned once: a text
 * is identified by its address and the start of the message that carried it.
 */
static const char *decided_text = NULL;
static TimestampTz decided_at = 0;
static bool decided_sensitive = false;

/* an entry point has started in the current statement */
static bool call_ran = false;

/* an entry point has had a credential argument in the current transaction */
static bool credential_in_xact = false;

static bool xact_callback_registered = false;

/*
 * Only a client backend keeps a masked copy in debug_query_string: it alone
 * sets debug_query_string for each message and resets it after, so that the
 * text a copy masks is known to be alive while the copy is in use.  Other
 * processes (parallel workers) mask each line and their activity afresh.
 */
static inline bool
keeps_copy(void)
{
	return MyBackendType == B_BACKEND;
}

static inline bool
is_masked(const char *text)
{
	return text != NULL && text == masked_text;
}

/* redact_names_frontdoor(text), remembered for the rest of the message */
static bool
statement_is_sensitive(const char *text)
{
	TimestampTz at;

	if (is_masked(text))
		return true;
	at = GetCurrentStatementStartTimestamp();
	if (text != decided_text || at != decided_at)
	{
		decided_sensitive = redact_names_frontdoor(text, true);
		decided_text = text;
		decided_at = at;
	}
	return decided_sensitive;
}

typedef enum MaskResult
{
	MASK_INSTALLED,				/* debug_query_string points at the masked copy */
	MASK_NOTHING,				/* the text holds nothing to mask */
	MASK_FAILED					/* out of memory */
} MaskResult;

/* drop the copies; debug_query_string must not point at masked_text */
static void
forget_masked(void)
{
	if (masked_text != NULL)
	{
		pfree(masked_text);
		pfree(masked_source);
		masked_text = masked_source = NULL;
	}
}

/* whether the copies are those of text: then it names the front door */
static inline bool
masked_copy_of(const char *text)
{
	return masked_source != NULL && strcmp(text, masked_source) == 0;
}

/*
 * Point debug_query_string, now original, at a masked copy of original.
 * Callers have checked that debug_query_string is not masked_text, which
 * can therefore go.
 */
static MaskResult
install_masked(const char *original)
{
	bool		failed;
	char	   *copy;
	char	   *source;

	if (masked_copy_of(original))
	{
		debug_query_string = masked_text;
		return MASK_INSTALLED;
	}
	copy = redact_mask_sql(original, TopMemoryContext, &failed);
	if (copy == NULL)
		return failed ? MASK_FAILED : MASK_NOTHING;
	source = redact_alloc_no_oom(TopMemoryContext, strlen(original) + 1);
	if (source == NULL)
	{
		pfree(copy);
		return MASK_FAILED;
	}
	strcpy(source, original);
	forget_masked();
	masked_text = copy;
	masked_source = source;
	debug_query_string = masked_text;
	return MASK_INSTALLED;
}

/*
 * Give pg_stat_activity the masked copy in place of original, if that is
 * what it shows.  Only the query text is written, as pgstat_report_activity
 * writes it, so the state, its timestamps and the query id are left alone.
 */
static void
show_masked_activity(const char *original, const char *masked)
{
	volatile PgBackendStatus *beentry = MyBEEntry;
	size_t		limit;
	size_t		len;

	if (beentry == NULL || !pgstat_track_activities || beentry->st_state == STATE_DISABLED ||
		pgstat_track_activity_query_size <= 1)
		return;
	limit = pgstat_track_activity_query_size - 1;
	if (strncmp((const char *) beentry->st_activity_raw, original, limit) != 0)
		return;
	len = strnlen(masked, limit);
	PGSTAT_BEGIN_WRITE_ACTIVITY(beentry);
	memcpy((char *) beentry->st_activity_raw, masked, len);
	beentry->st_activity_raw[len] = '\0';
	PGSTAT_END_WRITE_ACTIVITY(beentry);
}

/*
 * A log line of a statement that names the front door (stmt): what stands
 * for the statement (its masked copy, installed now at its first line) and
 * whether STATEMENT and the context may show; redact_mask_fields then masks
 * the text fields.
 */
static void
mask_log_line(ErrorData *edata, const char *stmt)
{
	const char *original = stmt;
	const char *shown = NULL;	/* what stands for the statement in a line */
	char	   *transient = NULL;
	bool		failed;

	edata->hide_ctx = true;
	if (is_masked(stmt))
	{
		original = masked_source;
		shown = masked_text;
	}
	else if (!keeps_copy())
	{
		/* STATEMENT shows debug_query_string, which stays unmasked here */
		edata->hide_stmt = true;
		transient = redact_mask_sql(stmt, CurrentMemoryContext, &failed);
		shown = transient ? transient : failed ? MASK : NULL;
	}
	else
	{
		switch (install_masked(stmt))
		{
			case MASK_INSTALLED:
				show_masked_activity(original, masked_text);
				shown = masked_text;
				break;
			case MASK_NOTHING:
				break;
			case MASK_FAILED:
				edata->hide_stmt = true;
				shown = MASK;
				break;
		}
	}

	redact_mask_fields(edata, original, shown, !call_ran);
	if (transient)
		pfree(transient);
}

static void
redact_emit_log(ErrorData *edata)
{
	const char *stmt = debug_query_string;

	if (stmt != NULL && statement_is_sensitive(stmt))
		mask_log_line(edata, stmt);
	else if (credential_in_xact)
	{
		/* a statement not naming the front door passed it a credential */
		edata->hide_stmt = true;
		edata->hide_ctx = true;
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/*
 * Whether a statement's source text is the client message's text: the same
 * string, or (an extended-protocol execute runs the portal's text while
 * debug_query_string is a copy) an equal one.  A nested statement's text
 * differs, mostly from the first byte.
 */
static inline bool
same_text(const char *text, const char *message_text)
{
	return text == message_text || strcmp(text, message_text) == 0;
}

/*
 * Parse analysis or executor start of a statement with source text.  A
 * top-level one (the text of the client's message) that names the front
 * door gets its masked copy now, and pg_stat_activity with it.
 */
static void
mask_top_level_statement(const char *text)
{
	const char *message_text = debug_query_string;

	if (text == NULL || message_text == NULL)
		return;
	if (!keeps_copy())
	{
		/* a parallel worker: its activity shows the leader's text */
		if (same_text(text, message_text) && statement_is_sensitive(message_text))
		{
			bool		failed;
			char	   *copy = redact_mask_sql(message_text, CurrentMemoryContext, &failed);

			if (copy)
			{
				show_masked_activity(message_text, copy);
				pfree(copy);
			}
		}
		return;
	}
	if (is_masked(message_text))
	{
		/* another statement of the same message */
		if (same_text(text, masked_source))
			call_ran = false;
		return;
	}
	if (!same_text(text, message_text))
		return;					/* nested: SPI, a function body */
	call_ran = false;
	if (masked_copy_of(message_text))
		debug_query_string = masked_text;	/* a prepared statement run again */
	else
	{
		if (masked_source != NULL && strlen(masked_source) > MASK_KEEP_MAX)
			forget_masked();
		if (!statement_is_sensitive(message_text) ||
			install_masked(message_text) != MASK_INSTALLED)
			return;
	}
	show_masked_activity(message_text, masked_text);
}

static void
redact_post_parse_analyze(ParseState *pstate, Query *query, JumbleState *jstate)
{
	if (prev_post_parse_analyze_hook)
		prev_post_parse_analyze_hook(pstate, query, jstate);
	mask_top_level_statement(pstate->p_sourcetext);
}

/*
 * A prepared statement run again is not parse-analysed again: its Bind
 * message shows its text in pg_stat_activity and starts the executor, its
 * Execute message shows the text again and runs the executor.
 */
static void
redact_executor_start(QueryDesc *queryDesc, int eflags)
{
	mask_top_level_statement(queryDesc->sourceText);
	if (prev_ExecutorStart_hook)
		prev_ExecutorStart_hook(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
redact_executor_run(QueryDesc *queryDesc, ScanDirection direction, uint64 count,
					bool execute_once)
{
	mask_top_level_statement(queryDesc->sourceText);
	if (prev_ExecutorRun_hook)
		prev_ExecutorRun_hook(queryDesc, direction, count, execute_once);
	else
		standard_ExecutorRun(queryDesc, direction, count, execute_once);
}

static void
forget_call(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		credential_in_xact = false;
		call_ran = false;
	}
}

void
redact_note_call(bool credential_argument)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(forget_call, NULL);
		xact_callback_registered = true;
	}
	call_ran = true;
	if (credential_argument)
		credential_in_xact = true;
}

void
redact_install_hooks(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = redact_emit_log;
	prev_post_parse_analyze_hook = post_parse_analyze_hook;
	post_parse_analyze_hook = redact_post_parse_analyze;
	prev_ExecutorStart_hook = ExecutorStart_hook;
	ExecutorStart_hook = redact_executor_start;
	prev_ExecutorRun_hook = ExecutorRun_hook;
	ExecutorRun_hook = redact_executor_run;
}
