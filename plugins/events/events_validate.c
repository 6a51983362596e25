/* events_validate.c — pure input checks of the events plugin (see events_validate.h). */
#include "events_validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ev_error(json_t *errors, const char *field, const char *message)
{
	if (errors && !json_object_get(errors, field))
		json_object_set_new(errors, field, json_string(message));
}

size_t ev_utf8_len(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

/* ---- times ---- */

static bool digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const int64_t yoe = y - era * 400;
	const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
	static const int dm[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m == 2 && leap ? 29 : dm[m - 1];
}

bool ev_parse_rfc3339(const char *s, int64_t *epoch_us)
{
	int Y, M, D, h, mi, sec;
	if (!s || strlen(s) < 20 || !digits(s, 4, &Y) || s[4] != '-' || !digits(s + 5, 2, &M) ||
	    s[7] != '-' || !digits(s + 8, 2, &D) || (s[10] != 'T' && s[10] != 't') ||
	    !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
	    !digits(s + 17, 2, &sec))
		return false;
	if (Y < 1900 || M < 1 || M > 12 || D < 1 || D > days_in_month(Y, M) || h > 23 || mi > 59 ||
	    sec > 59)
		return false;
	const char *p = s + 19;
	int64_t us = 0;
	if (*p == '.') {
		p++;
		int n = 0;
		while (*p >= '0' && *p <= '9') {
			if (n < 6)
				us = us * 10 + (*p - '0');
			n++;
			p++;
		}
		if (n == 0)
			return false;
		for (; n < 6; n++)
			us *= 10;
	}
	int offset_min = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om;
		if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 ||
		    om > 59)
			return false;
		offset_min = (oh * 60 + om) * (*p == '-' ? -1 : 1);
		p += 6;
	} else {
		return false;
	}
	if (*p)
		return false;
	int64_t secs =
	    days_from_civil(Y, M, D) * 86400 + h * 3600 + mi * 60 + sec - (int64_t)offset_min * 60;
	*epoch_us = secs * 1000000 + us;
	return true;
}

/* The canonical UTC form the plugin stores: "YYYY-MM-DDTHH:MM:SS.ffffffZ". */
static void format_utc(int64_t epoch_us, char out[64])
{
	int64_t secs = epoch_us / 1000000, us = epoch_us % 1000000;
	if (us < 0) {
		us += 1000000;
		secs--;
	}
	int64_t days = secs / 86400, rem = secs % 86400;
	if (rem < 0) {
		rem += 86400;
		days--;
	}
	/* civil_from_days (H. Hinnant) */
	int64_t z = days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t y = yoe + era * 400;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	int64_t d = doy - (153 * mp + 2) / 5 + 1;
	int64_t m = mp + (mp < 10 ? 3 : -9);
	y += m <= 2;
	snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", (int)y, (int)m, (int)d,
	         (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), (int)us);
}

/* ---- small formats ---- */

bool ev_valid_uuid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		             (c >= 'A' && c <= 'F'))) {
			return false;
		}
	}
	return true;
}

bool ev_valid_email(const char *s)
{
	if (!s)
		return false;
	size_t n = strlen(s);
	const char *at = strchr(s, '@');
	if (n < 3 || n > 254 || !at || at == s || !at[1] || strchr(at + 1, '@'))
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return false;
	return true;
}

bool ev_valid_url(const char *s)
{
	if (!s)
		return false;
	const char *host;
	if (strncmp(s, "https://", 8) == 0)
		host = s + 8;
	else if (strncmp(s, "http://", 7) == 0)
		host = s + 7;
	else
		return false;
	if (!*host || *host == '/' || strlen(s) > EV_URL_MAX)
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return false;
	return true;
}

bool ev_valid_slug(const char *s)
{
	if (!s || !*s || strlen(s) > 80 || *s == '-')
		return false;
	for (const char *p = s; *p; p++) {
		bool alnum = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9');
		if (!alnum && !(*p == '-' && p[1] && p[1] != '-'))
			return false;
	}
	return true;
}

bool ev_valid_timezone_name(const char *s)
{
	if (!s || !*s || strlen(s) > 64 || *s == '/' || *s == '.')
		return false;
	for (const char *p = s; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '/' || c == '_' || c == '-' || c == '+'))
			return false;
	}
	return true;
}

bool ev_valid_idempotency_key(const char *s)
{
	if (!s || !*s || strlen(s) > EV_KEY_MAX)
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
			return false;
	return true;
}

