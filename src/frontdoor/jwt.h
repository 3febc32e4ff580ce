/*-------------------------------------------------------------------------
 * jwt.h
 *	  Verification of Cognito-style RS256 JSON Web Tokens.
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENT_JWT_H
#define PAYMENT_JWT_H

typedef enum JwtResult
{
	JWT_OK = 0,
	JWT_MALFORMED,				/* not three base64url parts of JSON */
	JWT_BAD_ALG,				/* header alg is not RS256 */
	JWT_UNKNOWN_KID,			/* no such key in the JWKS, even refetched */
	JWT_BAD_SIGNATURE,
	JWT_EXPIRED,
	JWT_NOT_YET_VALID,			/* nbf or iat in the future */
	JWT_BAD_ISSUER,
	JWT_BAD_AUDIENCE,
	JWT_BAD_TOKEN_USE,
	JWT_NO_USER_CLAIM
} JwtResult;

extern char *payment_jwt_issuer;
extern char *payment_jwt_audience;
extern char *payment_jwt_user_claim;
extern int	payment_jwt_leeway;

extern void jwt_define_settings(void);

/*
 * Verify a compact JWT.  On JWT_OK, *user_id is the user claim (palloc'd in
 * the caller's context).  Server misconfiguration raises an ERROR instead.
 */
extern JwtResult jwt_verify(const char *token, char **user_id);

/* What went wrong, for the server log only. */
extern const char *jwt_result_text(JwtResult result);

#endif							/* PAYMENT_JWT_H */
