/* util.h — small helpers shared by the core: time, strings, allocation checks. */
#ifndef SP_CORE_UTIL_H
#define SP_CORE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Monotonic clock in microseconds. */
uint64_t sp_now_us(void);
/* Wall clock as RFC 3339 UTC with milliseconds into buf (>= 32 bytes). */
void sp_rfc3339_now(char *buf, size_t len);
/* true when s is non-empty and only [a-z0-9_]. */
bool sp_is_ident(const char *s);
/* Parses a whole decimal integer in [min,max]; returns 0 or -1. */
int sp_parse_long(const char *s, long min, long max, long *out);
/* Copies src into dst (size > 0), truncating, always terminated; returns the length.
 * Cheaper than snprintf("%s") on hot paths. */
size_t sp_strlcpy(char *dst, const char *src, size_t size);
/* strdup that aborts on out-of-memory (the core treats OOM as fatal). */
char *sp_strdup(const char *s);
void *sp_calloc(size_t n, size_t size);
/* Random hex id of 2*nbytes characters into buf (libsodium). */
void sp_random_hex(char *buf, size_t nbytes);

#endif