bool ev_normalize_code(const char *in, char *out)
{
	size_t n = 0;
	if (!in)
		return false;
	for (const char *p = in; *p; p++) {
		char c = *p;
		if (c == ' ' || c == '-')
			continue;
		if (c >= 'a' && c <= 'f')
			c = (char)(c - 'a' + 'A');
		if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')) || n >= EV_CODE_LEN)
			return false;
		out[n++] = c;
	}
	out[n] = '\0';
	return n == EV_CODE_LEN;
}

/* ---- event documents ---- */

static const char *const writable_fields[] = {
	"title",
	"description",
	"venue",
	"online_url",
	"starts_at",
	"ends_at",
	"timezone",
	"topics",
	"capacity",
	"registration_opens_at",
	"registration_closes_at",
	"categories",
	"questions",
	"settings",
	"status",
	NULL,
};

static const char *const readonly_fields[] = {
	"id",         "confirmed_count", "waitlist_count", "version", "created_at",
	"updated_at", "published_at",    "closed_at",      NULL,
};

static bool in_list(const char *const *list, const char *s)
{
	for (; *list; list++)
		if (strcmp(*list, s) == 0)
			return true;
	return false;
}

/* A string of min..max code points, or NULL (with an error) when present and bad.
 * *present says whether the field holds a non-null value. */
static const char *opt_string(const json_t *doc, const char *field, size_t min, size_t max,
                              bool *present, json_t *errors)
{
	json_t *v = json_object_get(doc, field);
	*present = v && !json_is_null(v);
	if (!*present)
		return NULL;
	if (!json_is_string(v)) {
		ev_error(errors, field, "must be a string");
		return NULL;
	}
	size_t n = ev_utf8_len(json_string_value(v));
	if (n < min || n > max) {
		char msg[96];
		snprintf(msg, sizeof(msg), "must be %zu to %zu characters long", min, max);
		ev_error(errors, field, msg);
		return NULL;
	}
	return json_string_value(v);
}

/* An RFC 3339 time stored canonically under field in out; false when bad. */
static bool opt_time(const json_t *doc, const char *field, bool required, json_t *out, int64_t *us,
                     bool *present, json_t *errors)
{
	json_t *v = json_object_get(doc, field);
	*present = v && !json_is_null(v);
	if (!*present) {
		if (required)
			ev_error(errors, field, "is required");
		json_object_set_new(out, field, json_null());
		return !required;
	}
	if (!json_is_string(v) || !ev_parse_rfc3339(json_string_value(v), us)) {
		ev_error(
		    errors, field,
		    "must be an RFC 3339 date-time with an offset, e.g. 2026-05-04T09:00:00+02:00");
		return false;
	}
	char buf[64];
	format_utc(*us, buf);
	json_object_set_new(out, field, json_string(buf));
	return true;
}

static bool check_categories(const json_t *cats, json_t *out, json_t *errors)
{
	if (!json_is_array(cats) || json_array_size(cats) > EV_CATEGORIES_MAX) {
		ev_error(errors, "categories",
		         "must be an array of at most 50 {name, quota} objects");
		return false;
	}
	json_t *norm = json_array();
	size_t i;
	json_t *c;
	bool ok = true;
	json_array_foreach(cats, i, c)
	{
		char field[64];
		snprintf(field, sizeof(field), "categories[%zu]", i);
		if (!json_is_object(c)) {
			ev_error(errors, field, "must be an object {name, quota}");
			ok = false;
			continue;
		}
		const char *key;
		json_t *v;
		json_object_foreach((json_t *)c, key, v)
		{
			if (strcmp(key, "name") != 0 && strcmp(key, "quota") != 0) {
				char f[128];
				snprintf(f, sizeof(f), "%s.%s", field, key);
				ev_error(errors, f, "unknown field");
				ok = false;
			}
		}
		json_t *name = json_object_get(c, "name");
		const char *n = json_string_value(name);
		if (!n || ev_utf8_len(n) < 1 || ev_utf8_len(n) > EV_CATEGORY_MAX) {
			char f[128];
			snprintf(f, sizeof(f), "%s.name", field);
			ev_error(errors, f, "must be a string of 1 to 100 characters");
			ok = false;
			continue;
		}
		for (size_t j = 0; j < i; j++) {
			const char *o =
			    json_string_value(json_object_get(json_array_get(cats, j), "name"));
			if (o && strcmp(o, n) == 0) {
				char f[128];
				snprintf(f, sizeof(f), "%s.name", field);
				ev_error(errors, f, "is a duplicate");
				ok = false;
			}
		}
		json_t *quota = json_object_get(c, "quota");
		if (quota && !json_is_null(quota) &&
		    (!json_is_integer(quota) || json_integer_value(quota) < 0 ||
		     json_integer_value(quota) > EV_CAPACITY_MAX)) {
			char f[128];
			snprintf(f, sizeof(f), "%s.quota", field);
			ev_error(errors, f, "must be null or an integer from 0 to 1000000");
			ok = false;
			continue;
		}
		json_array_append_new(
		    norm, json_pack("{s:s, s:O}", "name", n, "quota", quota ? quota : json_null()));
	}
	json_object_set_new(out, "categories", norm);
	return ok;
}

