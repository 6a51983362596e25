/* http.c — JSON body parsing with limits and RFC 9457 problem documents. */
#include "http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

int sp_json_depth(const char *buf, size_t len)
{
	int depth = 0, max = 0;
	bool in_str = false;
	for (size_t i = 0; i < len; i++) {
		char c = buf[i];
		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = false;
			continue;
		}
		if (c == '"')
			in_str = true;
		else if (c == '[' || c == '{') {
			if (++depth > max)
				max = depth;
		} else if (c == ']' || c == '}')
			depth--;
	}
	return max;
}

json_t *sp_json_parse_body(const char *buf, size_t len, int max_depth, char *err, size_t errlen)
{
	if (len == 0) {
		snprintf(err, errlen, "the request body is empty; a JSON document is required");
		return NULL;
	}
	/* jansson's own limit is 2048 levels; ours is much lower to bound work and stack. */
	int depth = sp_json_depth(buf, len);
	if (depth > max_depth) {
		snprintf(err, errlen, "JSON nesting depth %d exceeds the limit of %d", depth,
		         max_depth);
		return NULL;
	}
	json_error_t jerr;
	/* Duplicate keys are refused: {"role":"member","role":"admin"} must not read as
	 * admin. \u0000 is refused by jansson unless JSON_ALLOW_NUL is given. */
	json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!v) {
		snprintf(err, errlen, "malformed JSON at line %d, column %d: %s", jerr.line,
		         jerr.column, jerr.text);
		return NULL;
	}
	return v;
}

bool sp_content_type_is_json(const char *ct)
{
	if (!ct)
		return false;
	while (*ct == ' ')
		ct++;
	size_t n = strcspn(ct, "; ");
	if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
		return true;
	/* application/merge-patch+json, application/problem+json, ... */
	return n > 5 && strncasecmp(ct, "application/", 12) == 0 &&
	       strncasecmp(ct + n - 5, "+json", 5) == 0;
}

static const struct {
	int status;
	const char *phrase;
	const char *type;
} statuses[] = {
	{ 200, "OK", NULL },
	{ 201, "Created", NULL },
	{ 202, "Accepted", NULL },
	{ 204, "No Content", NULL },
	{ 400, "Bad Request", "urn:spearhead:problem:bad-request" },
	{ 401, "Unauthorized", "urn:spearhead:problem:unauthorized" },
	{ 403, "Forbidden", "urn:spearhead:problem:forbidden" },
	{ 404, "Not Found", "urn:spearhead:problem:not-found" },
	{ 405, "Method Not Allowed", "urn:spearhead:problem:method-not-allowed" },
	{ 406, "Not Acceptable", "urn:spearhead:problem:not-acceptable" },
	{ 408, "Request Timeout", "urn:spearhead:problem:request-timeout" },
	{ 409, "Conflict", "urn:spearhead:problem:conflict" },
	{ 410, "Gone", "urn:spearhead:problem:gone" },
	{ 411, "Length Required", "urn:spearhead:problem:length-required" },
	{ 413, "Content Too Large", "urn:spearhead:problem:content-too-large" },
	{ 414, "URI Too Long", "urn:spearhead:problem:uri-too-long" },
	{ 415, "Unsupported Media Type", "urn:spearhead:problem:unsupported-media-type" },
	{ 422, "Unprocessable Content", "urn:spearhead:problem:validation" },
	{ 429, "Too Many Requests", "urn:spearhead:problem:rate-limited" },
	{ 431, "Request Header Fields Too Large", "urn:spearhead:problem:headers-too-large" },
	{ 500, "Internal Server Error", "urn:spearhead:problem:internal" },
	{ 501, "Not Implemented", "urn:spearhead:problem:not-implemented" },
	{ 503, "Service Unavailable", "urn:spearhead:problem:unavailable" },
};

const char *sp_status_phrase(int status)
{
	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		if (statuses[i].status == status)
			return statuses[i].phrase;
	return "Unknown";
}

const char *sp_problem_type(int status)
{
	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		if (statuses[i].status == status && statuses[i].type)
			return statuses[i].type;
	return "about:blank";
}

json_t *sp_problem_new(int status, const char *title, const char *detail, json_t *errors)
{
	json_t *p = json_pack("{s:s, s:s, s:i}", "type", sp_problem_type(status), "title",
	                      title ? title : sp_status_phrase(status), "status", status);
	if (detail)
		json_object_set_new(p, "detail", json_string(detail));
	if (errors)
		json_object_set_new(p, "errors", errors);
	return p;
}
