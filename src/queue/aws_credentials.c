/*-------------------------------------------------------------------------
 * aws_credentials.c
 *	  Resolving the AWS credentials and region for the SQS backend.
 *
 * Owns: the payment.aws_* settings, the lookup order (those settings, then the server's
 * environment, then the shared credentials file of the server's OS user
 * under AWS_PROFILE), reading that INI file, and wiping secrets after use.
 * Credentials are looked up afresh for every request, so rotated keys and
 * refreshed session tokens take effect without a restart.  Nothing here
 * ever puts a secret into a message.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include "lib/stringinfo.h"
#include "storage/fd.h"
#include "utils/guc.h"

#include "queue/aws_credentials.h"

/* larger credentials or config files are refused */
#define AWS_FILE_MAX (1024 * 1024)

char	   *payment_aws_region = "";
char	   *payment_aws_access_key_id = "";
char	   *payment_aws_secret_access_key = "";
char	   *payment_aws_session_token = "";

void
aws_define_settings(void)
{
	DefineCustomStringVariable("payment.aws_region",
							   gettext_noop("AWS region of the SQS queue; empty takes it from the environment."),
							   NULL,
							   &payment_aws_region,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("payment.aws_access_key_id",
							   gettext_noop("AWS access key id for SQS; empty takes credentials from the environment."),
							   NULL,
							   &payment_aws_access_key_id,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("payment.aws_secret_access_key",
							   gettext_noop("AWS secret access key for SQS."),
							   NULL,
							   &payment_aws_secret_access_key,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("payment.aws_session_token",
							   gettext_noop("AWS session token for temporary SQS credentials."),
							   NULL,
							   &payment_aws_session_token,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);
}

static bool
is_set(const char *s)
{
	return s != NULL && s[0] != '\0';
}

static char *
env_value(const char *name)
{
	char	   *v = getenv(name);

	return is_set(v) ? v : NULL;
}

static const char *
profile_name(void)
{
	char	   *p = env_value("AWS_PROFILE");

	return p ? p : "default";
}

/* AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE, else ~/.aws/<file> */
static char *
aws_file_path(const char *env_name, const char *file)
{
	char	   *v = env_value(env_name);
	char		home[MAXPGPATH];

	if (v)
		return pstrdup(v);
	if (!get_home_path(home))
		return NULL;
	return psprintf("%s/.aws/%s", home, file);
}

/* The whole file, or NULL if it does not exist.  The caller wipes it. */
static char *
read_small_file(const char *path)
{
	FILE	   *f;
	struct stat st;
	char	   *data;
	size_t		n;

	f = AllocateFile(path, "r");
	if (f == NULL)
	{
		if (errno == ENOENT || errno == ENOTDIR)
			return NULL;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open AWS file \"%s\": %m", path)));
	}
	if (fstat(fileno(f), &st) != 0 || st.st_size > AWS_FILE_MAX)
	{
		FreeFile(f);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("AWS file \"%s\" is unreadable or larger than %d bytes",
						path, AWS_FILE_MAX)));
	}
	data = palloc(st.st_size + 1);
	n = fread(data, 1, st.st_size, f);
	data[n] = '\0';
	if (ferror(f))
	{
		explicit_bzero(data, n);
		FreeFile(f);
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read AWS file \"%s\": %m", path)));
	}
	FreeFile(f);
	return data;
}

static char *
trim(char *s)
{
	char	   *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0';
	return s;
}

/*
 * Value of key in [section] of an INI text such as ~/.aws/credentials, or
 * NULL.  Modifies text in place.
 */
static char *
ini_lookup(char *text, const char *section, const char *key)
{
	bool		in_section = false;
	char	   *save = NULL;

	for (char *line = strtok_r(text, "\n", &save); line != NULL;
		 line = strtok_r(NULL, "\n", &save))
	{
		char	   *l = trim(line);
		char	   *eq;

		if (*l == '\0' || *l == '#' || *l == ';')
			continue;
		if (*l == '[')
		{
			char	   *close = strchr(l, ']');

			if (close)
				*close = '\0';
			in_section = strcmp(trim(l + 1), section) == 0;
			continue;
		}
		if (!in_section || (eq = strchr(l, '=')) == NULL)
			continue;
		*eq = '\0';
		if (strcmp(trim(l), key) == 0)
			return pstrdup(trim(eq + 1));
	}
	return NULL;
}

