/* events_validate.h — pure checks of the events plugin's input: event documents, questions,
 * registration bodies and answers, RFC 3339 times, ids and keys. No I/O and no core
 * calls, so the unit tests exercise them directly.
 *
 * Errors are collected into a JSON object field → message (borrowed from the caller,
 * first message per field wins), the shape of a 422 problem's "errors". */
#ifndef EV_VALIDATE_H
#define EV_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define EV_TITLE_MAX       200
#define EV_DESCRIPTION_MAX 20000
#define EV_VENUE_MAX       500
#define EV_URL_MAX         2000
#define EV_CAPACITY_MAX    1000000
#define EV_TOPICS_MAX      50
#define EV_CATEGORIES_MAX  50
#define EV_CATEGORY_MAX    100
#define EV_QUESTIONS_MAX   50
#define EV_OPTIONS_MAX     100
#define EV_OPTION_MAX      200
#define EV_LABEL_MAX       500
#define EV_ANSWER_MAX      2000
#define EV_NAME_MAX        200
#define EV_SETTINGS_MAX    16384 /* bytes of serialised per-event settings */
#define EV_KEY_MAX         200   /* Idempotency-Key */
#define EV_CODE_LEN        10    /* check-in codes: 10 hexadecimal digits */

/* Adds message under field unless the field already has one. */
void ev_error(json_t *errors, const char *field, const char *message);

/* Code points of a UTF-8 string (jansson strings are valid UTF-8). */
size_t ev_utf8_len(const char *s);

/* RFC 3339 date-time ("2026-05-04T09:00:00Z", "2026-05-04T09:00:00.5+02:00"): true
 * with *epoch_us (microseconds since 1970 UTC) set; false for anything else,
 * including impossible dates and a missing offset. */
bool ev_parse_rfc3339(const char *s, int64_t *epoch_us);

bool ev_valid_uuid(const char *s);
/* One @, something on each side, no spaces or control characters, at most 254. */
bool ev_valid_email(const char *s);
/* http:// or https:// followed by a host, no spaces or control characters. */
bool ev_valid_url(const char *s);
/* A topic slug: [a-z0-9]+(-[a-z0-9]+)*, at most 80. */
bool ev_valid_slug(const char *s);
/* An IANA time zone name as spelled in the tz database ("Europe/Paris", "UTC"):
 * letters, digits, '/', '_', '-', '+', at most 64; the database checks it exists. */
bool ev_valid_timezone_name(const char *s);
/* Idempotency-Key: 1..EV_KEY_MAX visible ASCII characters. */
bool ev_valid_idempotency_key(const char *s);

/* Normalises a typed or scanned check-in code into out (EV_CODE_LEN + 1 bytes):
 * spaces and '-' dropped, upper case. False unless EV_CODE_LEN hex digits remain. */
bool ev_normalize_code(const char *in, char *out);

/* Checks a complete event document (a creation body, or the current event with a
 * PATCH applied). Returns a new object holding only the writable fields, normalised
 * (defaults filled in: description "", timezone "UTC", topics/categories/questions [],
 * settings {}, status "draft"), or NULL with errors filled in. creating: status may be
 * "draft" or "published"; otherwise status is not checked here. */
json_t *ev_check_event(const json_t *doc, bool creating, json_t *errors);

/* Checks a questions array; messages go under "questions" (e.g. "questions[2].options:
 * …"). True when valid. */
bool ev_check_questions(const json_t *questions, json_t *errors);

/* What a registration body says, borrowed from it. */
struct ev_registration_input {
	const char *category;       /* NULL when absent or null */
	const json_t *answers;      /* an object, or NULL when absent */
	const char *attendee_name;  /* NULL when absent */
	const char *attendee_email; /* NULL when no attendee was given */
};

/* Checks the shape of POST /v1/events/{id}/registrations: an object with optional
 * category (string or null), answers (object) and attendee {name, email}. */
bool ev_check_registration(const json_t *body, struct ev_registration_input *in, json_t *errors);

/* Checks answers (an object question id → value, may be NULL) against questions;
 * errors under "answers.<id>" (or "answers" for the object itself). Returns the answers
 * to store (new reference: only known, non-empty answers) or NULL on errors. */
json_t *ev_check_answers(const json_t *questions, const json_t *answers, json_t *errors);

/* Whether category (may be NULL) is acceptable for an event whose category names are
 * the strings of names (an array): required when there are names, one of them. On
 * failure adds an error under "category". */
bool ev_check_category(const json_t *names, const char *category, json_t *errors);

#endif
