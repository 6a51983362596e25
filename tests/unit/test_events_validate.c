/* test_events_validate.c — the events plugin's input checks: RFC 3339 times, ids and
 * keys, check-in codes, event documents, questions, registration bodies and answers. */
#include "tap.h"
#include "events_validate.h"

#include <stdlib.h>

static json_t *parse(const char *text)
{
	json_error_t err;
	json_t *v = json_loads(text, 0, &err);
	if (!v)
		printf("# bad test JSON: %s\n", err.text);
	return v;
}

static const char *err_of(json_t *errors, const char *field)
{
	return json_string_value(json_object_get(errors, field));
}

static void test_times(void)
{
	int64_t us = 0;
	ok(ev_parse_rfc3339("1970-01-01T00:00:00Z", &us) && us == 0, "epoch");
	ok(ev_parse_rfc3339("2026-05-04T09:00:00+02:00", &us) && us == 1777878000LL * 1000000,
	   "offset +02:00 is subtracted");
	ok(ev_parse_rfc3339("2026-05-04T07:00:00.25Z", &us) && us == 1777878000250000LL,
	   "fraction kept in microseconds");
	ok(ev_parse_rfc3339("2026-05-04t07:00:00z", &us) && us == 1777878000LL * 1000000,
	   "lower-case t and z");
	ok(ev_parse_rfc3339("2024-02-29T12:00:00-05:30", &us), "leap day, negative offset");
	ok(!ev_parse_rfc3339("2023-02-29T12:00:00Z", &us), "no 29 Feb in 2023");
	ok(!ev_parse_rfc3339("2026-05-04T09:00:00", &us), "an offset is required");
	ok(!ev_parse_rfc3339("2026-05-04 09:00:00Z", &us), "a space is not a T");
	ok(!ev_parse_rfc3339("2026-13-04T09:00:00Z", &us), "month 13");
	ok(!ev_parse_rfc3339("2026-05-04T24:00:00Z", &us), "hour 24");
	ok(!ev_parse_rfc3339("2026-05-04T09:00:00.Z", &us), "empty fraction");
	ok(!ev_parse_rfc3339("2026-05-04T09:00:00Zjunk", &us), "trailing junk");
	ok(!ev_parse_rfc3339("2026-05-04", &us), "a date alone");
	ok(!ev_parse_rfc3339(NULL, &us), "NULL");
}

static void test_small_formats(void)
{
	ok(ev_valid_uuid("0f8fad5b-d9cb-469f-a165-70867728950e"), "uuid");
	ok(!ev_valid_uuid("0f8fad5b-d9cb-469f-a165-70867728950"), "short uuid");
	ok(!ev_valid_uuid("0f8fad5b+d9cb-469f-a165-70867728950e"), "uuid with +");
	ok(ev_valid_email("ann@example.org"), "e-mail");
	ok(!ev_valid_email("ann example.org") && !ev_valid_email("a@b@c") && !ev_valid_email("@b"),
	   "bad e-mails");
	ok(ev_valid_url("https://meet.example/room?x=1"), "https URL");
	ok(!ev_valid_url("ftp://x") && !ev_valid_url("https://") && !ev_valid_url("http://a b"),
	   "bad URLs");
	ok(ev_valid_slug("digital-medicine") && !ev_valid_slug("Digital") &&
	       !ev_valid_slug("a--b") && !ev_valid_slug("a-"),
	   "slugs");
	ok(ev_valid_timezone_name("Europe/Paris") && ev_valid_timezone_name("Etc/GMT+3") &&
	       ev_valid_timezone_name("America/Port-au-Prince"),
	   "time zone names");
	ok(!ev_valid_timezone_name("Europe/Paris; DROP") && !ev_valid_timezone_name("../etc") &&
	       !ev_valid_timezone_name(""),
	   "bad time zone names");
	ok(ev_valid_idempotency_key("k-123_ABC.x") && !ev_valid_idempotency_key("a b") &&
	       !ev_valid_idempotency_key(""),
	   "idempotency keys");
	char code[EV_CODE_LEN + 1];
	ok(ev_normalize_code("ab12-cd34 ef", code), "typed code with dash and space");
	is_str(code, "AB12CD34EF", "normalised to upper case");
	ok(!ev_normalize_code("AB12CD34E", code), "nine digits");
	ok(!ev_normalize_code("AB12CD34EFA", code), "eleven digits");
	ok(!ev_normalize_code("AB12CD34EG", code), "not hexadecimal");
}

