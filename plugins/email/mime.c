/* mime.c — e-mail formatting (RFC 5322 headers, RFC 2047 encoded words, RFC 2045
 * quoted-printable, multipart/alternative): pure functions, no I/O. */
#include "mime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINE_MAX_SOFT 78 /* RFC 5322: lines SHOULD be at most 78 characters */
#define WORD_MAX      75 /* RFC 2047: an encoded word is at most 75 characters */
#define WORD_OVERHEAD 12 /* "=?UTF-8?B?" and "?=" */

/* ---- buffer ---- */

void em_buf_add(struct em_buf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->failed = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void em_buf_str(struct em_buf *b, const char *s)
{
	em_buf_add(b, s, strlen(s));
}

char *em_buf_take(struct em_buf *b)
{
	char *p = b->failed ? NULL : b->p;
	if (b->failed)
		free(b->p);
	else if (!p)
		p = calloc(1, 1);
	b->p = NULL;
	b->len = b->cap = 0;
	b->failed = false;
	return p;
}

void em_buf_free(struct em_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
	b->failed = false;
}

/* ---- checks ---- */

bool em_is_plain_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

bool em_valid_address(const char *addr)
{
	if (!addr)
		return false;
	size_t n = strlen(addr);
	const char *at = strchr(addr, '@');
	if (n < 3 || n > 254 || !at || at == addr || !at[1] || strchr(at + 1, '@') ||
	    (size_t)(at - addr) > 64)
		return false;
	for (const char *p = addr; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p > 0x7e ||
		    strchr("<>()[]\\,;:\"", *p))
			return false;
	return true;
}

const char *em_address_domain(const char *addr)
{
	const char *at = strchr(addr, '@');
	return at ? at + 1 : addr;
}

/* ---- dates ---- */

void em_date(char *out, size_t len, long long unix_time)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
		                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = (time_t)unix_time;
	struct tm tm;
	if (!gmtime_r(&t, &tm)) {
		snprintf(out, len, "Thu, 01 Jan 1970 00:00:00 +0000");
		return;
	}
	snprintf(out, len, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7],
	         tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
	         tm.tm_sec);
}

/* ---- header fields ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void base64(struct em_buf *b, const unsigned char *in, size_t len)
{
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16;
		if (i + 1 < len)
			v |= (unsigned)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		char q[4] = { b64[(v >> 18) & 63], b64[(v >> 12) & 63],
			      i + 1 < len ? b64[(v >> 6) & 63] : '=',
			      i + 2 < len ? b64[v & 63] : '=' };
		em_buf_add(b, q, 4);
	}
}

/* A copy of s with control characters (line breaks included) turned into spaces. */
static char *one_line(const char *s)
{
	char *c = strdup(s ? s : "");
	for (char *p = c; p && *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	return c;
}

/* Writes s as encoded words, folding so that lines stay within 78 characters; *col is
 * the current line's length, updated. */
static void encoded_words(struct em_buf *b, const char *s, size_t *col)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), i = 0;
	while (i < n) {
		size_t avail = LINE_MAX_SOFT > *col ? LINE_MAX_SOFT - *col : 0;
		if (avail < WORD_OVERHEAD + 8) { /* no room for a useful word: fold first */
			em_buf_str(b, "\r\n ");
			*col = 1;
			continue;
		}
		size_t chars = (avail < WORD_MAX ? avail : WORD_MAX) - WORD_OVERHEAD;
		size_t take = chars / 4 * 3;
		if (take > n - i)
			take = n - i;
		/* Never split a UTF-8 sequence between two words. */
		while (take > 1 && i + take < n && (u[i + take] & 0xC0) == 0x80)
			take--;
		em_buf_str(b, "=?UTF-8?B?");
		base64(b, u + i, take);
		em_buf_str(b, "?=");
		*col += WORD_OVERHEAD + (take + 2) / 3 * 4;
		i += take;
		if (i < n) {
			em_buf_str(b, "\r\n ");
			*col = 1;
		}
	}
}

/* Plain ASCII folded at spaces (a fold goes before a space, which stays). */
static void folded_ascii(struct em_buf *b, const char *s, size_t *col, size_t first_col)
{
	const char *p = s;
	while (*p) {
		/* a token: leading spaces, then a word */
		const char *e = p;
		while (*e == ' ')
			e++;
		while (*e && *e != ' ')
			e++;
		size_t n = (size_t)(e - p);
		if (*col + n > LINE_MAX_SOFT && *col > first_col && *p == ' ') {
			em_buf_str(b, "\r\n");
			*col = 0;
		}
		em_buf_add(b, p, n);
		*col += n;
		p = e;
	}
}

/* Text that must be encoded: not plain ASCII, holds something that looks like an
 * encoded word, or a word too long to fold. */
static bool needs_encoding(const char *s)
{
	if (!em_is_plain_ascii(s) || strstr(s, "=?"))
		return true;
	size_t run = 0;
	for (; *s; s++) {
		run = *s == ' ' ? 0 : run + 1;
		if (run > 900)
			return true;
	}
	return false;
}

void em_header_text(struct em_buf *b, const char *name, const char *value)
{
	char *v = one_line(value);
	em_buf_str(b, name);
	em_buf_str(b, ": ");
	size_t col = strlen(name) + 2;
	if (!v)
		b->failed = true;
	else if (needs_encoding(v))
		encoded_words(b, v, &col);
	else
		folded_ascii(b, v, &col, strlen(name) + 2);
	em_buf_str(b, "\r\n");
	free(v);
}

