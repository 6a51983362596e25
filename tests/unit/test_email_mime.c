/* test_email_mime.c — the email plugin's MIME helpers: addresses, RFC 5322 dates,
 * RFC 2047 encoded words (folding, UTF-8 sequences never split, header injection),
 * quoted-printable (RFC 2045 rules, round trip) and whole multipart messages. */
#include "tap.h"
#include "../../plugins/email/mime.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- small decoders, to check round trips ---- */

static int b64val(char c)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c ? strchr(a, c) : NULL;
	return p ? (int)(p - a) : -1;
}

/* Decodes base64 (with padding) of n characters, appends to out; returns bytes. */
static size_t b64dec(const char *in, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i + 3 < n; i += 4) {
		int v[4];
		for (int k = 0; k < 4; k++)
			v[k] = in[i + k] == '=' ? 0 : b64val(in[i + k]);
		unsigned x = (unsigned)(v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3]);
		out[o++] = (char)(x >> 16);
		if (in[i + 2] != '=')
			out[o++] = (char)(x >> 8);
		if (in[i + 3] != '=')
			out[o++] = (char)x;
	}
	return o;
}

static bool valid_utf8(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t len = s[i] < 0x80         ? 1
		             : (s[i] >> 5) == 6  ? 2
		             : (s[i] >> 4) == 14 ? 3
		             : (s[i] >> 3) == 30 ? 4
		                                 : 0;
		if (!len || i + len > n)
			return false;
		for (size_t k = 1; k < len; k++)
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
		i += len;
	}
	return true;
}

/* Checks a header made of encoded words: lines ≤ 78, words ≤ 75, each word valid
 * UTF-8 on its own; writes the decoded text to out. */
