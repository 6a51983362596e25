/* events_format.c — iCalendar, CSV, cursors and LIKE patterns for the events plugin (see
 * events_format.h). */
#include "events_format.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffer ---- */

void ev_buf_append(struct ev_buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *d = realloc(b->data, cap);
		if (!d) {
			b->oom = true;
			return;
		}
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void ev_buf_puts(struct ev_buf *b, const char *s)
{
	ev_buf_append(b, s, strlen(s));
}

char *ev_buf_take(struct ev_buf *b)
{
	char *d = b->oom ? NULL : b->data;
	if (!d && !b->oom)
		d = calloc(1, 1);
	if (b->oom)
		free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->oom = false;
	return d;
}

void ev_buf_free(struct ev_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->oom = false;
}

/* ---- iCalendar ---- */

bool ev_ics_utc(const char *s, char out[17])
{
	/* YYYY-MM-DDTHH:MM:SS[.f]Z */
	static const char shape[] = "dddd-dd-ddTdd:dd:dd";
	if (!s || strlen(s) < 20)
		return false;
	for (int i = 0; i < 19; i++) {
		if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
			return false;
	}
	const char *p = s + 19;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (strcmp(p, "Z") != 0)
		return false;
	snprintf(out, 17, "%.4s%.2s%.2sT%.2s%.2s%.2sZ", s, s + 5, s + 8, s + 11, s + 14, s + 17);
	return true;
}

/* Length of the UTF-8 sequence starting with byte c (1 for stray bytes). */
static size_t utf8_seq_len(unsigned char c)
{
	if (c >= 0xF0 && c <= 0xF4)
		return 4;
	if (c >= 0xE0)
		return 3;
	if (c >= 0xC2 && c < 0xE0)
		return 2;
	return 1;
}

void ev_ics_line(struct ev_buf *b, const char *name, const char *value, bool text)
{
	struct ev_buf line = { 0 };
	ev_buf_puts(&line, name);
	ev_buf_puts(&line, ":");
	for (const char *p = value ? value : ""; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (text && (c == '\\' || c == ';' || c == ',')) {
			char esc[2] = { '\\', (char)c };
			ev_buf_append(&line, esc, 2);
		} else if (c == '\n') {
			if (text)
				ev_buf_puts(&line, "\\n");
		} else if ((c < 0x20 && c != '\t') || c == 0x7f) {
			/* CR and other control characters are not allowed in values */
		} else {
			ev_buf_append(&line, p, 1);
		}
	}
	if (line.oom || !line.data) {
		b->oom = true;
		ev_buf_free(&line);
		return;
	}
	/* Fold: at most 75 octets per physical line, the leading space of a
	 * continuation line included; never inside a UTF-8 sequence. */
	size_t pos = 0, room = 75;
	while (pos < line.len) {
		size_t take = 0;
		while (pos + take < line.len) {
			size_t n = utf8_seq_len((unsigned char)line.data[pos + take]);
			if (pos + take + n > line.len)
				n = line.len - pos - take;
			if (take + n > room)
				break;
			take += n;
		}
		if (take == 0) /* cannot happen with room >= 4; keep progressing */
			take = 1;
		if (pos > 0)
			ev_buf_puts(b, " ");
		ev_buf_append(b, line.data + pos, take);
		ev_buf_puts(b, "\r\n");
		pos += take;
		room = 74;
	}
	ev_buf_free(&line);
}

char *ev_ics_event(const json_t *event)
{
	const char *id = json_string_value(json_object_get(event, "id"));
	const char *title = json_string_value(json_object_get(event, "title"));
	const char *descr = json_string_value(json_object_get(event, "description"));
	const char *venue = json_string_value(json_object_get(event, "venue"));
	const char *url = json_string_value(json_object_get(event, "online_url"));
	const char *tz = json_string_value(json_object_get(event, "timezone"));
	const char *status = json_string_value(json_object_get(event, "status"));
	json_t *topics = json_object_get(event, "topics");
	char start[17], end[17], stamp[17], created[17];
	if (!id || !title ||
	    !ev_ics_utc(json_string_value(json_object_get(event, "starts_at")), start) ||
	    !ev_ics_utc(json_string_value(json_object_get(event, "ends_at")), end) ||
	    !ev_ics_utc(json_string_value(json_object_get(event, "updated_at")), stamp) ||
	    !ev_ics_utc(json_string_value(json_object_get(event, "created_at")), created))
		return NULL;

	struct ev_buf b = { 0 };
	ev_buf_puts(&b, "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"
	                "PRODID:-//Spearhead//Events plugin//EN\r\n"
	                "CALSCALE:GREGORIAN\r\nMETHOD:PUBLISH\r\n");
	ev_ics_line(&b, "X-WR-CALNAME", title, true);
	if (tz)
		ev_ics_line(&b, "X-WR-TIMEZONE", tz, false);
	ev_buf_puts(&b, "BEGIN:VEVENT\r\n");
	char uid[128];
	snprintf(uid, sizeof(uid), "%s@events.spearhead", id);
	ev_ics_line(&b, "UID", uid, false);
	ev_ics_line(&b, "DTSTAMP", stamp, false);
	ev_ics_line(&b, "CREATED", created, false);
	ev_ics_line(&b, "LAST-MODIFIED", stamp, false);
	char seq[32];
	json_int_t version = json_integer_value(json_object_get(event, "version"));
	snprintf(seq, sizeof(seq), "%lld", (long long)(version > 0 ? version - 1 : 0));
	ev_ics_line(&b, "SEQUENCE", seq, false);
	ev_ics_line(&b, "DTSTART", start, false);
	ev_ics_line(&b, "DTEND", end, false);
	ev_ics_line(&b, "SUMMARY", title, true);
	struct ev_buf d = { 0 };
	ev_buf_puts(&d, descr ? descr : "");
	if (url) {
		ev_buf_puts(&d, d.len ? "\n\nOnline: " : "Online: ");
		ev_buf_puts(&d, url);
	}
	char *dtext = ev_buf_take(&d);
	if (dtext && *dtext)
		ev_ics_line(&b, "DESCRIPTION", dtext, true);
	if (!dtext)
		b.oom = true;
	free(dtext);
	if (venue || url)
		ev_ics_line(&b, "LOCATION", venue ? venue : url, true);
	if (url)
		ev_ics_line(&b, "URL", url, false);
	if (json_array_size(topics) > 0) {
		struct ev_buf cats = { 0 };
		size_t i;
		json_t *t;
		json_array_foreach(topics, i, t)
		{
			/* Each value is TEXT: escape it alone, then join with plain commas. */
			const char *s = json_string_value(t);
			if (i > 0)
				ev_buf_puts(&cats, ",");
			for (; s && *s; s++) {
				if (*s == '\\' || *s == ';' || *s == ',')
					ev_buf_puts(&cats, "\\");
				ev_buf_append(&cats, s, 1);
			}
		}
		char *c = ev_buf_take(&cats);
		if (c)
			ev_ics_line(&b, "CATEGORIES", c, false);
		else
			b.oom = true;
		free(c);
	}
	ev_ics_line(&b, "STATUS",
	            status && strcmp(status, "draft") == 0 ? "TENTATIVE" : "CONFIRMED", false);
	ev_buf_puts(&b, "TRANSP:OPAQUE\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n");
	return ev_buf_take(&b);
}

/* ---- CSV ---- */

void ev_csv_field(struct ev_buf *b, const char *s)
{
	if (!s)
		return;
	bool guard = *s == '=' || *s == '+' || *s == '-' || *s == '@' || *s == '\t' || *s == '\r';
	bool quote =
	    guard || strpbrk(s, ",\"\r\n") != NULL || *s == ' ' || (*s && s[strlen(s) - 1] == ' ');
	if (!quote) {
		ev_buf_puts(b, s);
		return;
	}
	ev_buf_puts(b, "\"");
	if (guard)
		ev_buf_puts(b, "'");
	for (const char *p = s; *p; p++) {
		if (*p == '"')
			ev_buf_puts(b, "\"\"");
		else
			ev_buf_append(b, p, 1);
	}
	ev_buf_puts(b, "\"");
}

/* One answer as a cell: strings as they are, arrays joined with "; ". */
static void csv_answer(struct ev_buf *b, const json_t *a)
{
	if (json_is_string(a)) {
		ev_csv_field(b, json_string_value(a));
	} else if (json_is_array(a)) {
		struct ev_buf j = { 0 };
		size_t i;
		json_t *v;
		json_array_foreach(a, i, v)
		{
			if (i > 0)
				ev_buf_puts(&j, "; ");
			ev_buf_puts(&j, json_string_value(v) ? json_string_value(v) : "");
		}
		char *s = ev_buf_take(&j);
		if (!s)
			b->oom = true;
		else
			ev_csv_field(b, s);
		free(s);
	}
}

static const char *const csv_columns[] = {
	"registration_id", "status",       "waitlist_position", "category",   "name",
	"email",           "checkin_code", "checked_in_at",     "created_at", NULL,
};

char *ev_csv_registrations(const json_t *questions, const json_t *regs)
{
	struct ev_buf b = { 0 };
	size_t i;
	json_t *q, *r;
	for (int c = 0; csv_columns[c]; c++) {
		if (c > 0)
			ev_buf_puts(&b, ",");
		ev_buf_puts(&b, csv_columns[c]);
	}
	json_array_foreach(questions, i, q)
	{
		const char *label = json_string_value(json_object_get(q, "label"));
		ev_buf_puts(&b, ",");
		ev_csv_field(&b, label ? label : json_string_value(json_object_get(q, "id")));
	}
	ev_buf_puts(&b, "\r\n");
	json_array_foreach(regs, i, r)
	{
		json_t *att = json_object_get(r, "attendee");
		json_t *pos = json_object_get(r, "waitlist_position");
		char num[32] = "";
		if (json_is_integer(pos))
			snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(pos));
		ev_csv_field(&b, json_string_value(json_object_get(r, "id")));
		ev_buf_puts(&b, ",");
		ev_csv_field(&b, json_string_value(json_object_get(r, "status")));
		ev_buf_puts(&b, ",");
		ev_buf_puts(&b, num);
		ev_buf_puts(&b, ",");
		ev_csv_field(&b, json_string_value(json_object_get(r, "category")));
		ev_buf_puts(&b, ",");
		ev_csv_field(&b, json_string_value(json_object_get(att, "name")));
		ev_buf_puts(&b, ",");
		ev_csv_field(&b, json_string_value(json_object_get(att, "email")));
		ev_buf_puts(&b, ",");
		ev_csv_field(&b, json_string_value(json_object_get(r, "checkin_code")));
		ev_buf_puts(&b, ",");
		ev_csv_field(&b, json_string_value(json_object_get(r, "checked_in_at")));
		ev_buf_puts(&b, ",");
		ev_csv_field(&b, json_string_value(json_object_get(r, "created_at")));
		json_t *answers = json_object_get(r, "answers");
		size_t k;
		json_array_foreach(questions, k, q)
		{
			const char *id = json_string_value(json_object_get(q, "id"));
			ev_buf_puts(&b, ",");
			if (id)
				csv_answer(&b, json_object_get(answers, id));
		}
		ev_buf_puts(&b, "\r\n");
	}
	return ev_buf_take(&b);
}

