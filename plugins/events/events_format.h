/* events_format.h — pure output formats of the events plugin: iCalendar (RFC 5545), CSV
 * (RFC 4180) attendee exports, opaque list cursors and LIKE patterns. No I/O and no
 * core calls, so the unit tests exercise them directly. Strings returned are new
 * (free() them); NULL means out of memory or bad input as stated. */
#ifndef EV_FORMAT_H
#define EV_FORMAT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* A growing byte buffer; failed allocations set oom and make later appends no-ops. */
struct ev_buf {
	char *data;
	size_t len, cap;
	bool oom;
};

void ev_buf_append(struct ev_buf *b, const char *s, size_t n);
void ev_buf_puts(struct ev_buf *b, const char *s);
/* The NUL-terminated contents, handed to the caller (free()); NULL after oom. The
 * buffer is empty afterwards. */
char *ev_buf_take(struct ev_buf *b);
void ev_buf_free(struct ev_buf *b);

/* "2026-05-04T07:00:00Z" (or with a fraction) → "20260504T070000Z" (17 bytes with the
 * NUL). False unless s is such a UTC time. */
bool ev_ics_utc(const char *s, char out[17]);

/* Appends one content line "NAME:value" + CRLF, value escaped as TEXT when text is true
 * (\\ \; \, \n; other control characters dropped), folded at 75 octets without
 * splitting a UTF-8 sequence. */
void ev_ics_line(struct ev_buf *b, const char *name, const char *value, bool text);

/* A VCALENDAR with one VEVENT for an event as the API shows it (borrowed): times in
 * UTC ("Z"), X-WR-TIMEZONE naming the event's zone. NULL when a time is malformed. */
char *ev_ics_event(const json_t *event);

/* Appends one CSV field, quoted when needed (RFC 4180); a text field starting with
 * = + - @ or a tab is prefixed with ' so spreadsheets do not run it as a formula. */
void ev_csv_field(struct ev_buf *b, const char *s);

/* The attendee list of an event as CSV (CRLF line ends, a header line): questions
 * (borrowed) give the answer columns, regs (borrowed) are registrations as the API
 * shows them. */
char *ev_csv_registrations(const json_t *questions, const json_t *regs);

/* base64url without padding. Decoding returns the byte count, or -1 when s is not
 * base64url or does not fit in cap bytes. */
char *ev_base64url_encode(const unsigned char *data, size_t len);
long ev_base64url_decode(const char *s, unsigned char *out, size_t cap);

/* An opaque cursor for a keyset position (a JSON array of strings, borrowed), and
 * back: a new array of exactly n strings, or NULL when the cursor is not one of ours. */
char *ev_cursor_encode(const json_t *position);
json_t *ev_cursor_decode(const char *cursor, size_t n);

/* "%q%" with \ % _ in q escaped for LIKE/ILIKE (default escape character \). */
char *ev_like_pattern(const char *q);

#endif
