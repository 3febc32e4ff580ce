/*-------------------------------------------------------------------------
 * aws_credentials.h
 *	  Where the SQS backend's AWS credentials and region come from.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_AWS_CREDENTIALS_H
#define PAYMENT_AWS_CREDENTIALS_H

/* "" means unset */
extern char *payment_aws_region;
extern char *payment_aws_access_key_id;
extern char *payment_aws_secret_access_key;
extern char *payment_aws_session_token;

extern void aws_define_settings(void);

typedef struct AwsCredentials
{
	char	   *access_key_id;
	char	   *secret_access_key;
	char	   *session_token;	/* NULL when there is none */
	const char *source;			/* for messages: where they were found */
} AwsCredentials;

/*
 * The credentials to sign with: the payment.aws_* settings, else the
 * server's environment, else the shared credentials file.  Raises an ERROR
 * (28000) when there are none.
 */
extern void aws_get_credentials(AwsCredentials *creds);

/* wipe and free what aws_get_credentials returned */
extern void aws_free_credentials(AwsCredentials *creds);

/* the region, by the same order, then the shared config file; or NULL */
extern char *aws_get_region(void);

#endif							/* PAYMENT_AWS_CREDENTIALS_H */