void em_header_address(struct em_buf *b, const char *name, const char *display, const char *addr)
{
	char *d = one_line(display);
	em_buf_str(b, name);
	em_buf_str(b, ": ");
	size_t col = strlen(name) + 2;
	if (!d) {
		b->failed = true;
	} else if (!*d) {
		em_buf_str(b, addr);
	} else {
		if (needs_encoding(d)) {
			encoded_words(b, d, &col);
		} else {
			em_buf_str(b, "\"");
			for (const char *p = d; *p; p++) {
				if (*p == '"' || *p == '\\')
					em_buf_str(b, "\\");
				em_buf_add(b, p, 1);
			}
			em_buf_str(b, "\"");
			col += strlen(d) + 2;
		}
		if (col + strlen(addr) + 3 > LINE_MAX_SOFT)
			em_buf_str(b, "\r\n");
		em_buf_str(b, " <");
		em_buf_str(b, addr);
		em_buf_str(b, ">");
	}
	em_buf_str(b, "\r\n");
	free(d);
}

/* ---- bodies ---- */

void em_quoted_printable(struct em_buf *b, const char *text)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)(text ? text : "");
	for (;;) {
		size_t n = strcspn((const char *)p, "\r\n"), col = 0;
		for (size_t i = 0; i < n; i++) {
			unsigned char c = p[i];
			bool last = i + 1 == n;
			for (int pass = 0; pass < 2; pass++) {
				bool enc = c == '=' || c > 126 || (c < 32 && c != '\t') ||
				           ((c == ' ' || c == '\t') && last) ||
				           (c == '.' && col == 0);
				size_t len = enc ? 3 : 1;
				if (col + len > 75 &&
				    pass == 0) { /* soft break, then decide again */
					em_buf_str(b, "=\r\n");
					col = 0;
					continue;
				}
				if (enc) {
					char t[3] = { '=', hex[c >> 4], hex[c & 15] };
					em_buf_add(b, t, 3);
				} else {
					em_buf_add(b, (const char *)&c, 1);
				}
				col += len;
				break;
			}
		}
		em_buf_str(b, "\r\n");
		p += n;
		if (!*p)
			break;
		p += (p[0] == '\r' && p[1] == '\n') ? 2 : 1;
		if (!*p)
			break;
	}
}

/* ---- messages ---- */

static void header_raw(struct em_buf *b, const char *name, const char *value)
{
	char *v = one_line(value);
	em_buf_str(b, name);
	em_buf_str(b, ": ");
	em_buf_str(b, v ? v : "");
	em_buf_str(b, "\r\n");
	if (!v)
		b->failed = true;
	free(v);
}

/* A list header "<a>, <b>" folded after its commas. */
static void header_list(struct em_buf *b, const char *name, const char *value)
{
	char *v = one_line(value);
	em_buf_str(b, name);
	em_buf_str(b, ":");
	size_t col = strlen(name) + 1;
	char *save = NULL;
	for (char *item = v ? strtok_r(v, ",", &save) : NULL; item;
	     item = strtok_r(NULL, ",", &save)) {
		while (*item == ' ')
			item++;
		size_t n = strlen(item);
		if (col > strlen(name) + 1) {
			em_buf_str(b, ",");
			col++;
		}
		if (col + n + 1 > LINE_MAX_SOFT && col > strlen(name) + 1) {
			em_buf_str(b, "\r\n");
			col = 0;
		}
		em_buf_str(b, " ");
		em_buf_str(b, item);
		col += n + 1;
	}
	em_buf_str(b, "\r\n");
	free(v);
}

char *em_message_build(const struct em_message *m)
{
	struct em_buf b = { 0 };
	char date[64];
	em_date(date, sizeof(date), m->date);
	header_raw(&b, "Date", date);
	em_header_address(&b, "From", m->from_name, m->from_addr);
	em_header_address(&b, "To", m->to_name, m->to_addr);
	em_header_text(&b, "Subject", m->subject);
	em_buf_str(&b, "Message-ID: <");
	em_buf_str(&b, m->message_id);
	em_buf_str(&b, ">\r\n");
	em_buf_str(&b, "MIME-Version: 1.0\r\n");
	if (m->language && *m->language)
		header_raw(&b, "Content-Language", m->language);
	/* RFC 3834: a machine wrote this; vacation responders should stay quiet. */
	em_buf_str(&b, "Auto-Submitted: auto-generated\r\n");
	if (m->event_id)
		header_raw(&b, "X-Spearhead-Event-Id", m->event_id);
	if (m->event_type)
		header_raw(&b, "X-Spearhead-Type", m->event_type);
	if (m->list_unsubscribe && *m->list_unsubscribe)
		header_list(&b, "List-Unsubscribe", m->list_unsubscribe);
	em_buf_str(&b, "Content-Type: multipart/alternative;\r\n boundary=\"");
	em_buf_str(&b, m->boundary);
	em_buf_str(&b, "\"\r\n\r\n");
	em_buf_str(&b, "This is a message in MIME format, with a plain text and an HTML part.\r\n");
	static const char *const types[] = { "text/plain", "text/html" };
	const char *parts[] = { m->text, m->html };
	for (int i = 0; i < 2; i++) {
		em_buf_str(&b, "\r\n--");
		em_buf_str(&b, m->boundary);
		em_buf_str(&b, "\r\nContent-Type: ");
		em_buf_str(&b, types[i]);
		em_buf_str(
		    &b, "; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
		em_quoted_printable(&b, parts[i]);
		b.len -= b.len >= 2 ? 2 : 0; /* the CRLF before a boundary belongs to it */
		if (b.p)
			b.p[b.len] = '\0';
	}
	em_buf_str(&b, "\r\n--");
	em_buf_str(&b, m->boundary);
	em_buf_str(&b, "--\r\n");
	return em_buf_take(&b);
}
