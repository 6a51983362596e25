/* test_http.c — JSON body limits and problem documents. */
#include "http.h"
#include "tap.h"

#include <stdlib.h>

static json_t *parse(const char *s, char *err)
{
	return sp_json_parse_body(s, strlen(s), 32, err, 256);
}

int main(void)
{
	char err[256];
	json_t *v = parse("{\"a\": [1, 2, {\"b\": null}]}", err);
	ok(v != NULL, "valid JSON parses");
	json_decref(v);

	ok(parse("{\"role\":\"member\",\"role\":\"admin\"}", err) == NULL,
	   "duplicate keys are refused");
	ok(strstr(err, "duplicate") != NULL, "the error says duplicate (%s)", err);
	ok(parse("{\"a\":\"x\\u0000y\"}", err) == NULL, "\\u0000 is refused");
	ok(parse("{\"a\":1} trailing", err) == NULL, "trailing garbage is refused");
	ok(parse("{\"a\":", err) == NULL, "truncated JSON is refused");
	ok(strstr(err, "line") != NULL, "the error names a position (%s)", err);
	ok(parse("{\"a\":\"\xff\"}", err) == NULL, "invalid UTF-8 is refused");
	ok(sp_json_parse_body("", 0, 32, err, sizeof(err)) == NULL, "empty body is refused");

	char deep[200] = "", tmp[200];
	for (int i = 0; i < 33; i++)
		strcat(deep, "[");
	for (int i = 0; i < 33; i++)
		strcat(deep, "]");
	is_int(sp_json_depth(deep, strlen(deep)), 33, "depth is counted");
	ok(parse(deep, err) == NULL, "depth 33 is refused at limit 32");
	snprintf(tmp, sizeof(tmp), "%s", deep + 1);
	tmp[strlen(tmp) - 1] = '\0';
	v = parse(tmp, err);
	ok(v != NULL, "depth 32 is accepted");
	json_decref(v);
	is_int(sp_json_depth("{\"a\":\"[[[[\"}", 11), 1, "brackets inside strings do not count");
	is_int(sp_json_depth("[\"\\\"[\"]", 7), 1, "escaped quotes handled");

	ok(sp_content_type_is_json("application/json"), "application/json");
	ok(sp_content_type_is_json("application/json; charset=utf-8"), "with charset");
	ok(sp_content_type_is_json("Application/JSON"), "case-insensitive");
	ok(sp_content_type_is_json("application/merge-patch+json"), "+json suffix");
	ok(!sp_content_type_is_json("text/plain"), "text/plain is not JSON");
	ok(!sp_content_type_is_json("application/jsonx"), "application/jsonx is not JSON");
	ok(!sp_content_type_is_json(NULL), "missing is not JSON");

	json_t *errors = json_pack("{s:s}", "email", "must be an e-mail address");
	json_t *p = sp_problem_new(422, NULL, "some fields are invalid", errors);
	is_int(json_integer_value(json_object_get(p, "status")), 422, "problem status");
	is_str(json_string_value(json_object_get(p, "title")), "Unprocessable Content",
	       "problem default title");
	is_str(json_string_value(json_object_get(p, "type")), "urn:spearhead:problem:validation",
	       "problem type");
	is_str(json_string_value(json_object_get(json_object_get(p, "errors"), "email")),
	       "must be an e-mail address", "per-field errors kept");
	json_decref(p);
	is_str(sp_status_phrase(404), "Not Found", "status phrase");
	is_str(sp_problem_type(999), "about:blank", "unknown status has about:blank type");
	return tap_done();
}
