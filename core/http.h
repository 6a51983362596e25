/* http.h — HTTP-independent helpers: JSON body parsing with limits, RFC 9457 problem
 * documents, status phrases. Pure functions, unit-tested without a server. */
#ifndef SP_CORE_HTTP_H
#define SP_CORE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#define SP_PROBLEM_CONTENT_TYPE "application/problem+json"

/* Parses a request body. Rejects duplicate keys, \u0000, nesting deeper than max_depth,
 * trailing garbage and non-UTF-8. Returns a new reference, or NULL with a human
 * message in err. */
json_t *sp_json_parse_body(const char *buf, size_t len, int max_depth, char *err, size_t errlen);
/* Deepest nesting of arrays/objects in JSON text (strings are skipped). */
int sp_json_depth(const char *buf, size_t len);
/* true when the Content-Type names JSON (application/json or +json; any parameters). */
bool sp_content_type_is_json(const char *content_type);

/* A problem document (new reference): type, title, status, detail, and errors (stolen,
 * may be NULL) — an object mapping field names to messages. */
json_t *sp_problem_new(int status, const char *title, const char *detail, json_t *errors);
/* The reason phrase for a status ("Not Found"); "Unknown" otherwise. */
const char *sp_status_phrase(int status);
/* The problem type URI used for a status. */
const char *sp_problem_type(int status);

#endif
