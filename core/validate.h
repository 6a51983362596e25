/* validate.h — checks a JSON request body field by field, collecting one message per
 * field, so a client gets every problem at once in a 422 problem document. */
#ifndef SP_CORE_VALIDATE_H
#define SP_CORE_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

struct sp_request;

struct sp_check {
	const json_t *body; /* borrowed */
	json_t *errors;     /* owned: field → message */
};

void sp_check_init(struct sp_check *c, const json_t *body);
void sp_check_clear(struct sp_check *c);
/* Adds an error (first one per field wins). */
void sp_check_fail(struct sp_check *c, const char *field, const char *message);
/* Every key must be in allowed (NULL-terminated); others get "unknown field". */
void sp_check_known(struct sp_check *c, const char *const *allowed);
/* A string of min..max characters (UTF-8 code points); NULL when absent or bad.
 * Borrowed from the body. */
const char *sp_check_string(struct sp_check *c, const char *field, bool required, size_t min,
                            size_t max);
/* One of values (NULL-terminated). */
const char *sp_check_enum(struct sp_check *c, const char *field, bool required,
                          const char *const *values);
/* An integer in [min, max]; *present false when absent. */
long long sp_check_int(struct sp_check *c, const char *field, bool required, long long min,
                       long long max, bool *present);
/* ISO 3166-1 alpha-2, upper case ("FR"). */
const char *sp_check_country(struct sp_check *c, const char *field, bool required);
/* An e-mail address (one @, no spaces, ≤ 254). */
const char *sp_check_email(struct sp_check *c, const char *field, bool required);
/* An http(s) URL. */
const char *sp_check_url(struct sp_check *c, const char *field, bool required);
/* An array (borrowed) of at most max items; NULL when absent or bad. */
json_t *sp_check_array(struct sp_check *c, const char *field, bool required, size_t max);
bool sp_check_ok(const struct sp_check *c);
/* Answers 422 with the collected errors (taken from c). */
void sp_check_reply(struct sp_check *c, struct sp_request *req);

/* Helpers usable without a body. */
bool sp_valid_uuid(const char *s);
bool sp_valid_email(const char *s);

#endif