static const char *good_event =
    "{\"title\":\"Digital medicine day\",\"venue\":\"Toulouse\","
    "\"starts_at\":\"2026-05-04T09:00:00+02:00\",\"ends_at\":\"2026-05-04T18:00:00+02:00\","
    "\"timezone\":\"Europe/Paris\",\"capacity\":100,\"topics\":[\"ai-imaging\",\"ai-imaging\"],"
    "\"categories\":[{\"name\":\"company\",\"quota\":60},{\"name\":\"academic\"}],"
    "\"questions\":[{\"id\":\"diet\",\"label\":\"Diet\",\"type\":\"choice\","
    "\"options\":[\"none\",\"vegetarian\"],\"required\":true}]}";

static void test_event(void)
{
	json_t *errors = json_object();
	json_t *doc = parse(good_event);
	json_t *out = ev_check_event(doc, true, errors);
	ok(out != NULL, "a good event passes");
	is_int(json_object_size(errors), 0, "no errors");
	is_str(json_string_value(json_object_get(out, "starts_at")), "2026-05-04T07:00:00.000000Z",
	       "times stored in UTC");
	is_str(json_string_value(json_object_get(out, "status")), "draft",
	       "status defaults to draft");
	is_str(json_string_value(json_object_get(out, "description")), "", "description defaults");
	is_int(json_array_size(json_object_get(out, "topics")), 1, "duplicate topics merged");
	ok(json_is_null(
	       json_object_get(json_array_get(json_object_get(out, "categories"), 1), "quota")),
	   "a category without quota has quota null");
	ok(json_is_true(
	       json_object_get(json_array_get(json_object_get(out, "questions"), 0), "required")),
	   "required kept");
	json_decref(out);
	json_decref(doc);

	/* every problem at once */
	doc = parse("{\"title\":\"\",\"starts_at\":\"2026-05-04T18:00:00Z\","
	            "\"ends_at\":\"2026-05-04T09:00:00Z\",\"capacity\":-1,\"timezone\":\"a b\","
	            "\"topics\":[\"Bad\"],\"id\":\"x\",\"colour\":\"red\",\"status\":\"closed\","
	            "\"online_url\":\"ftp://x\",\"categories\":[{\"name\":\"a\"},{\"name\":\"a\"}],"
	            "\"registration_opens_at\":\"2026-05-03T00:00:00Z\","
	            "\"registration_closes_at\":\"2026-05-02T00:00:00Z\"}");
	json_object_clear(errors);
	out = ev_check_event(doc, true, errors);
	ok(out == NULL, "a bad event fails");
	ok(err_of(errors, "title") != NULL, "title named");
	ok(err_of(errors, "ends_at") != NULL, "ends_at before starts_at named");
	ok(err_of(errors, "capacity") != NULL, "capacity named");
	ok(err_of(errors, "timezone") != NULL, "timezone named");
	ok(err_of(errors, "topics") != NULL, "topics named");
	is_str(err_of(errors, "id"), "is read-only", "id is read-only");
	is_str(err_of(errors, "colour"), "unknown field", "unknown field");
	ok(err_of(errors, "status") != NULL, "status closed refused at creation");
	ok(err_of(errors, "online_url") != NULL, "online_url named");
	ok(err_of(errors, "categories[1].name") != NULL, "duplicate category named");
	ok(err_of(errors, "registration_closes_at") != NULL, "window order named");
	json_decref(doc);

	doc = parse("{\"title\":\"x\",\"starts_at\":\"2026-05-04T09:00:00Z\","
	            "\"ends_at\":\"2026-05-04T10:00:00Z\",\"capacity\":1}");
	json_object_clear(errors);
	ok(ev_check_event(doc, true, errors) == NULL && err_of(errors, "venue"),
	   "venue or online_url required");
	json_decref(doc);
	doc = parse("[1]");
	json_object_clear(errors);
	ok(ev_check_event(doc, true, errors) == NULL && err_of(errors, ""), "not an object");
	json_decref(doc);
	json_decref(errors);
}

