/*-------------------------------------------------------------------------
 * result.c
 *	  A validation's problems: (path, keyword, message) collected into a
 *	  JsonSchemaResult, at most max_errors kept (all counted), and the
 *	  JSONPath-like text of a document path.  Shared by validate.c and the
 *	  payment layer's key check.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/json.h"

#include "schema/json_schema.h"

/* "$.name" for plain names, "$["odd name"]" otherwise */
char *
json_schema_child_path(const char *path, const char *name, int len)
{
	StringInfoData buf;
	bool		plain = (len > 0);

	for (int i = 0; i < len; i++)
		if (!(isalnum((unsigned char) name[i]) || name[i] == '_'))
			plain = false;
	initStringInfo(&buf);
	appendStringInfoString(&buf, path);
	if (plain)
	{
		appendStringInfoChar(&buf, '.');
		appendBinaryStringInfo(&buf, name, len);
	}
	else
	{
		appendStringInfoChar(&buf, '[');
		escape_json(&buf, pnstrdup(name, len));
		appendStringInfoChar(&buf, ']');
	}
	return buf.data;
}

/* fmt formatted with args, palloc'd: a StringInfo grown until it fits */
char *
json_schema_vformat(const char *fmt, va_list args)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (;;)
	{
		va_list		copy;
		int			needed;

		va_copy(copy, args);
		needed = appendStringInfoVA(&buf, fmt, copy);
		va_end(copy);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	return buf.data;
}

void
json_schema_add_error(JsonSchemaResult *result, const char *path,
					  const char *keyword, const char *fmt,...)
{
	va_list		args;
	JsonSchemaError *e;

	if (result->count++ >= result->max_errors)
		return;
	if (result->errors == NULL)
		result->errors = palloc(sizeof(JsonSchemaError) * result->max_errors);
	e = &result->errors[result->nerrors++];
	e->path = pstrdup(path);
	e->keyword = keyword;
	va_start(args, fmt);
	e->message = json_schema_vformat(fmt, args);
	va_end(args);
}

bool
json_schema_has_error_at(JsonSchemaResult *result, const char *path)
{
	for (int i = 0; i < result->nerrors; i++)
		if (strcmp(result->errors[i].path, path) == 0)
			return true;
	return false;
}
