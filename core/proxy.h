/* proxy.h — the client's address behind trusted reverse proxies (X-Forwarded-For). */
#ifndef SP_CORE_PROXY_H
#define SP_CORE_PROXY_H

#include <stdbool.h>
#include <stddef.h>

struct sp_proxies;

/* Parses "10.0.0.0/8, 127.0.0.1, ::1" (addresses or CIDR ranges, IPv4 or IPv6, separated
 * by commas or spaces). Returns a new list (empty for "") or NULL with a message in err. */
struct sp_proxies *sp_proxies_parse(const char *list, char *err, size_t errlen);
void sp_proxies_free(struct sp_proxies *proxies);
bool sp_proxies_empty(const struct sp_proxies *proxies);
/* Whether addr (text) is one of the trusted proxies. */
bool sp_proxies_trust(const struct sp_proxies *proxies, const char *addr);
/* The client's address: peer, unless peer is a trusted proxy and forwarded_for (the
 * X-Forwarded-For value, may be NULL) names others: then the rightmost address in it
 * that is not a trusted proxy (the left part is whatever the client claimed). Writes
 * into out (at least 64 bytes). */
void sp_proxies_client(const struct sp_proxies *proxies, const char *peer,
                       const char *forwarded_for, char *out, size_t outlen);

#endif