static bool valid_question_id(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n < 1 || n > 40)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	return true;
}

static bool is_choice_type(const char *t)
{
	return strcmp(t, "choice") == 0 || strcmp(t, "multi_choice") == 0 ||
	       strcmp(t, "multi-choice") == 0;
}

static bool is_multi_type(const char *t)
{
	return strcmp(t, "multi_choice") == 0 || strcmp(t, "multi-choice") == 0;
}

/* Checks one question; messages under "questions[i].<field>". */
static bool check_question(const json_t *q, size_t i, const json_t *all, json_t *errors)
{
	char field[64], f[128];
	snprintf(field, sizeof(field), "questions[%zu]", i);
	if (!json_is_object(q)) {
		ev_error(errors, field, "must be an object {id, label, type, required, options}");
		return false;
	}
	bool ok = true;
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)q, key, v)
	{
		if (strcmp(key, "id") && strcmp(key, "label") && strcmp(key, "type") &&
		    strcmp(key, "required") && strcmp(key, "options")) {
			snprintf(f, sizeof(f), "%s.%s", field, key);
			ev_error(errors, f, "unknown field");
			ok = false;
		}
	}
	const char *id = json_string_value(json_object_get(q, "id"));
	snprintf(f, sizeof(f), "%s.id", field);
	if (!valid_question_id(id)) {
		ev_error(errors, f, "must be 1 to 40 characters of a-z, 0-9 and _");
		ok = false;
	} else {
		for (size_t j = 0; j < i; j++) {
			const char *o =
			    json_string_value(json_object_get(json_array_get(all, j), "id"));
			if (o && strcmp(o, id) == 0) {
				ev_error(errors, f, "is a duplicate");
				ok = false;
			}
		}
	}
	const char *label = json_string_value(json_object_get(q, "label"));
	if (!label || ev_utf8_len(label) < 1 || ev_utf8_len(label) > EV_LABEL_MAX) {
		snprintf(f, sizeof(f), "%s.label", field);
		ev_error(errors, f, "must be a string of 1 to 500 characters");
		ok = false;
	}
	json_t *req = json_object_get(q, "required");
	if (req && !json_is_boolean(req)) {
		snprintf(f, sizeof(f), "%s.required", field);
		ev_error(errors, f, "must be true or false");
		ok = false;
	}
	const char *type = json_string_value(json_object_get(q, "type"));
	snprintf(f, sizeof(f), "%s.type", field);
	if (!type || (strcmp(type, "text") != 0 && !is_choice_type(type))) {
		ev_error(errors, f, "must be text, choice or multi_choice");
		return false;
	}
	json_t *opts = json_object_get(q, "options");
	snprintf(f, sizeof(f), "%s.options", field);
	if (!is_choice_type(type)) {
		if (opts && !json_is_null(opts)) {
			ev_error(errors, f, "only choice questions have options");
			ok = false;
		}
		return ok;
	}
	if (!json_is_array(opts) || json_array_size(opts) < 1 ||
	    json_array_size(opts) > EV_OPTIONS_MAX) {
		ev_error(errors, f, "must be an array of 1 to 100 options");
		return false;
	}
	size_t k;
	json_t *o;
	json_array_foreach(opts, k, o)
	{
		const char *s = json_string_value(o);
		if (!s || ev_utf8_len(s) < 1 || ev_utf8_len(s) > EV_OPTION_MAX) {
			ev_error(errors, f, "each option must be a string of 1 to 200 characters");
			return false;
		}
		for (size_t j = 0; j < k; j++) {
			if (strcmp(json_string_value(json_array_get(opts, j)), s) == 0) {
				ev_error(errors, f, "options must be distinct");
				return false;
			}
		}
	}
	return ok;
}