static bool decode_words(const char *h, char *out, size_t *maxline, bool *words_ok)
{
	size_t o = 0, line = 0;
	*maxline = 0;
	*words_ok = true;
	for (const char *p = h; *p; p++) {
		if (p[0] == '\r' && p[1] == '\n') {
			if (line > *maxline)
				*maxline = line;
			line = 0;
			p++;
			continue;
		}
		line++;
	}
	const char *p = h;
	while ((p = strstr(p, "=?UTF-8?B?"))) {
		const char *s = p + 10, *e = strstr(s, "?=");
		if (!e)
			return false;
		if ((size_t)(e + 2 - p) > 75)
			*words_ok = false;
		size_t n = b64dec(s, (size_t)(e - s), out + o);
		if (!valid_utf8((const unsigned char *)out + o, n))
			*words_ok = false;
		o += n;
		p = e + 2;
	}
	out[o] = '\0';
	return true;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decodes quoted-printable with CRLF lines into LF text; checks line lengths. */
static void qp_decode(const char *in, char *out, size_t *maxline)
{
	size_t o = 0, line = 0;
	*maxline = 0;
	for (const char *p = in; *p;) {
		if (p[0] == '\r' && p[1] == '\n') {
			out[o++] = '\n';
			if (line > *maxline)
				*maxline = line;
			line = 0;
			p += 2;
		} else if (p[0] == '=' && p[1] == '\r' && p[2] == '\n') {
			line++;
			if (line > *maxline)
				*maxline = line;
			line = 0;
			p += 3;
		} else if (p[0] == '=') {
			out[o++] = (char)(hexval(p[1]) * 16 + hexval(p[2]));
			line += 3;
			p += 3;
		} else {
			out[o++] = *p++;
			line++;
		}
	}
	out[o] = '\0';
}

static char *text_header(const char *name, const char *value)
{
	struct em_buf b = { 0 };
	em_header_text(&b, name, value);
	return em_buf_take(&b);
}

static char *address_header(const char *name, const char *display, const char *addr)
{
	struct em_buf b = { 0 };
	em_header_address(&b, name, display, addr);
	return em_buf_take(&b);
}

static char *qp(const char *text)
{
	struct em_buf b = { 0 };
	em_quoted_printable(&b, text);
	return em_buf_take(&b);
}

static void addresses(void)
{
	ok(em_valid_address("ann@x.example"), "plain address");
	ok(em_valid_address("a.b+tag@sub.x.example"), "dots and plus");
	ok(!em_valid_address("ann"), "no @");
	ok(!em_valid_address("@x.example"), "empty local part");
	ok(!em_valid_address("ann@"), "empty domain");
	ok(!em_valid_address("a@b@c"), "two @");
	ok(!em_valid_address("ann @x.example"), "space");
	ok(!em_valid_address("ann@x.example\r\nBcc: eve@x.example"), "line break");
	ok(!em_valid_address("<ann@x.example>"), "angle brackets");
	ok(!em_valid_address("ann@x.exampl\xc3\xa9"), "non-ASCII");
	ok(!em_valid_address(NULL), "NULL");
	is_str(em_address_domain("ann@x.example"), "x.example", "domain");
}

static void dates(void)
{
	char d[40];
	em_date(d, sizeof(d), 0);
	is_str(d, "Thu, 01 Jan 1970 00:00:00 +0000", "the epoch");
	em_date(d, sizeof(d), 1700000000);
	is_str(d, "Tue, 14 Nov 2023 22:13:20 +0000", "a known date");
	em_date(d, sizeof(d), 951782400);
	is_str(d, "Tue, 29 Feb 2000 00:00:00 +0000", "a leap day");
}

static void subjects(void)
{
	char *h = text_header("Subject", "Hello");
	is_str(h, "Subject: Hello\r\n", "plain ASCII as it is");
	free(h);
	h = text_header("Subject", "Caf\xc3\xa9");
	is_str(h, "Subject: =?UTF-8?B?Q2Fmw6k=?=\r\n", "non-ASCII as an encoded word");
	free(h);
	h = text_header("Subject", "=?UTF-8?B?eA==?= trick");
	ok(strncmp(h, "Subject: =?UTF-8?B?", 19) == 0 && !strstr(h, "eA=="),
	   "text that looks like an encoded word is encoded itself");
	free(h);
	h = text_header("Subject", "Hi\r\nBcc: eve@x.example");
	is_str(h, "Subject: Hi  Bcc: eve@x.example\r\n", "line breaks cannot add header fields");
	free(h);

	/* long ASCII: folded at spaces, nothing lost */
	char longs[400] = "";
	for (int i = 0; i < 30; i++)
		strcat(longs, i ? " word" : "Start");
	h = text_header("Subject", longs);
	size_t maxline = 0, line = 0;
	char unfolded[800];
	size_t u = 0;
	for (const char *p = h; *p; p++) {
		if (p[0] == '\r' && p[1] == '\n') {
			maxline = line > maxline ? line : maxline;
			line = 0;
			p++;
			continue;
		}
		line++;
		unfolded[u++] = *p;
	}
	unfolded[u] = '\0';
	ok(maxline <= 78, "folded ASCII lines are at most 78 characters (%zu)", maxline);
	ok(strcmp(unfolded + 9, longs) == 0, "unfolding gives the text back");
	free(h);

	/* long non-ASCII: several words, none splitting a character */
	char title[600] = "";
	for (int i = 0; i < 20; i++)
		strcat(title, "Appel \xc3\xa0 projets \xe2\x82\xac ");
	strcat(title, "\xf0\x9f\x9a\x80 fin");
	h = text_header("Subject", title);
	char decoded[800];
	bool words_ok;
	ok(decode_words(h, decoded, &maxline, &words_ok), "encoded words parse");
	is_str(decoded, title, "decoding the words gives the text back");
	ok(maxline <= 78, "lines are at most 78 characters (%zu)", maxline);
	ok(words_ok, "every word is at most 75 characters and whole UTF-8");
	ok(strstr(h, "\r\n =?UTF-8?B?") != NULL, "words are on folded lines");
	free(h);
}

static void address_fields(void)
{
	char *h = address_header("To", "", "ann@x.example");
	is_str(h, "To: ann@x.example\r\n", "no display name");
	free(h);
	h = address_header("To", NULL, "ann@x.example");
	is_str(h, "To: ann@x.example\r\n", "NULL display name");
	free(h);
	h = address_header("From", "Ann \"A\" B\\", "ann@x.example");
	is_str(h, "From: \"Ann \\\"A\\\" B\\\\\" <ann@x.example>\r\n", "quoted string, escaped");
	free(h);
	h = address_header("To", "Zo\xc3\xab", "zoe@x.example");
	is_str(h, "To: =?UTF-8?B?Wm/Dqw==?= <zoe@x.example>\r\n", "non-ASCII display name encoded");
	free(h);
	h = address_header("To", "Eve\r\nBcc: x@y.z", "eve@x.example");
	ok(strstr(h, "\r\nBcc") == NULL, "no header injection through a display name");
	free(h);
}

static void quoted_printable(void)
{
	char *q = qp("abc");
	is_str(q, "abc\r\n", "plain text");
	free(q);
	q = qp("a=b");
	is_str(q, "a=3Db\r\n", "= is encoded");
	free(q);
	q = qp("caf\xc3\xa9");
	is_str(q, "caf=C3=A9\r\n", "UTF-8 bytes are encoded");
	free(q);
	q = qp("end \nand\t\nin\tside");
	is_str(q, "end=20\r\nand=09\r\nin\tside\r\n",
	       "whitespace at line ends encoded, inside kept");
	free(q);
	q = qp(".\n.x");
	is_str(q, "=2E\r\n=2Ex\r\n", "a dot starting a line is encoded (SMTP)");
	free(q);
	q = qp("a\r\nb\n\nc\n");
	is_str(q, "a\r\nb\r\n\r\nc\r\n", "LF and CRLF become CRLF");
	free(q);
	q = qp("");
	is_str(q, "\r\n", "empty text");
	free(q);

	char longt[1200] = "", back[1500];
	for (int i = 0; i < 60; i++)
		strcat(longt, "\xc3\xa9t\xc3\xa9 = summer ");
	strcat(longt, "\nshort line\n");
	for (int i = 0; i < 200; i++)
		strcat(longt, "x");
	q = qp(longt);
	size_t maxline;
	qp_decode(q, back, &maxline);
	back[strlen(back) - 1] = '\0'; /* the final CRLF */
	is_str(back, longt, "round trip of long lines");
	ok(maxline <= 76, "encoded lines are at most 76 characters (%zu)", maxline);
	free(q);
}

static void messages(void)
{
	struct em_message m = {
		.from_name = "Cluster",
		.from_addr = "noreply@cluster.example",
		.to_name = "Ann",
		.to_addr = "ann@x.example",
		.subject = "Hello",
		.message_id = "abc@cluster.example",
		.date = 0,
		.list_unsubscribe = "<https://cluster.example/settings/notifications>, "
		                    "<mailto:unsubscribe@cluster.example?subject=unsubscribe>",
		.language = "en",
		.event_id = "abc",
		.event_type = "call.published",
		.text = "Plain\ntext",
		.html = "<p>HTML</p>",
		.boundary = "=_sp_abc",
	};
	char *msg = em_message_build(&m);
	ok(msg != NULL, "a message is built");
	ok(strncmp(msg, "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n", 39) == 0, "Date first");
	ok(strstr(msg, "\r\nFrom: \"Cluster\" <noreply@cluster.example>\r\n") != NULL, "From");
	ok(strstr(msg, "\r\nTo: \"Ann\" <ann@x.example>\r\n") != NULL, "To");
	ok(strstr(msg, "\r\nMessage-ID: <abc@cluster.example>\r\n") != NULL, "Message-ID");
	ok(strstr(msg, "\r\nMIME-Version: 1.0\r\n") != NULL, "MIME-Version");
	ok(strstr(msg, "\r\nList-Unsubscribe: <https://cluster.example/settings/notifications>,"
	               "\r\n <mailto:unsubscribe@cluster.example?subject=unsubscribe>\r\n") != NULL,
	   "List-Unsubscribe, folded after its comma");
	ok(strstr(msg, "Content-Type: multipart/alternative;\r\n boundary=\"=_sp_abc\"\r\n\r\n") !=
	       NULL,
	   "multipart/alternative with a quoted boundary, then the body");
	const char *plain =
	    strstr(msg, "\r\n--=_sp_abc\r\nContent-Type: text/plain; charset=utf-8\r\n"
	                "Content-Transfer-Encoding: quoted-printable\r\n\r\nPlain\r\n"
	                "text\r\n--=_sp_abc\r\n");
	ok(plain != NULL, "the text part");
	ok(strstr(msg, "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: "
	               "quoted-printable\r\n\r\n<p>HTML</p>\r\n--=_sp_abc--\r\n") != NULL,
	   "the HTML part, then the closing boundary");
	size_t len = strlen(msg);
	ok(len > 7 && strcmp(msg + len - 14, "--=_sp_abc--\r\n") == 0, "ends with the boundary");
	bool crlf = true;
	for (size_t i = 0; i < len; i++)
		if (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r'))
			crlf = false;
	ok(crlf, "every line ends in CRLF");
	free(msg);

	m.list_unsubscribe = NULL;
	m.language = NULL;
	m.to_name = "";
	msg = em_message_build(&m);
	ok(msg && !strstr(msg, "List-Unsubscribe"), "no List-Unsubscribe for essential mail");
	ok(msg && !strstr(msg, "Content-Language"), "no Content-Language without a language");
	ok(msg && strstr(msg, "\r\nTo: ann@x.example\r\n"), "To without a display name");
	free(msg);
}

int main(void)
{
	addresses();
	dates();
	subjects();
	address_fields();
	quoted_printable();
	messages();
	return tap_done();
}
