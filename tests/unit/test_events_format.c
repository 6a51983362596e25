/* test_events_format.c — the events plugin's output formats: iCalendar lines (escaping,
 * folding at 75 octets without splitting UTF-8), the VEVENT document, CSV fields and
 * exports (quoting, formula guard), base64url cursors and LIKE patterns. */
#include "events_format.h"
#include "tap.h"

#include <stdlib.h>

static char *line(const char *name, const char *value, bool text)
{
	struct ev_buf b = { 0 };
	ev_ics_line(&b, name, value, text);
	return ev_buf_take(&b);
}

/* Every physical line of s ends with CRLF and holds at most 75 octets. */
static bool lines_ok(const char *s)
{
	while (*s) {
		const char *crlf = strstr(s, "\r\n");
		if (!crlf || crlf - s > 75)
			return false;
		for (const char *p = s; p < crlf; p++)
			if (*p == '\r' || *p == '\n')
				return false;
		s = crlf + 2;
	}
	return true;
}

/* Undoes folding (CRLF + one space). */
static char *unfold(const char *s)
{
	char *out = malloc(strlen(s) + 1), *o = out;
	while (*s) {
		if (s[0] == '\r' && s[1] == '\n' && s[2] == ' ') {
			s += 3;
			continue;
		}
		*o++ = *s++;
	}
	*o = '\0';
	return out;
}

static void test_ics_lines(void)
{
	char *s = line("SUMMARY", "Pitch, demo; Q&A \\ drinks\nday 2\r", true);
	is_str(s, "SUMMARY:Pitch\\, demo\\; Q&A \\\\ drinks\\nday 2\r\n", "TEXT escaping");
	free(s);
	s = line("URL", "https://x.example/a,b;c", false);
	is_str(s, "URL:https://x.example/a,b;c\r\n", "URI values are not TEXT-escaped");
	free(s);
	s = line("SUMMARY",
	         "a\x01"
	         "b\x7f"
	         "c\td",
	         true);
	is_str(s, "SUMMARY:abc\td\r\n", "control characters dropped, tab kept");
	free(s);

	char long_ascii[400];
	memset(long_ascii, 'x', sizeof(long_ascii) - 1);
	long_ascii[sizeof(long_ascii) - 1] = '\0';
	s = line("DESCRIPTION", long_ascii, true);
	ok(lines_ok(s), "long ASCII line folded at 75 octets");
	char *u = unfold(s);
	ok(strncmp(u, "DESCRIPTION:", 12) == 0 &&
	       strncmp(u + 12, long_ascii, strlen(long_ascii)) == 0 &&
	       strcmp(u + 12 + strlen(long_ascii), "\r\n") == 0,
	   "unfolding gives the value back");
	free(u);
	free(s);

	/* 100 × "é" (2 octets) and "日" (3 octets): no sequence may be cut. */
	char utf[700] = "";
	for (int i = 0; i < 100; i++)
		strcat(utf, i % 2 ? "\xc3\xa9" : "\xe6\x97\xa5");
	s = line("SUMMARY", utf, true);
	ok(lines_ok(s), "UTF-8 line folded at 75 octets");
	bool clean = true;
	for (const char *p = s; (p = strstr(p, "\r\n ")); p += 3)
		clean &= ((unsigned char)p[3] & 0xC0) != 0x80; /* no continuation byte first */
	ok(clean, "no UTF-8 sequence is split by a fold");
	u = unfold(s);
	ok(strncmp(u + 8, utf, strlen(utf)) == 0 && strcmp(u + 8 + strlen(utf), "\r\n") == 0,
	   "unfolded UTF-8 value intact");
	free(u);
	free(s);

	char out[17];
	ok(ev_ics_utc("2026-05-04T07:00:00Z", out), "UTC time");
	is_str(out, "20260504T070000Z", "basic format");
	ok(ev_ics_utc("2026-05-04T07:00:00.123Z", out), "with a fraction");
	ok(!ev_ics_utc("2026-05-04T07:00:00+02:00", out), "an offset is not UTC");
	ok(!ev_ics_utc("2026-05-04", out) && !ev_ics_utc(NULL, out), "malformed");
}

static void test_ics_event(void)
{
	json_t *e =
	    json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:[ss], s:s, s:s, s:s, s:i}", "id",
	              "0f8fad5b-d9cb-469f-a165-70867728950e", "title", "Brokerage, day 1",
	              "description", "Meet partners;\nbring cards", "venue", "Hall B, Toulouse",
	              "online_url", "https://meet.example/b1", "starts_at", "2026-05-04T07:00:00Z",
	              "ends_at", "2026-05-04T16:00:00Z", "timezone", "Europe/Paris", "topics",
	              "ai-imaging", "omics", "status", "published", "created_at",
	              "2026-01-10T08:00:00Z", "updated_at", "2026-01-11T09:30:00Z", "version", 3);
	char *ics = ev_ics_event(e);
	ok(ics != NULL, "VEVENT built");
	ok(lines_ok(ics), "every line CRLF-terminated and at most 75 octets");
	ok(strncmp(ics, "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:", 37) == 0, "calendar header");
	ok(strstr(ics, "\r\nDTSTART:20260504T070000Z\r\n") != NULL, "DTSTART in UTC");
	ok(strstr(ics, "\r\nDTEND:20260504T160000Z\r\n") != NULL, "DTEND in UTC");
	ok(strstr(ics, "\r\nX-WR-TIMEZONE:Europe/Paris\r\n") != NULL, "zone named");
	ok(strstr(ics, "\r\nDTSTAMP:20260111T093000Z\r\n") != NULL, "DTSTAMP");
	ok(strstr(ics, "\r\nUID:0f8fad5b-d9cb-469f-a165-70867728950e@events.spearhead\r\n") != NULL,
	   "stable UID");
	ok(strstr(ics, "\r\nSEQUENCE:2\r\n") != NULL, "SEQUENCE from the version");
	ok(strstr(ics, "\r\nSUMMARY:Brokerage\\, day 1\r\n") != NULL, "SUMMARY escaped");
	ok(strstr(ics, "\r\nLOCATION:Hall B\\, Toulouse\r\n") != NULL, "LOCATION escaped");
	ok(strstr(ics, "\r\nCATEGORIES:ai-imaging,omics\r\n") != NULL, "CATEGORIES");
	ok(strstr(ics, "\r\nSTATUS:CONFIRMED\r\n") != NULL, "published is CONFIRMED");
	ok(strstr(ics, "Meet partners\\;\\nbring cards") != NULL, "DESCRIPTION escaped");
	ok(strstr(ics, "END:VEVENT\r\nEND:VCALENDAR\r\n") != NULL, "closed properly");
	free(ics);
	json_object_set_new(e, "starts_at", json_string("soon"));
	ok(ev_ics_event(e) == NULL, "a malformed time gives NULL");
	json_decref(e);
}