bool ev_check_questions(const json_t *questions, json_t *errors)
{
	if (!json_is_array(questions) || json_array_size(questions) > EV_QUESTIONS_MAX) {
		ev_error(errors, "questions", "must be an array of at most 50 questions");
		return false;
	}
	bool ok = true;
	size_t i;
	json_t *q;
	json_array_foreach(questions, i, q) ok &= check_question(q, i, questions, errors);
	return ok;
}

/* Questions as stored: {id, label, type, required, options?}. */
static json_t *normalize_questions(const json_t *questions)
{
	json_t *out = json_array();
	size_t i;
	json_t *q;
	json_array_foreach(questions, i, q)
	{
		json_t *n =
		    json_pack("{s:O, s:O, s:O, s:b}", "id", json_object_get(q, "id"), "label",
		              json_object_get(q, "label"), "type", json_object_get(q, "type"),
		              "required", json_is_true(json_object_get(q, "required")));
		json_t *opts = json_object_get(q, "options");
		if (json_is_array(opts))
			json_object_set(n, "options", opts);
		json_array_append_new(out, n);
	}
	return out;
}

static bool check_settings(const json_t *s, json_t *errors)
{
	if (!json_is_object(s)) {
		ev_error(errors, "settings", "must be an object (plugin name → its settings)");
		return false;
	}
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)s, key, v)
	{
		bool ident = *key && strlen(key) <= 64;
		for (const char *p = key; *p; p++)
			ident &= (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
		if (!ident) {
			ev_error(errors, "settings", "keys must be plugin names ([a-z0-9_]+)");
			return false;
		}
	}
	char *text = json_dumps(s, JSON_COMPACT);
	size_t n = text ? strlen(text) : EV_SETTINGS_MAX + 1;
	free(text);
	if (n > EV_SETTINGS_MAX) {
		ev_error(errors, "settings", "must serialise to at most 16384 bytes");
		return false;
	}
	return true;
}

