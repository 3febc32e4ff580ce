/*-------------------------------------------------------------------------
 * sqs.h
 *	  The Amazon SQS queue backend (sqs_queue in queue.h) and its settings.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_SQS_H
#define PAYMENT_SQS_H

extern int	payment_wait_time;

extern void sqs_define_settings(void);

#endif							/* PAYMENT_SQS_H */