/* key from [section] of an INI text, leaving the text intact */
static char *
text_value(const char *text, const char *section, const char *key)
{
	char	   *copy = pstrdup(text);
	size_t		len = strlen(copy);
	char	   *value = ini_lookup(copy, section, key);

	explicit_bzero(copy, len);
	pfree(copy);
	return is_set(value) ? value : NULL;
}

/* key from [section] of a file, or NULL (also when there is no file) */
static char *
file_value(const char *path, const char *section, const char *key)
{
	char	   *text = read_small_file(path);
	char	   *value;

	if (text == NULL)
		return NULL;
	value = text_value(text, section, key);
	explicit_bzero(text, strlen(text));
	pfree(text);
	return value;
}

void
aws_get_credentials(AwsCredentials *creds)
{
	char	   *path;
	char	   *text;
	const char *profile = profile_name();

	memset(creds, 0, sizeof(*creds));

	if (is_set(payment_aws_access_key_id) || is_set(payment_aws_secret_access_key))
	{
		if (!is_set(payment_aws_access_key_id) || !is_set(payment_aws_secret_access_key))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("incomplete AWS credentials in settings"),
					 errdetail("payment.aws_access_key_id and payment.aws_secret_access_key must be set together.")));
		creds->access_key_id = pstrdup(payment_aws_access_key_id);
		creds->secret_access_key = pstrdup(payment_aws_secret_access_key);
		if (is_set(payment_aws_session_token))
			creds->session_token = pstrdup(payment_aws_session_token);
		creds->source = "settings";
		return;
	}

	if (env_value("AWS_ACCESS_KEY_ID") && env_value("AWS_SECRET_ACCESS_KEY"))
	{
		creds->access_key_id = pstrdup(env_value("AWS_ACCESS_KEY_ID"));
		creds->secret_access_key = pstrdup(env_value("AWS_SECRET_ACCESS_KEY"));
		if (env_value("AWS_SESSION_TOKEN"))
			creds->session_token = pstrdup(env_value("AWS_SESSION_TOKEN"));
		creds->source = "environment";
		return;
	}

	path = aws_file_path("AWS_SHARED_CREDENTIALS_FILE", "credentials");
	if (path != NULL && (text = read_small_file(path)) != NULL)
	{
		creds->access_key_id = text_value(text, profile, "aws_access_key_id");
		creds->secret_access_key = text_value(text, profile, "aws_secret_access_key");
		creds->session_token = text_value(text, profile, "aws_session_token");
		explicit_bzero(text, strlen(text));
		pfree(text);
		if (creds->access_key_id && creds->secret_access_key)
		{
			creds->source = "shared credentials file";
			return;
		}
		aws_free_credentials(creds);
	}

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("no AWS credentials found for the SQS backend"),
			 errdetail("Looked at payment.aws_access_key_id, the environment variables AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and profile \"%s\" of \"%s\".",
					   profile, path ? path : "~/.aws/credentials"),
			 errhint("Set payment.aws_access_key_id and payment.aws_secret_access_key, or provide credentials to the server's environment.")));
}

static void
wipe(char **s)
{
	if (*s != NULL)
	{
		explicit_bzero(*s, strlen(*s));
		pfree(*s);
		*s = NULL;
	}
}

void
aws_free_credentials(AwsCredentials *creds)
{
	wipe(&creds->access_key_id);
	wipe(&creds->secret_access_key);
	wipe(&creds->session_token);
}

char *
aws_get_region(void)
{
	const char *profile = profile_name();
	char	   *path;
	char	   *region;

	if (is_set(payment_aws_region))
		return pstrdup(payment_aws_region);
	if (env_value("AWS_REGION"))
		return pstrdup(env_value("AWS_REGION"));
	if (env_value("AWS_DEFAULT_REGION"))
		return pstrdup(env_value("AWS_DEFAULT_REGION"));

	path = aws_file_path("AWS_SHARED_CREDENTIALS_FILE", "credentials");
	if (path && (region = file_value(path, profile, "region")) != NULL)
		return region;

	/* ~/.aws/config names profiles "profile NAME", except the default */
	path = aws_file_path("AWS_CONFIG_FILE", "config");
	if (path == NULL)
		return NULL;
	if (strcmp(profile, "default") == 0)
		return file_value(path, "default", "region");
	return file_value(path, psprintf("profile %s", profile), "region");
}
