/* validate.c — field checks for JSON bodies; messages are meant for end users. */
#include "validate.h"
#include "server.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

void sp_check_init(struct sp_check *c, const json_t *body)
{
	c->body = body;
	c->errors = json_object();
}

void sp_check_clear(struct sp_check *c)
{
	json_decref(c->errors);
	c->errors = NULL;
}

void sp_check_fail(struct sp_check *c, const char *field, const char *message)
{
	if (!json_object_get(c->errors, field))
		json_object_set_new(c->errors, field, json_string(message));
}

void sp_check_known(struct sp_check *c, const char *const *allowed)
{
	if (!json_is_object(c->body)) {
		sp_check_fail(c, "", "the body must be a JSON object");
		return;
	}
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)c->body, key, v)
	{
		bool known = false;
		for (const char *const *a = allowed; *a && !known; a++)
			known = strcmp(*a, key) == 0;
		if (!known)
			sp_check_fail(c, key, "unknown field");
	}
}

static json_t *get(struct sp_check *c, const char *field, bool required)
{
	json_t *v = json_is_object(c->body) ? json_object_get(c->body, field) : NULL;
	if (!v && required)
		sp_check_fail(c, field, "is required");
	return v;
}

static size_t utf8_len(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

const char *sp_check_string(struct sp_check *c, const char *field, bool required, size_t min,
                            size_t max)
{
	json_t *v = get(c, field, required);
	if (!v)
		return NULL;
	if (!json_is_string(v)) {
		sp_check_fail(c, field, "must be a string");
		return NULL;
	}
	const char *s = json_string_value(v);
	size_t n = utf8_len(s);
	if (n < min || n > max) {
		char msg[96];
		if (min == max)
			snprintf(msg, sizeof(msg), "must have %zu characters", min);
		else if (n < min && min == 1)
			snprintf(msg, sizeof(msg), "must not be empty");
		else
			snprintf(msg, sizeof(msg), "must have between %zu and %zu characters", min,
			         max);
		sp_check_fail(c, field, msg);
		return NULL;
	}
	return s;
}

const char *sp_check_enum(struct sp_check *c, const char *field, bool required,
                          const char *const *values)
{
	const char *s = sp_check_string(c, field, required, 1, 100);
	if (!s)
		return NULL;
	for (const char *const *v = values; *v; v++)
		if (strcmp(*v, s) == 0)
			return s;
	char msg[512] = "must be one of:";
	for (const char *const *v = values; *v; v++) {
		size_t used = strlen(msg);
		snprintf(msg + used, sizeof(msg) - used, "%s %s", v == values ? "" : ",", *v);
	}
	sp_check_fail(c, field, msg);
	return NULL;
}

long long sp_check_int(struct sp_check *c, const char *field, bool required, long long min,
                       long long max, bool *present)
{
	json_t *v = get(c, field, required);
	if (present)
		*present = false;
	if (!v)
		return 0;
	if (!json_is_integer(v)) {
		sp_check_fail(c, field, "must be an integer");
		return 0;
	}
	long long x = json_integer_value(v);
	if (x < min || x > max) {
		char msg[96];
		snprintf(msg, sizeof(msg), "must be between %lld and %lld", min, max);
		sp_check_fail(c, field, msg);
		return 0;
	}
	if (present)
		*present = true;
	return x;
}

const char *sp_check_country(struct sp_check *c, const char *field, bool required)
{
	json_t *v = get(c, field, required);
	if (!v || json_is_null(v))
		return NULL;
	const char *s = json_string_value(v);
	if (!s || strlen(s) != 2 || !isupper((unsigned char)s[0]) ||
	    !isupper((unsigned char)s[1])) {
		sp_check_fail(c, field, "must be an ISO 3166-1 alpha-2 country code, e.g. \"FR\"");
		return NULL;
	}
	return s;
}

bool sp_valid_email(const char *s)
{
	if (!s || strlen(s) > 254)
		return false;
	const char *at = strchr(s, '@');
	if (!at || at == s || !at[1] || strchr(at + 1, '@') || !strchr(at + 1, '.'))
		return false;
	for (; *s; s++)
		if (isspace((unsigned char)*s) || iscntrl((unsigned char)*s))
			return false;
	return true;
}

const char *sp_check_email(struct sp_check *c, const char *field, bool required)
{
	const char *s = sp_check_string(c, field, required, 3, 254);
	if (s && !sp_valid_email(s)) {
		sp_check_fail(c, field, "must be an e-mail address");
		return NULL;
	}
	return s;
}

const char *sp_check_url(struct sp_check *c, const char *field, bool required)
{
	json_t *v = get(c, field, required);
	if (!v || json_is_null(v))
		return NULL;
	const char *s = sp_check_string(c, field, required, 8, 300);
	if (s && strncasecmp(s, "https://", 8) != 0 && strncasecmp(s, "http://", 7) != 0) {
		sp_check_fail(c, field, "must be an http:// or https:// URL");
		return NULL;
	}
	for (const char *p = s; p && *p; p++)
		if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p)) {
			sp_check_fail(c, field, "must be a URL without spaces");
			return NULL;
		}
	return s;
}

json_t *sp_check_array(struct sp_check *c, const char *field, bool required, size_t max)
{
	json_t *v = get(c, field, required);
	if (!v)
		return NULL;
	if (!json_is_array(v)) {
		sp_check_fail(c, field, "must be an array");
		return NULL;
	}
	if (json_array_size(v) > max) {
		char msg[64];
		snprintf(msg, sizeof(msg), "must have at most %zu items", max);
		sp_check_fail(c, field, msg);
		return NULL;
	}
	return v;
}

bool sp_check_ok(const struct sp_check *c)
{
	return json_object_size(c->errors) == 0;
}

void sp_check_reply(struct sp_check *c, struct sp_request *req)
{
	json_t *errors = c->errors;
	c->errors = NULL;
	sp_request_reply_problem(req, 422, "Invalid request", "some fields are invalid", errors);
}

bool sp_valid_uuid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}