/* ---- cursors ---- */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *ev_base64url_encode(const unsigned char *data, size_t len)
{
	char *out = malloc(len / 3 * 4 + 5);
	if (!out)
		return NULL;
	size_t o = 0, i = 0;
	for (; i + 2 < len; i += 3) {
		unsigned v = (unsigned)data[i] << 16 | (unsigned)data[i + 1] << 8 | data[i + 2];
		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
		out[o++] = b64url[v >> 6 & 63];
		out[o++] = b64url[v & 63];
	}
	if (len - i == 1) {
		unsigned v = (unsigned)data[i] << 16;
		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
	} else if (len - i == 2) {
		unsigned v = (unsigned)data[i] << 16 | (unsigned)data[i + 1] << 8;
		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
		out[o++] = b64url[v >> 6 & 63];
	}
	out[o] = '\0';
	return out;
}

static int b64_value(char c)
{
	const char *p = c ? strchr(b64url, c) : NULL;
	return p ? (int)(p - b64url) : -1;
}

long ev_base64url_decode(const char *s, unsigned char *out, size_t cap)
{
	size_t n = strlen(s), o = 0;
	if (n % 4 == 1)
		return -1;
	unsigned acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64_value(s[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6 | (unsigned)v) & 0xFFFFFF;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap)
				return -1;
			out[o++] = (unsigned char)(acc >> bits & 0xFF);
		}
	}
	/* Left-over bits must be zero (canonical encoding). */
	if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
		return -1;
	return (long)o;
}

char *ev_cursor_encode(const json_t *position)
{
	char *text = json_dumps(position, JSON_COMPACT);
	if (!text)
		return NULL;
	char *out = ev_base64url_encode((const unsigned char *)text, strlen(text));
	free(text);
	return out;
}

json_t *ev_cursor_decode(const char *cursor, size_t n)
{
	unsigned char buf[1024];
	if (!cursor || !*cursor || strlen(cursor) > 1300)
		return NULL;
	long len = ev_base64url_decode(cursor, buf, sizeof(buf));
	if (len <= 0)
		return NULL;
	json_t *v = json_loadb((const char *)buf, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_array(v) || json_array_size(v) != n) {
		json_decref(v);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (!json_is_string(json_array_get(v, i))) {
			json_decref(v);
			return NULL;
		}
	}
	return v;
}

char *ev_like_pattern(const char *q)
{
	struct ev_buf b = { 0 };
	ev_buf_puts(&b, "%");
	for (const char *p = q; *p; p++) {
		if (*p == '\\' || *p == '%' || *p == '_')
			ev_buf_puts(&b, "\\");
		ev_buf_append(&b, p, 1);
	}
	ev_buf_puts(&b, "%");
	return ev_buf_take(&b);
}
