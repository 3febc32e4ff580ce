/*-------------------------------------------------------------------------
 * request_id.h
 *	  The request id of a front-door call (request_id.c).
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_REQUEST_ID_H
#define PAYMENT_REQUEST_ID_H

/*
 * The call's request id: request.headers' x-request-id, else its
 * traceparent, when well formed; otherwise a new UUID.  Palloc'd.
 */
extern char *payment_request_id(void);

#endif							/* PAYMENT_REQUEST_ID_H */
