/* test_feed_sse.c — the feed plugin's pure helpers: SSE framing (ids, event names,
 * multi-line data, comments), sequence numbers from clients, base64url and cursors,
 * UUID checks. */
#include "tap.h"
#include "../../plugins/feed/sse.h"

#include <stdlib.h>
#include <string.h>

static void frames(void)
{
	char *s = feed_sse_event("42", "notification", "{\"a\":1}");
	is_str(s, "id: 42\nevent: notification\ndata: {\"a\":1}\n\n", "one event");
	free(s);
	s = feed_sse_event(NULL, NULL, "line1\nline2\r\nline3\rline4");
	is_str(s, "data: line1\ndata: line2\ndata: line3\ndata: line4\n\n",
	       "one data line per line, whatever the line break");
	free(s);
	s = feed_sse_event("1\n2", "bad\r\nname", "");
	is_str(s, "id: 12\nevent: badname\ndata: \n\n",
	       "line breaks cannot leak out of id or event");
	free(s);
	s = feed_sse_event(NULL, "read", "x\n");
	is_str(s, "event: read\ndata: x\ndata: \n\n", "a trailing line break keeps its empty line");
	free(s);
	s = feed_sse_event(NULL, NULL, NULL);
	is_str(s, "\n", "an empty event is one blank line");
	free(s);
	s = feed_sse_comment("ping");
	is_str(s, ": ping\n\n", "comment");
	free(s);
	s = feed_sse_comment("a\nb");
	is_str(s, ": a b\n\n", "a comment stays on one line");
	free(s);
}

static void seqs(void)
{
	long long v = -1;
	ok(feed_parse_seq("0", &v) == 0 && v == 0, "0");
	ok(feed_parse_seq("123456789012345678", &v) == 0 && v == 123456789012345678LL, "18 digits");
	ok(feed_parse_seq("1234567890123456789", &v) < 0, "19 digits refused");
	ok(feed_parse_seq("", &v) < 0, "empty refused");
	ok(feed_parse_seq(NULL, &v) < 0, "NULL refused");
	ok(feed_parse_seq("-1", &v) < 0, "negative refused");
	ok(feed_parse_seq("+1", &v) < 0, "sign refused");
	ok(feed_parse_seq(" 1", &v) < 0, "space refused");
	ok(feed_parse_seq("1x", &v) < 0, "trailing junk refused");
}

static void base64(void)
{
	static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	static const char *const coded[] = { "",       "Zg",      "Zm8",     "Zm9v",
		                             "Zm9vYg", "Zm9vYmE", "Zm9vYmFy" };
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		char out[32];
		unsigned char back[32];
		feed_b64url_encode((const unsigned char *)plain[i], strlen(plain[i]), out);
		is_str(out, coded[i], "base64url of '%s' (RFC 4648 vectors, no padding)", plain[i]);
		long n = feed_b64url_decode(coded[i], back, sizeof(back));
		ok(n == (long)strlen(plain[i]) && memcmp(back, plain[i], (size_t)n) == 0,
		   "and back");
	}
	unsigned char all[3] = { 0xfb, 0xff, 0xbf }, back[3];
	char out[8];
	feed_b64url_encode(all, 3, out);
	is_str(out, "-_-_", "URL-safe alphabet");
	ok(feed_b64url_decode("+/+/", back, sizeof(back)) < 0, "standard alphabet refused");
	ok(feed_b64url_decode("Zm9vY", back, sizeof(back)) < 0, "impossible length refused");
	ok(feed_b64url_decode("Zm9vYmFy", back, 2) < 0, "too little room refused");
}

static void cursors(void)
{
	char *c = feed_cursor_encode(1234);
	long long v = 0;
	ok(c && feed_cursor_decode(c, &v) == 0 && v == 1234, "a cursor round-trips");
	/* Same shape as the core's cursors: base64url of ["1234"]. */
	is_str(c, "WyIxMjM0Il0", "cursor text");
	free(c);
	static const char *const bad[] = { "",
		                           "x",
		                           "WyIxMjM0Il0=",
		                           "W10",
		                           /* [] */ "WzEyMzRd", /* [1234] */
		                           "WyIxMjM0IiwiNSJd",  /* ["1234","5"] */
		                           "WyItMSJd",          /* ["-1"] */
		                           "eyJhIjoxfQ",        /* {"a":1} */
		                           "%%%%" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ok(feed_cursor_decode(bad[i], &v) < 0, "bad cursor '%s' refused", bad[i]);
	ok(feed_cursor_decode(NULL, &v) < 0, "NULL cursor refused");
	char longc[200];
	memset(longc, 'A', sizeof(longc) - 1);
	longc[sizeof(longc) - 1] = '\0';
	ok(feed_cursor_decode(longc, &v) < 0, "overlong cursor refused");
}

static void uuids(void)
{
	ok(feed_valid_uuid("0f8fad5b-d9cb-469f-a165-70867728950e"), "uuid");
	ok(feed_valid_uuid("0F8FAD5B-D9CB-469F-A165-70867728950E"), "upper-case uuid");
	ok(!feed_valid_uuid("0f8fad5bd9cb469fa16570867728950e"), "without dashes refused");
	ok(!feed_valid_uuid("0f8fad5b-d9cb-469f-a165-70867728950"), "short refused");
	ok(!feed_valid_uuid("0f8fad5b-d9cb-469f-a165-70867728950g"), "non-hex refused");
	ok(!feed_valid_uuid("'; DROP TABLE x; --"), "junk refused");
	ok(!feed_valid_uuid(NULL), "NULL refused");
}

int main(void)
{
	frames();
	seqs();
	base64();
	cursors();
	uuids();
	return tap_done();
}