json_t *ev_check_event(const json_t *doc, bool creating, json_t *errors)
{
	if (!json_is_object(doc)) {
		ev_error(errors, "", "the body must be a JSON object");
		return NULL;
	}
	size_t before = json_object_size(errors);
	json_t *out = json_object();
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)doc, key, v)
	{
		if (in_list(readonly_fields, key))
			ev_error(errors, key, "is read-only");
		else if (!in_list(writable_fields, key))
			ev_error(errors, key, "unknown field");
	}

	bool present;
	const char *title = opt_string(doc, "title", 1, EV_TITLE_MAX, &present, errors);
	if (!present)
		ev_error(errors, "title", "is required");
	json_object_set_new(out, "title", title ? json_string(title) : json_null());
	const char *descr = opt_string(doc, "description", 0, EV_DESCRIPTION_MAX, &present, errors);
	json_object_set_new(out, "description", json_string(descr ? descr : ""));
	bool has_venue, has_url;
	const char *venue = opt_string(doc, "venue", 1, EV_VENUE_MAX, &has_venue, errors);
	json_object_set_new(out, "venue", venue ? json_string(venue) : json_null());
	const char *url = opt_string(doc, "online_url", 1, EV_URL_MAX, &has_url, errors);
	if (url && !ev_valid_url(url)) {
		ev_error(errors, "online_url", "must be an http:// or https:// URL");
		url = NULL;
	}
	json_object_set_new(out, "online_url", url ? json_string(url) : json_null());
	if (!has_venue && !has_url)
		ev_error(errors, "venue", "give a venue, an online_url, or both");

	int64_t starts = 0, ends = 0, opens = 0, closes = 0;
	bool s_ok = opt_time(doc, "starts_at", true, out, &starts, &present, errors);
	bool e_ok = opt_time(doc, "ends_at", true, out, &ends, &present, errors);
	if (s_ok && e_ok && ends <= starts)
		ev_error(errors, "ends_at", "must be after starts_at");
	bool has_opens, has_closes;
	bool o_ok = opt_time(doc, "registration_opens_at", false, out, &opens, &has_opens, errors);
	bool c_ok =
	    opt_time(doc, "registration_closes_at", false, out, &closes, &has_closes, errors);
	if (o_ok && c_ok && has_opens && has_closes && closes <= opens)
		ev_error(errors, "registration_closes_at", "must be after registration_opens_at");

	const char *tz = opt_string(doc, "timezone", 1, 64, &present, errors);
	if (tz && !ev_valid_timezone_name(tz)) {
		ev_error(errors, "timezone",
		         "is not a time zone name of the IANA database (e.g. Europe/Paris)");
		tz = NULL;
	}
	json_object_set_new(out, "timezone", json_string(tz ? tz : "UTC"));

	json_t *topics = json_object_get(doc, "topics");
	json_t *tnorm = json_array();
	if (topics && !json_is_null(topics)) {
		if (!json_is_array(topics) || json_array_size(topics) > EV_TOPICS_MAX) {
			ev_error(errors, "topics", "must be an array of at most 50 topic slugs");
		} else {
			size_t i;
			json_t *t;
			json_array_foreach(topics, i, t)
			{
				const char *slug = json_string_value(t);
				if (!ev_valid_slug(slug)) {
					ev_error(errors, "topics",
					         "each topic must be a topic slug");
					break;
				}
				bool dup = false;
				for (size_t j = 0; j < json_array_size(tnorm); j++)
					dup |= strcmp(json_string_value(json_array_get(tnorm, j)),
					              slug) == 0;
				if (!dup)
					json_array_append_new(tnorm, json_string(slug));
			}
		}
	}
	json_object_set_new(out, "topics", tnorm);

	json_t *cap = json_object_get(doc, "capacity");
	if (!cap || json_is_null(cap))
		ev_error(errors, "capacity", "is required");
	else if (!json_is_integer(cap) || json_integer_value(cap) < 0 ||
	         json_integer_value(cap) > EV_CAPACITY_MAX)
		ev_error(errors, "capacity", "must be an integer from 0 to 1000000");
	else
		json_object_set(out, "capacity", cap);

	json_t *cats = json_object_get(doc, "categories");
	if (cats && !json_is_null(cats))
		check_categories(cats, out, errors);
	else
		json_object_set_new(out, "categories", json_array());

	json_t *qs = json_object_get(doc, "questions");
	if (qs && !json_is_null(qs)) {
		if (ev_check_questions(qs, errors))
			json_object_set_new(out, "questions", normalize_questions(qs));
	} else {
		json_object_set_new(out, "questions", json_array());
	}

	json_t *settings = json_object_get(doc, "settings");
	if (settings && !json_is_null(settings)) {
		if (check_settings(settings, errors))
			json_object_set(out, "settings", settings);
	} else {
		json_object_set_new(out, "settings", json_object());
	}

	json_t *status = json_object_get(doc, "status");
	if (creating) {
		const char *s = json_string_value(status);
		if (status && !json_is_null(status) &&
		    (!s || (strcmp(s, "draft") != 0 && strcmp(s, "published") != 0)))
			ev_error(errors, "status", "must be draft or published when creating");
		json_object_set_new(out, "status", json_string(s ? s : "draft"));
	} else if (json_is_string(status)) {
		json_object_set(out, "status", status);
	}

	if (json_object_size(errors) > before) {
		json_decref(out);
		return NULL;
	}
	return out;
}

/* ---- registrations ---- */

bool ev_check_registration(const json_t *body, struct ev_registration_input *in, json_t *errors)
{
	memset(in, 0, sizeof(*in));
	if (!json_is_object(body)) {
		ev_error(errors, "", "the body must be a JSON object");
		return false;
	}
	size_t before = json_object_size(errors);
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)body, key, v)
	{
		if (strcmp(key, "category") && strcmp(key, "answers") && strcmp(key, "attendee"))
			ev_error(errors, key, "unknown field");
	}
	json_t *cat = json_object_get(body, "category");
	if (cat && !json_is_null(cat)) {
		const char *c = json_string_value(cat);
		if (!c || ev_utf8_len(c) < 1 || ev_utf8_len(c) > EV_CATEGORY_MAX)
			ev_error(errors, "category", "must be a string of 1 to 100 characters");
		else
			in->category = c;
	}
	json_t *answers = json_object_get(body, "answers");
	if (answers && !json_is_null(answers)) {
		if (!json_is_object(answers))
			ev_error(errors, "answers", "must be an object: question id → answer");
		else
			in->answers = answers;
	}
	json_t *att = json_object_get(body, "attendee");
	if (att && !json_is_null(att)) {
		if (!json_is_object(att)) {
			ev_error(errors, "attendee", "must be an object {name, email}");
		} else {
			json_object_foreach(att, key, v)
			{
				if (strcmp(key, "name") && strcmp(key, "email")) {
					char f[128];
					snprintf(f, sizeof(f), "attendee.%.100s", key);
					ev_error(errors, f, "unknown field");
				}
			}
			json_t *name = json_object_get(att, "name");
			if (name && !json_is_null(name)) {
				const char *n = json_string_value(name);
				if (!n || ev_utf8_len(n) < 1 || ev_utf8_len(n) > EV_NAME_MAX)
					ev_error(errors, "attendee.name",
					         "must be a string of 1 to 200 characters");
				else
					in->attendee_name = n;
			}
			const char *email = json_string_value(json_object_get(att, "email"));
			if (!email)
				ev_error(errors, "attendee.email", "is required");
			else if (!ev_valid_email(email))
				ev_error(errors, "attendee.email", "is not an e-mail address");
			else
				in->attendee_email = email;
		}
	}
	return json_object_size(errors) == before;
}