static char *field(const char *s)
{
	struct ev_buf b = { 0 };
	ev_csv_field(&b, s);
	return ev_buf_take(&b);
}

static void test_csv(void)
{
	struct {
		const char *in, *out;
	} cases[] = {
		{ "plain", "plain" },
		{ "a,b", "\"a,b\"" },
		{ "say \"hi\"", "\"say \"\"hi\"\"\"" },
		{ "two\r\nlines", "\"two\r\nlines\"" },
		{ "=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\"" },
		{ "+1", "\"'+1\"" },
		{ "-2", "\"'-2\"" },
		{ "@SUM(A1)", "\"'@SUM(A1)\"" },
		{ " padded ", "\" padded \"" },
		{ "Zoë", "Zoë" },
		{ "", "" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s = field(cases[i].in);
		is_str(s, cases[i].out, "CSV field %zu", i);
		free(s);
	}
	json_t *qs = json_pack("[{s:s, s:s}, {s:s, s:s}]", "id", "diet", "label", "Diet, food",
	                       "id", "topics", "label", "Topics");
	json_t *regs = json_pack(
	    "[{s:s, s:s, s:n, s:s, s:{s:s, s:s}, s:s, s:n, s:s, s:{s:s, s:[ss]}},"
	    " {s:s, s:s, s:i, s:n, s:{s:s, s:s}, s:s, s:n, s:s, s:{}}]",
	    "id", "r1", "status", "confirmed", "waitlist_position", "category", "company",
	    "attendee", "name", "Ann \"A\" Lee", "email", "ann@x.org", "checkin_code", "AB12CD34EF",
	    "checked_in_at", "created_at", "2026-01-01T00:00:00Z", "answers", "diet", "vegan",
	    "topics", "a", "b", "id", "r2", "status", "waitlisted", "waitlist_position", 1,
	    "category", "attendee", "name", "=cmd", "email", "b@x.org", "checkin_code",
	    "0123456789", "checked_in_at", "created_at", "2026-01-02T00:00:00Z", "answers");
	char *csv = ev_csv_registrations(qs, regs);
	const char *want =
	    "registration_id,status,waitlist_position,category,name,email,checkin_code,"
	    "checked_in_at,created_at,\"Diet, food\",Topics\r\n"
	    "r1,confirmed,,company,\"Ann \"\"A\"\" Lee\",ann@x.org,AB12CD34EF,,"
	    "2026-01-01T00:00:00Z,vegan,a; b\r\n"
	    "r2,waitlisted,1,,\"'=cmd\",b@x.org,0123456789,,2026-01-02T00:00:00Z,,\r\n";
	is_str(csv, want, "CSV export");
	free(csv);
	json_decref(qs);
	json_decref(regs);
}

static void test_cursor(void)
{
	for (size_t n = 0; n < 8; n++) {
		unsigned char in[8], back[8];
		for (size_t i = 0; i < n; i++)
			in[i] = (unsigned char)(0xF0 + i * 37);
		char *s = ev_base64url_encode(in, n);
		long m = ev_base64url_decode(s, back, sizeof(back));
		ok(m == (long)n && memcmp(in, back, n) == 0 && !strpbrk(s, "+/="),
		   "base64url round trip of %zu bytes", n);
		free(s);
	}
	unsigned char buf[8];
	ok(ev_base64url_decode("a+b=", buf, sizeof(buf)) < 0, "standard base64 refused");
	ok(ev_base64url_decode("QR", buf, sizeof(buf)) < 0, "non-canonical tail refused");
	json_t *pos =
	    json_pack("[ss]", "2026-05-04 07:00:00+00", "0f8fad5b-d9cb-469f-a165-70867728950e");
	char *c = ev_cursor_encode(pos);
	json_t *back = ev_cursor_decode(c, 2);
	ok(back && json_equal(back, pos), "cursor round trip");
	ok(ev_cursor_decode(c, 1) == NULL, "wrong arity refused");
	ok(ev_cursor_decode("garbage!", 2) == NULL, "garbage refused");
	json_t *nums = json_pack("[ii]", 1, 2);
	char *cn = ev_cursor_encode(nums);
	ok(ev_cursor_decode(cn, 2) == NULL, "non-string positions refused");
	free(cn);
	json_decref(nums);
	json_decref(back);
	json_decref(pos);
	free(c);

	char *p = ev_like_pattern("50%_off\\");
	is_str(p, "%50\\%\\_off\\\\%", "LIKE wildcards escaped");
	free(p);
}

int main(void)
{
	test_ics_lines();
	test_ics_event();
	test_csv();
	test_cursor();
	return tap_done();
}
