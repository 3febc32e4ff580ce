/*-------------------------------------------------------------------------
 * format.c
 *	  The "format" values the engine checks: uuid (RFC 4122's hyphenated
 *	  8-4-4-4-12 form, hex digits in either case), date-time (RFC 3339),
 *	  email (a plain local@domain shape), ipv4 and ipv6 (the C library's
 *	  inet_pton, which refuses leading zeros and zone ids), hostname
 *	  (RFC 1123 labels) and uri (an absolute URI: scheme, then only
 *	  characters RFC 3986 allows).  Unknown formats are ignored, as the
 *	  specification says.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>

#include "schema/json_schema.h"

JsonSchemaFormat
json_schema_format_by_name(const char *name, int len)
{
	static const struct
	{
		const char *name;
		JsonSchemaFormat format;
	}			formats[] =
	{
		{"uuid", JSF_UUID}, {"date-time", JSF_DATE_TIME}, {"email", JSF_EMAIL},
		{"ipv4", JSF_IPV4}, {"ipv6", JSF_IPV6}, {"hostname", JSF_HOSTNAME},
		{"uri", JSF_URI},
	};

	for (int i = 0; i < lengthof(formats); i++)
		if (strlen(formats[i].name) == len && memcmp(formats[i].name, name, len) == 0)
			return formats[i].format;
	return JSF_NONE;
}

bool
json_is_canonical_uuid(const char *s, int len)
{
	if (len != 36)
		return false;
	for (int i = 0; i < len; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!isxdigit((unsigned char) s[i]))
			return false;
	}
	return true;
}

/* exactly n ASCII digits at s, as a number in *out */
static bool
digits(const char *s, int n, int *out)
{
	*out = 0;
	for (int i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		*out = *out * 10 + (s[i] - '0');
	}
	return true;
}

/* RFC 3339 date-time: 1985-04-12T23:20:50.52Z, 1996-12-19T16:39:57-08:00 */
static bool
is_date_time(const char *s, int len)
{
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int			year,
				month,
				day,
				hour,
				minute,
				second,
				p;

	if (len < 20 ||
		!digits(s, 4, &year) || s[4] != '-' || !digits(s + 5, 2, &month) ||
		s[7] != '-' || !digits(s + 8, 2, &day) ||
		(s[10] != 'T' && s[10] != 't') ||
		!digits(s + 11, 2, &hour) || s[13] != ':' || !digits(s + 14, 2, &minute) ||
		s[16] != ':' || !digits(s + 17, 2, &second))
		return false;
	if (month < 1 || month > 12 || day < 1 || day > mdays[month - 1] ||
		hour > 23 || minute > 59 || second > 60)
		return false;
	if (month == 2 && day == 29 &&
		!((year % 4 == 0 && year % 100 != 0) || year % 400 == 0))
		return false;
	p = 19;
	if (s[p] == '.')
	{
		int			start = ++p;

		while (p < len && s[p] >= '0' && s[p] <= '9')
			p++;
		if (p == start)
			return false;
	}
	if (p < len && (s[p] == 'Z' || s[p] == 'z'))
		return p + 1 == len;
	if (p < len && (s[p] == '+' || s[p] == '-'))
	{
		int			oh,
					om;

		return len - p == 6 && digits(s + p + 1, 2, &oh) && s[p + 3] == ':' &&
			digits(s + p + 4, 2, &om) && oh <= 23 && om <= 59;
	}
	return false;
}

static bool
is_email(const char *s, int len)
{
	const char *at = memchr(s, '@', len);
	int			local;

	if (at == NULL || memchr(at + 1, '@', len - (at - s) - 1) != NULL)
		return false;
	local = at - s;
	if (local == 0 || at + 1 == s + len || s[0] == '.' || s[local - 1] == '.')
		return false;
	for (int i = 0; i < len; i++)
		if (s[i] == ' ' || (i > 0 && i < local && s[i] == '.' && s[i - 1] == '.'))
			return false;
	return true;
}

static bool
is_ip(int family, const char *s, int len)
{
	char		buf[64];
	unsigned char addr[16];

	if (len >= (int) sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return inet_pton(family, buf, addr) == 1;
}

static bool
is_hostname(const char *s, int len)
{
	int			label = 0;

	if (len == 0 || len > 253)
		return false;
	for (int i = 0; i < len; i++)
	{
		if (s[i] == '.')
		{
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!(isalnum((unsigned char) s[i]) || (s[i] == '-' && label > 0)) ||
			(unsigned char) s[i] > 127)
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && s[len - 1] != '-';
}

static bool
is_uri(const char *s, int len)
{
	int			i = 0;

	if (len == 0 || !isalpha((unsigned char) s[0]))
		return false;
	while (i < len && (isalnum((unsigned char) s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
		i++;
	if (i == len || s[i] != ':')
		return false;
	for (i++; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '%')
		{
			if (i + 2 >= len || !isxdigit((unsigned char) s[i + 1]) ||
				!isxdigit((unsigned char) s[i + 2]))
				return false;
			i += 2;
		}
		else if (c == 0 || c >= 128 ||
				 !(isalnum(c) || strchr("-._~:/?#[]@!$&'()*+,;=", c) != NULL))
			return false;
	}
	return true;
}

bool
json_schema_check_format(JsonSchemaFormat format, const char *s, int len)
{
	switch (format)
	{
		case JSF_NONE:
			return true;
		case JSF_UUID:
			return json_is_canonical_uuid(s, len);
		case JSF_DATE_TIME:
			return is_date_time(s, len);
		case JSF_EMAIL:
			return is_email(s, len);
		case JSF_IPV4:
			return is_ip(AF_INET, s, len);
		case JSF_IPV6:
			return is_ip(AF_INET6, s, len);
		case JSF_HOSTNAME:
			return is_hostname(s, len);
		case JSF_URI:
			return is_uri(s, len);
	}
	return true;
}
