/* sse.h — pure helpers of the feed plugin: Server-Sent Events framing, opaque list
 * cursors, and the checks of ids and sequence numbers that come from clients. */
#ifndef SP_FEED_SSE_H
#define SP_FEED_SSE_H

#include <stdbool.h>
#include <stddef.h>

/* One SSE event as a new string (free()): "id: ID\nevent: EVENT\ndata: ...\n\n", where
 * id and event (each may be NULL) must not hold line breaks (they are dropped) and data
 * (may be NULL) is split into one "data:" line per line ("\n", "\r\n" or "\r"). NULL
 * when out of memory. */
char *feed_sse_event(const char *id, const char *event, const char *data);
/* A comment line block ": TEXT\n\n" (line breaks in text become spaces); new string. */
char *feed_sse_comment(const char *text);

/* A sequence number written by a client (Last-Event-ID, cursors): decimal digits only,
 * at most 18 of them (so it fits PostgreSQL's bigint). 0 on success, -1 otherwise. */
int feed_parse_seq(const char *s, long long *out);

/* The opaque cursor of a list position: base64url (no padding) of the JSON array
 * ["<seq>"], the same shape as the core's cursors. New string (free()), NULL when out
 * of memory. */
char *feed_cursor_encode(long long seq);
/* 0 and *seq for a cursor made by feed_cursor_encode, -1 for anything else. */
int feed_cursor_decode(const char *cursor, long long *seq);

/* base64url without padding, the cursor's alphabet: out must hold
 * FEED_B64_LEN(len) bytes (terminating NUL included). Returns the length written. */
#define FEED_B64_LEN(n) (((n) + 2) / 3 * 4 + 1)
size_t feed_b64url_encode(const unsigned char *in, size_t len, char *out);
/* Decodes into out (room for cap bytes); -1 on a bad character, a bad length or too
 * little room, else the number of bytes. */
long feed_b64url_decode(const char *in, unsigned char *out, size_t cap);

/* A UUID in its canonical text form (8-4-4-4-12 hex digits, any case). */
bool feed_valid_uuid(const char *s);

#endif
