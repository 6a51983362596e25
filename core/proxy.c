/* proxy.c — behind a load balancer every connection comes from the balancer: the
 * client's address (login throttling, the access log) is read from X-Forwarded-For,
 * but only as far as the hops in it are proxies we trust; anything further left was
 * written by the client and could be anything. */
#include "proxy.h"
#include "util.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct range {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	int prefix; /* bits that must match */
};

struct sp_proxies {
	size_t n;
	struct range *ranges;
};

/* Parses an address into a family and 16 bytes; an IPv4-mapped IPv6 address
 * ("::ffff:10.0.0.1") reads as IPv4. */
static bool parse_addr(const char *s, int *family, unsigned char *out)
{
	memset(out, 0, 16);
	if (inet_pton(AF_INET, s, out) == 1) {
		*family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, s, out) == 1) {
		static const unsigned char mapped[12] = {
			0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
		};
		if (memcmp(out, mapped, 12) == 0) {
			memmove(out, out + 12, 4);
			memset(out + 4, 0, 12);
			*family = AF_INET;
		} else {
			*family = AF_INET6;
		}
		return true;
	}
	return false;
}

static bool range_contains(const struct range *r, int family, const unsigned char *addr)
{
	if (r->family != family)
		return false;
	int full = r->prefix / 8, rest = r->prefix % 8;
	if (memcmp(r->addr, addr, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (r->addr[full] & mask) == (addr[full] & mask);
}

struct sp_proxies *sp_proxies_parse(const char *list, char *err, size_t errlen)
{
	struct sp_proxies *p = sp_calloc(1, sizeof(*p));
	char *copy = sp_strdup(list ? list : "");
	/* Every address takes at least two characters and a separator. */
	p->ranges = sp_calloc(strlen(copy) / 2 + 1, sizeof(*p->ranges));
	char *save = NULL;
	for (char *tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		struct range r = { 0 };
		char *slash = strchr(tok, '/');
		if (slash)
			*slash = '\0';
		if (!parse_addr(tok, &r.family, r.addr)) {
			snprintf(err, errlen, "'%s' is not an IP address", tok);
			goto fail;
		}
		int bits = r.family == AF_INET ? 32 : 128;
		r.prefix = bits;
		if (slash) {
			long v;
			if (sp_parse_long(slash + 1, 0, bits, &v) < 0) {
				snprintf(err, errlen, "'/%s' is not a prefix length in [0, %d]",
				         slash + 1, bits);
				goto fail;
			}
			r.prefix = (int)v;
		}
		p->ranges[p->n++] = r;
	}
	free(copy);
	return p;
fail:
	free(copy);
	sp_proxies_free(p);
	return NULL;
}

void sp_proxies_free(struct sp_proxies *proxies)
{
	if (!proxies)
		return;
	free(proxies->ranges);
	free(proxies);
}

bool sp_proxies_empty(const struct sp_proxies *proxies)
{
	return !proxies || proxies->n == 0;
}

bool sp_proxies_trust(const struct sp_proxies *proxies, const char *addr)
{
	int family;
	unsigned char a[16];
	if (sp_proxies_empty(proxies) || !addr || !parse_addr(addr, &family, a))
		return false;
	for (size_t i = 0; i < proxies->n; i++)
		if (range_contains(&proxies->ranges[i], family, a))
			return true;
	return false;
}

void sp_proxies_client(const struct sp_proxies *proxies, const char *peer,
                       const char *forwarded_for, char *out, size_t outlen)
{
	sp_strlcpy(out, peer, outlen);
	if (!forwarded_for || !sp_proxies_trust(proxies, peer))
		return;
	/* Walk the hops from the right: each one trusted vouches for the one before it. */
	const char *end = forwarded_for + strlen(forwarded_for);
	while (end > forwarded_for) {
		const char *start = end;
		while (start > forwarded_for && start[-1] != ',')
			start--;
		const char *a = start, *b = end;
		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
			b--;
		char hop[64];
		size_t len = (size_t)(b - a);
		int family;
		unsigned char bytes[16];
		if (len == 0 || len >= sizeof(hop))
			return; /* garbage: keep the last address we could trust */
		memcpy(hop, a, len);
		hop[len] = '\0';
		if (!parse_addr(hop, &family, bytes))
			return;
		sp_strlcpy(out, hop, outlen);
		if (!sp_proxies_trust(proxies, hop))
			return;
		end = start > forwarded_for ? start - 1 : start;
	}
}
