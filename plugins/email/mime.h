/* mime.h — pure e-mail formatting for the email plugin: a growing buffer, header
 * fields (RFC 5322, with RFC 2047 encoded words for non-ASCII text), quoted-printable
 * bodies (RFC 2045), dates, and the assembly of a multipart/alternative message. No
 * I/O: unit-tested by tests/unit/test_email_mime.c. Every line produced ends in CRLF. */
#ifndef SP_EMAIL_MIME_H
#define SP_EMAIL_MIME_H

#include <stdbool.h>
#include <stddef.h>

/* A growing string. After an allocation failure it stays failed: em_buf_take gives
 * NULL then. Start with struct em_buf b = { 0 }. */
struct em_buf {
	char *p;
	size_t len, cap;
	bool failed;
};
void em_buf_add(struct em_buf *b, const char *s, size_t n);
void em_buf_str(struct em_buf *b, const char *s);
/* The text (new string, free()) or NULL after a failure; b is empty afterwards. */
char *em_buf_take(struct em_buf *b);
void em_buf_free(struct em_buf *b);

/* Printable ASCII only (no control characters, nothing above 0x7e). */
bool em_is_plain_ascii(const char *s);

/* An unstructured header field "Name: value\r\n" (Subject). Line breaks and other
 * control characters in value become spaces. Plain ASCII is folded at spaces to keep
 * lines within 78 characters; anything else (or text that could be mistaken for an
 * encoded word) is written as UTF-8 "B" encoded words of at most 75 characters, never
 * splitting a UTF-8 sequence, one per folded line. */
void em_header_text(struct em_buf *b, const char *name, const char *value);
/* An address field "Name: display <addr>\r\n" (From, To); display (may be NULL or
 * empty) becomes a quoted string, or encoded words when it is not plain ASCII. addr
 * must have passed em_valid_address. */
void em_header_address(struct em_buf *b, const char *name, const char *display, const char *addr);

/* A plain addr-spec local@domain: printable ASCII, no spaces, no <>()[]\,;:" and
 * exactly one @ with something on both sides; at most 254 characters. */
bool em_valid_address(const char *addr);
/* The domain of a valid address (borrowed from addr). */
const char *em_address_domain(const char *addr);

/* RFC 5322 date of a Unix time, in UTC: "Thu, 01 Jan 1970 00:00:00 +0000". out needs
 * 32 bytes. */
void em_date(char *out, size_t len, long long unix_time);

/* Appends text as quoted-printable: input line breaks ("\n" or "\r\n") become CRLF,
 * lines are at most 76 characters (soft breaks "=\r\n"), "=", bytes outside printable
 * ASCII, whitespace at the end of a line and a "." at the start of a line are encoded.
 * Ends with a CRLF. */
void em_quoted_printable(struct em_buf *b, const char *text);

/* A whole message. Strings are borrowed; addresses must be valid; message_id without
 * angle brackets; list_unsubscribe the field's value ("<https://…>, <mailto:…>") or
 * NULL for essential mail; language (may be NULL) e.g. "en". */
struct em_message {
	const char *from_name, *from_addr;
	const char *to_name, *to_addr;
	const char *subject;
	const char *message_id;
	long long date; /* Unix time */
	const char *list_unsubscribe;
	const char *language;
	const char *event_id, *event_type; /* X-Spearhead-Event-Id and -Type, may be NULL */
	const char *text, *html;
	const char *boundary; /* must not occur in quoted-printable text: start it with "=_" */
};
/* The message (new string, free()), headers and body with CRLF line ends, or NULL
 * when out of memory. */
char *em_message_build(const struct em_message *m);

#endif
