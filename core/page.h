/* page.h — cursor pagination: opaque cursors over a keyset position, and the limit
 * and cursor query parameters of list routes. */
#ifndef SP_CORE_PAGE_H
#define SP_CORE_PAGE_H

#include <stdbool.h>
#include <jansson.h>

struct sp_request;

/* An opaque cursor (new string, free()) for a keyset position: an array of strings. */
char *sp_cursor_encode(const json_t *position);
/* The position (new reference), or NULL when the cursor is not one of ours. */
json_t *sp_cursor_decode(const char *cursor, size_t nfields);
/* Reads ?limit= (default def, 1..max) and ?cursor= (nfields strings). Answers 400 and
 * returns false on bad values. *position is a new reference or NULL (first page). */
bool sp_page_params(struct sp_request *req, int def, int max, size_t nfields, int *limit,
                    json_t **position);

#endif