static void test_questions(void)
{
	json_t *errors = json_object();
	json_t *q = parse("[{\"id\":\"a\",\"label\":\"A\",\"type\":\"text\",\"options\":[\"x\"]},"
	                  "{\"id\":\"a\",\"label\":\"B\",\"type\":\"choice\"},"
	                  "{\"id\":\"Bad id\",\"label\":\"\",\"type\":\"radio\"},"
	                  "{\"id\":\"c\",\"label\":\"C\",\"type\":\"multi-choice\","
	                  "\"options\":[\"x\",\"x\"],\"required\":\"yes\",\"extra\":1}]");
	ok(!ev_check_questions(q, errors), "bad questions fail");
	ok(err_of(errors, "questions[0].options") != NULL, "text with options");
	ok(err_of(errors, "questions[1].id") != NULL, "duplicate id");
	ok(err_of(errors, "questions[1].options") != NULL, "choice without options");
	ok(err_of(errors, "questions[2].id") && err_of(errors, "questions[2].label") &&
	       err_of(errors, "questions[2].type"),
	   "bad id, label, type");
	ok(err_of(errors, "questions[3].options") && err_of(errors, "questions[3].required") &&
	       err_of(errors, "questions[3].extra"),
	   "duplicate options, non-boolean required, unknown field");
	json_decref(q);
	json_decref(errors);
}

static void test_registration(void)
{
	json_t *errors = json_object();
	struct ev_registration_input in;
	json_t *b = parse("{\"category\":\"company\",\"answers\":{\"diet\":\"none\"},"
	                  "\"attendee\":{\"name\":\"Ann\",\"email\":\"ann@x.org\"}}");
	ok(ev_check_registration(b, &in, errors), "good registration body");
	is_str(in.category, "company", "category read");
	is_str(in.attendee_email, "ann@x.org", "attendee e-mail read");
	json_decref(b);
	b = parse("{\"category\":5,\"answers\":[],\"attendee\":{\"email\":\"x\",\"age\":3},"
	          "\"seat\":1}");
	json_object_clear(errors);
	ok(!ev_check_registration(b, &in, errors), "bad registration body");
	ok(err_of(errors, "category") && err_of(errors, "answers") &&
	       err_of(errors, "attendee.email") && err_of(errors, "attendee.age") &&
	       err_of(errors, "seat"),
	   "each field named");
	json_decref(b);

	json_t *qs = parse("[{\"id\":\"diet\",\"label\":\"Diet\",\"type\":\"choice\","
	                   "\"options\":[\"none\",\"vegan\"],\"required\":true},"
	                   "{\"id\":\"topics\",\"label\":\"T\",\"type\":\"multi_choice\","
	                   "\"options\":[\"a\",\"b\",\"c\"]},"
	                   "{\"id\":\"note\",\"label\":\"N\",\"type\":\"text\"}]");
	json_t *a = parse("{\"diet\":\"vegan\",\"topics\":[\"a\",\"c\"],\"note\":\"\"}");
	json_object_clear(errors);
	json_t *out = ev_check_answers(qs, a, errors);
	ok(out != NULL, "good answers");
	is_int(json_object_size(out), 2, "an empty optional answer is dropped");
	json_decref(out);
	json_decref(a);
	a = parse("{\"topics\":[\"a\",\"a\"],\"note\":5,\"shoe\":\"42\"}");
	json_object_clear(errors);
	ok(ev_check_answers(qs, a, errors) == NULL, "bad answers");
	is_str(err_of(errors, "answers.diet"), "is required", "missing required answer");
	ok(err_of(errors, "answers.topics") != NULL, "duplicate choices");
	ok(err_of(errors, "answers.note") != NULL, "text must be a string");
	is_str(err_of(errors, "answers.shoe"), "there is no such question", "unknown question");
	json_decref(a);
	a = parse("{\"diet\":\"pizza\"}");
	json_object_clear(errors);
	ok(ev_check_answers(qs, a, errors) == NULL && err_of(errors, "answers.diet"),
	   "an answer outside the options");
	json_decref(a);
	json_object_clear(errors);
	json_t *noq = json_array();
	out = ev_check_answers(noq, NULL, errors);
	ok(out && json_object_size(out) == 0, "no questions, no answers");
	json_decref(out);
	json_decref(noq);

	json_t *names = parse("[\"company\",\"academic\"]");
	json_object_clear(errors);
	ok(ev_check_category(names, "academic", errors), "known category");
	ok(!ev_check_category(names, NULL, errors) && err_of(errors, "category"),
	   "category required when the event has some");
	json_object_clear(errors);
	ok(!ev_check_category(names, "press", errors), "unknown category");
	json_t *none = json_array();
	json_object_clear(errors);
	ok(ev_check_category(none, NULL, errors), "no categories, none given");
	ok(!ev_check_category(none, "press", errors), "a category for an event without any");
	json_decref(none);
	json_decref(names);
	json_decref(qs);
	json_decref(errors);
}

int main(void)
{
	test_times();
	test_small_formats();
	test_event();
	test_questions();
	test_registration();
	return tap_done();
}
