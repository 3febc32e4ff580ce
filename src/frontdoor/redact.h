/*-------------------------------------------------------------------------
 * redact.h
 *	  Keeping credentials out of the server log and pg_stat_activity: the
 *	  text of a statement naming an entry point or request.headers is
 *	  masked wherever PostgreSQL shows it.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_REDACT_H
#define PAYMENT_REDACT_H

/*
 * Install the emit_log_hook, post_parse_analyze_hook, ExecutorStart_hook and
 * ExecutorRun_hook; called once from _PG_init (through payment_auth_init).
 */
extern void redact_install_hooks(void);

/*
 * An entry point has started (it calls this before any other work): log
 * lines from here to the end of the statement are the extension's own or
 * come from its work, so their messages are kept as written.
 * credential_argument: it was given a credential argument, so no line of
 * this transaction may show a statement or its context unmasked, even one
 * that does not name the entry point (a wrapper function, say).
 */
extern void redact_note_call(bool credential_argument);

#endif							/* PAYMENT_REDACT_H */
