/* sse.c — SSE framing, cursors and client-input checks for the feed plugin (no I/O, no
 * core services: unit-tested on their own by tests/unit/test_feed_sse.c). */
#include "sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* A growing string; on allocation failure it stays failed and the result is NULL. */
struct sbuf {
	char *p;
	size_t len, cap;
	bool failed;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
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

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* Appends s without its line breaks (fields that must stay on one line). */
static void sb_one_line(struct sbuf *b, const char *s)
{
	for (; *s; s++)
		if (*s != '\n' && *s != '\r')
			sb_add(b, s, 1);
}

static char *sb_finish(struct sbuf *b)
{
	if (b->failed) {
		free(b->p);
		return NULL;
	}
	return b->p;
}

char *feed_sse_event(const char *id, const char *event, const char *data)
{
	struct sbuf b = { 0 };
	if (id) {
		sb_str(&b, "id: ");
		sb_one_line(&b, id);
		sb_str(&b, "\n");
	}
	if (event) {
		sb_str(&b, "event: ");
		sb_one_line(&b, event);
		sb_str(&b, "\n");
	}
	if (data) {
		const char *line = data;
		for (;;) {
			size_t n = strcspn(line, "\r\n");
			sb_str(&b, "data: ");
			sb_add(&b, line, n);
			sb_str(&b, "\n");
			line += n;
			if (!*line)
				break;
			line += (line[0] == '\r' && line[1] == '\n') ? 2 : 1;
		}
	}
	sb_str(&b, "\n");
	return sb_finish(&b);
}

char *feed_sse_comment(const char *text)
{
	struct sbuf b = { 0 };
	sb_str(&b, ": ");
	for (const char *s = text ? text : ""; *s; s++)
		sb_add(&b, (*s == '\n' || *s == '\r') ? " " : s, 1);
	sb_str(&b, "\n\n");
	return sb_finish(&b);
}

int feed_parse_seq(const char *s, long long *out)
{
	if (!s || !*s || strlen(s) > 18)
		return -1;
	long long v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p - '0');
	}
	*out = v;
	return 0;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t feed_b64url_encode(const unsigned char *in, size_t len, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16;
		if (i + 1 < len)
			v |= (unsigned)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = b64[(v >> 18) & 63];
		out[o++] = b64[(v >> 12) & 63];
		if (i + 1 < len)
			out[o++] = b64[(v >> 6) & 63];
		if (i + 2 < len)
			out[o++] = b64[v & 63];
	}
	out[o] = '\0';
	return o;
}

static int b64_value(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;
	return p ? (int)(p - b64) : -1;
}

long feed_b64url_decode(const char *in, unsigned char *out, size_t cap)
{
	size_t len = strlen(in), o = 0;
	if (len % 4 == 1)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		size_t n = len - i < 4 ? len - i : 4;
		unsigned v = 0;
		for (size_t k = 0; k < 4; k++) {
			int d = k < n ? b64_value(in[i + k]) : 0;
			if (d < 0)
				return -1;
			v = (v << 6) | (unsigned)d;
		}
		size_t bytes = n - 1; /* 4 chars → 3 bytes, 3 → 2, 2 → 1 */
		if (o + bytes > cap)
			return -1;
		out[o++] = (unsigned char)(v >> 16);
		if (bytes > 1)
			out[o++] = (unsigned char)(v >> 8);
		if (bytes > 2)
			out[o++] = (unsigned char)v;
	}
	return (long)o;
}

char *feed_cursor_encode(long long seq)
{
	char text[48];
	int n = snprintf(text, sizeof(text), "[\"%lld\"]", seq);
	char *out = malloc(FEED_B64_LEN((size_t)n));
	if (out)
		feed_b64url_encode((const unsigned char *)text, (size_t)n, out);
	return out;
}

int feed_cursor_decode(const char *cursor, long long *seq)
{
	unsigned char buf[64];
	if (!cursor || !*cursor || strlen(cursor) > 80)
		return -1;
	long n = feed_b64url_decode(cursor, buf, sizeof(buf));
	if (n <= 0)
		return -1;
	json_t *v = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
	int rc = -1;
	if (json_is_array(v) && json_array_size(v) == 1 && json_is_string(json_array_get(v, 0)))
		rc = feed_parse_seq(json_string_value(json_array_get(v, 0)), seq);
	json_decref(v);
	return rc;
}

bool feed_valid_uuid(const char *s)
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
