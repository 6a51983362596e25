/* page.c — keyset pagination. A cursor is base64url(JSON array of the last row's
 * sort key), so pages stay stable when rows are inserted meanwhile. */
#include "page.h"
#include "server.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

char *sp_cursor_encode(const json_t *position)
{
	char *text = json_dumps(position, JSON_COMPACT);
	if (!text)
		return NULL;
	size_t len = strlen(text);
	size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	char *out = sp_calloc(1, cap);
	sodium_bin2base64(out, cap, (const unsigned char *)text, len,
	                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	free(text);
	return out;
}

json_t *sp_cursor_decode(const char *cursor, size_t nfields)
{
	size_t len = cursor ? strlen(cursor) : 0;
	if (len == 0 || len > 2048)
		return NULL;
	unsigned char buf[1600];
	size_t n = 0;
	if (sodium_base642bin(buf, sizeof(buf), cursor, len, NULL, &n, NULL,
	                      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
		return NULL;
	json_t *v = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_array(v) || json_array_size(v) != nfields) {
		json_decref(v);
		return NULL;
	}
	for (size_t i = 0; i < nfields; i++) {
		if (!json_is_string(json_array_get(v, i))) {
			json_decref(v);
			return NULL;
		}
	}
	return v;
}

bool sp_page_params(struct sp_request *req, int def, int max, size_t nfields, int *limit,
                    json_t **position)
{
	*position = NULL;
	*limit = def;
	const char *l = sp_request_query(req, "limit");
	long v;
	if (l && sp_parse_long(l, 1, max, &v) < 0) {
		char detail[96];
		snprintf(detail, sizeof(detail), "limit must be an integer between 1 and %d", max);
		sp_request_reply_problem(req, 400, "Bad query parameter", detail, NULL);
		return false;
	}
	if (l)
		*limit = (int)v;
	const char *c = sp_request_query(req, "cursor");
	if (c && *c) {
		*position = sp_cursor_decode(c, nfields);
		if (!*position) {
			sp_request_reply_problem(
			    req, 400, "Bad query parameter",
			    "cursor is not valid; use next_cursor from a previous "
			    "page",
			    NULL);
			return false;
		}
	}
	return true;
}