static bool in_options(const json_t *opts, const char *s)
{
	size_t i;
	json_t *o;
	json_array_foreach(opts, i, o) if (strcmp(json_string_value(o), s) == 0) return true;
	return false;
}

static const json_t *find_question(const json_t *questions, const char *id)
{
	size_t i;
	json_t *q;
	json_array_foreach(questions, i, q)
	{
		const char *qid = json_string_value(json_object_get(q, "id"));
		if (qid && strcmp(qid, id) == 0)
			return q;
	}
	return NULL;
}

json_t *ev_check_answers(const json_t *questions, const json_t *answers, json_t *errors)
{
	size_t before = json_object_size(errors);
	char f[160];
	if (answers && !json_is_object(answers)) {
		ev_error(errors, "answers", "must be an object: question id → answer");
		return NULL;
	}
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)answers, key, v)
	{
		if (!find_question(questions, key)) {
			snprintf(f, sizeof(f), "answers.%.100s", key);
			ev_error(errors, f, "there is no such question");
		}
	}
	json_t *out = json_object();
	size_t i;
	json_t *q;
	json_array_foreach(questions, i, q)
	{
		const char *id = json_string_value(json_object_get(q, "id"));
		const char *type = json_string_value(json_object_get(q, "type"));
		json_t *opts = json_object_get(q, "options");
		bool required = json_is_true(json_object_get(q, "required"));
		if (!id || !type)
			continue;
		snprintf(f, sizeof(f), "answers.%s", id);
		json_t *a = answers ? json_object_get(answers, id) : NULL;
		bool empty = !a || json_is_null(a) ||
		             (json_is_string(a) && json_string_length(a) == 0) ||
		             (json_is_array(a) && json_array_size(a) == 0);
		if (empty) {
			if (required)
				ev_error(errors, f, "is required");
			continue;
		}
		if (strcmp(type, "text") == 0) {
			if (!json_is_string(a) ||
			    ev_utf8_len(json_string_value(a)) > EV_ANSWER_MAX) {
				ev_error(errors, f, "must be a string of at most 2000 characters");
				continue;
			}
		} else if (!is_multi_type(type)) {
			if (!json_is_string(a) || !json_is_array(opts) ||
			    !in_options(opts, json_string_value(a))) {
				ev_error(errors, f, "must be one of the question's options");
				continue;
			}
		} else {
			bool ok = json_is_array(a) && json_is_array(opts);
			size_t k;
			json_t *o;
			json_array_foreach(a, k, o)
			{
				if (!ok)
					break;
				ok = json_is_string(o) && in_options(opts, json_string_value(o));
				for (size_t j = 0; ok && j < k; j++)
					ok = strcmp(json_string_value(json_array_get(a, j)),
					            json_string_value(o)) != 0;
			}
			if (!ok) {
				ev_error(errors, f,
				         "must be an array of distinct options of the question");
				continue;
			}
		}
		json_object_set(out, id, a);
	}
	if (json_object_size(errors) > before) {
		json_decref(out);
		return NULL;
	}
	return out;
}

bool ev_check_category(const json_t *names, const char *category, json_t *errors)
{
	size_t n = json_array_size(names);
	if (n == 0) {
		if (category) {
			ev_error(errors, "category", "this event has no registration categories");
			return false;
		}
		return true;
	}
	if (!category) {
		ev_error(errors, "category", "is required: choose one of the event's categories");
		return false;
	}
	if (!in_options(names, category)) {
		ev_error(errors, "category", "is not one of the event's categories");
		return false;
	}
	return true;
}
