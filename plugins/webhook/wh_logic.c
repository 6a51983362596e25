/* wh_logic.c — pure logic of the webhook plugin: Standard Webhooks signatures (HMAC-SHA256
 * and base64 from libsodium), address classification against request forgery, URL
 * checks (libcurl's URL parser), the retry schedule and event-type patterns. */
#include "wh_logic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <curl/curl.h>
#include <sodium.h>

/* ---- secrets and signatures ---- */

void wh_secret_new(char out[WH_SECRET_SIZE])
{
	unsigned char raw[WH_SECRET_BYTES];
	randombytes_buf(raw, sizeof(raw));
	memcpy(out, WH_SECRET_PREFIX, 6);
	sodium_bin2base64(out + 6, WH_SECRET_SIZE - 6, raw, sizeof(raw),
	                  sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(raw, sizeof(raw));
}

int wh_secret_key(const char *secret, unsigned char key[WH_KEY_MAX])
{
	if (!secret)
		return -1;
	if (strncmp(secret, WH_SECRET_PREFIX, 6) == 0)
		secret += 6;
	size_t len = strlen(secret), n = 0;
	if (len == 0 || len > 4 * ((WH_KEY_MAX + 2) / 3))
		return -1;
	const int variant = strchr(secret, '=') ? sodium_base64_VARIANT_ORIGINAL
	                                        : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
	if (sodium_base642bin(key, WH_KEY_MAX, secret, len, NULL, &n, NULL, variant) != 0 || n < 16)
		return -1;
	return (int)n;
}

int wh_sign(const char *secret, const char *msg_id, long long timestamp, const void *body,
            size_t body_len, char out[WH_SIG_SIZE])
{
	unsigned char key[WH_KEY_MAX], mac[crypto_auth_hmacsha256_BYTES];
	int klen = wh_secret_key(secret, key);
	if (klen < 0 || !msg_id)
		return -1;
	char ts[32];
	int tslen = snprintf(ts, sizeof(ts), ".%lld.", timestamp);
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, key, (size_t)klen);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg_id, strlen(msg_id));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, (size_t)tslen);
	crypto_auth_hmacsha256_update(&st, body, body_len);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_memzero(key, sizeof(key));
	sodium_memzero(&st, sizeof(st));
	memcpy(out, "v1,", 3);
	sodium_bin2base64(out + 3, WH_SIG_SIZE - 3, mac, sizeof(mac),
	                  sodium_base64_VARIANT_ORIGINAL);
	return 0;
}

int wh_signature_header(const char *secret, const char *previous, const char *msg_id,
                        long long timestamp, const void *body, size_t body_len,
                        char out[WH_SIG_HEADER])
{
	char one[WH_SIG_SIZE], two[WH_SIG_SIZE];
	if (wh_sign(secret, msg_id, timestamp, body, body_len, one) < 0)
		return -1;
	if (previous && wh_sign(previous, msg_id, timestamp, body, body_len, two) == 0)
		snprintf(out, WH_SIG_HEADER, "%s %s", one, two);
	else
		snprintf(out, WH_SIG_HEADER, "%s", one);
	return 0;
}

/* ---- addresses ---- */

enum wh_addr_kind wh_addr_classify_v4(const unsigned char b[4])
{
	uint32_t a = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
	static const struct {
		uint32_t net, mask;
		enum wh_addr_kind kind;
	} ranges[] = {
		{ 0x00000000, 0xff000000, WH_ADDR_RESERVED },   /* 0/8 "this network" */
		{ 0x0a000000, 0xff000000, WH_ADDR_PRIVATE },    /* 10/8 */
		{ 0x646464c8, 0xffffffff, WH_ADDR_LINK_LOCAL }, /* 100.100.100.200 metadata */
		{ 0x64400000, 0xffc00000, WH_ADDR_PRIVATE },    /* 100.64/10 shared (CGNAT) */
		{ 0x7f000000, 0xff000000, WH_ADDR_LOOPBACK },   /* 127/8 */
		{ 0xa9fe0000, 0xffff0000, WH_ADDR_LINK_LOCAL }, /* 169.254/16, metadata */
		{ 0xac100000, 0xfff00000, WH_ADDR_PRIVATE },    /* 172.16/12 */
		{ 0xc0000000, 0xffffff00, WH_ADDR_RESERVED }, /* 192.0.0/24 protocol assignments */
		{ 0xc0000200, 0xffffff00, WH_ADDR_RESERVED }, /* 192.0.2/24 documentation */
		{ 0xc0586300, 0xffffff00, WH_ADDR_RESERVED }, /* 192.88.99/24 6to4 relays */
		{ 0xc0a80000, 0xffff0000, WH_ADDR_PRIVATE },  /* 192.168/16 */
		{ 0xc6120000, 0xfffe0000, WH_ADDR_PRIVATE },  /* 198.18/15 benchmarking */
		{ 0xc6336400, 0xffffff00, WH_ADDR_RESERVED }, /* 198.51.100/24 documentation */
		{ 0xcb007100, 0xffffff00, WH_ADDR_RESERVED }, /* 203.0.113/24 documentation */
		{ 0xe0000000, 0xf0000000, WH_ADDR_RESERVED }, /* 224/4 multicast */
		{ 0xf0000000, 0xf0000000, WH_ADDR_RESERVED }, /* 240/4 and broadcast */
	};
	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
		if ((a & ranges[i].mask) == ranges[i].net)
			return ranges[i].kind;
	return WH_ADDR_PUBLIC;
}

static bool all_zero(const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

enum wh_addr_kind wh_addr_classify_v6(const unsigned char b[16])
{
	static const unsigned char aws_metadata[16] = { 0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0,    0,
		                                        0,    0,    0,    0,    0, 0, 0x02, 0x54 };
	if (all_zero(b, 15))
		return b[15] == 1 ? WH_ADDR_LOOPBACK : WH_ADDR_RESERVED; /* ::1, :: */
	if (all_zero(b, 10) && b[10] == 0xff && b[11] == 0xff)
		return wh_addr_classify_v4(b + 12); /* ::ffff:a.b.c.d, IPv4-mapped */
	if (all_zero(b, 12))
		return WH_ADDR_RESERVED; /* ::a.b.c.d, deprecated IPv4-compatible */
	if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b) {
		if (all_zero(b + 4, 8))
			return wh_addr_classify_v4(b + 12); /* 64:ff9b::/96 NAT64 */
		if (b[4] == 0x00 && b[5] == 0x01)
			return WH_ADDR_PRIVATE; /* 64:ff9b:1::/48 local NAT64 */
	}
	if (b[0] == 0x20 && b[1] == 0x02)
		return wh_addr_classify_v4(b + 2); /* 2002::/16 6to4 */
	if (b[0] == 0x20 && b[1] == 0x01 && b[2] < 0x02)
		return WH_ADDR_RESERVED; /* 2001::/23 protocol assignments, Teredo */
	if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
		return WH_ADDR_RESERVED; /* 2001:db8::/32 documentation */
	if (memcmp(b, aws_metadata, 16) == 0)
		return WH_ADDR_LINK_LOCAL; /* fd00:ec2::254, cloud metadata */
	if ((b[0] & 0xfe) == 0xfc)
		return WH_ADDR_PRIVATE; /* fc00::/7 unique local */
	if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
		return WH_ADDR_LINK_LOCAL; /* fe80::/10 */
	if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
		return WH_ADDR_PRIVATE; /* fec0::/10, deprecated site-local */
	if ((b[0] & 0xe0) != 0x20)
		return WH_ADDR_RESERVED; /* outside 2000::/3: multicast ff00::/8, 100::/64, … */
	return WH_ADDR_PUBLIC;
}

enum wh_addr_kind wh_addr_classify(const struct sockaddr *sa)
{
	if (!sa)
		return WH_ADDR_UNSUPPORTED;
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in in;
		memcpy(&in, sa, sizeof(in));
		return wh_addr_classify_v4((const unsigned char *)&in.sin_addr);
	}
	if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 in6;
		memcpy(&in6, sa, sizeof(in6));
		return wh_addr_classify_v6(in6.sin6_addr.s6_addr);
	}
	return WH_ADDR_UNSUPPORTED;
}

bool wh_addr_allowed(enum wh_addr_kind kind, const struct wh_policy *policy)
{
	switch (kind) {
	case WH_ADDR_PUBLIC:
		return true;
	case WH_ADDR_LOOPBACK:
		return policy && policy->allow_loopback;
	case WH_ADDR_PRIVATE:
		return policy && policy->allow_private;
	default:
		return false;
	}
}

const char *wh_addr_refusal(enum wh_addr_kind kind)
{
	switch (kind) {
	case WH_ADDR_PUBLIC:
		return "a public address";
	case WH_ADDR_LOOPBACK:
		return "a loopback address, allowed only with the webhook setting allow_loopback "
		       "(or SPEARHEAD_WEBHOOK_ALLOW_LOOPBACK=1)";
	case WH_ADDR_PRIVATE:
		return "a private network address, allowed only with the webhook setting "
		       "allow_private";
	case WH_ADDR_LINK_LOCAL:
		return "a link-local or cloud metadata address, never allowed";
	case WH_ADDR_RESERVED:
		return "an unspecified, multicast or reserved address, never allowed";
	default:
		return "not an IPv4 or IPv6 address";
	}
}

/* ---- URLs ---- */

/* Classifies a host that is a literal address: IPv4 (any form inet_aton takes, which
 * is also what resolvers accept) or bracketed IPv6. Returns false for names. */
static bool literal_kind(const char *host, enum wh_addr_kind *kind)
{
	struct in_addr a4;
	if (inet_aton(host, &a4)) {
		*kind = wh_addr_classify_v4((const unsigned char *)&a4);
		return true;
	}
	size_t len = strlen(host);
	if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
		char buf[64];
		size_t n = len - 2;
		if (n >= sizeof(buf)) {
			*kind = WH_ADDR_UNSUPPORTED;
			return true;
		}
		memcpy(buf, host + 1, n);
		buf[n] = '\0';
		char *zone = strchr(buf, '%');
		if (zone)
			*zone = '\0';
		struct in6_addr a6;
		if (inet_pton(AF_INET6, buf, &a6) != 1) {
			*kind = WH_ADDR_UNSUPPORTED;
			return true;
		}
		*kind = wh_addr_classify_v6(a6.s6_addr);
		/* A zone id only makes sense for link-local targets. */
		if (zone && *kind == WH_ADDR_PUBLIC)
			*kind = WH_ADDR_RESERVED;
		return true;
	}
	return false;
}

/* Names that always mean a refused address, whatever DNS says. */
static enum wh_addr_kind name_kind(const char *host)
{
	char h[256];
	size_t n = strlen(host);
	if (n == 0 || n >= sizeof(h))
		return WH_ADDR_PUBLIC;
	memcpy(h, host, n + 1);
	if (h[n - 1] == '.')
		h[--n] = '\0';
	if (strcasecmp(h, "localhost") == 0 ||
	    (n > 10 && strcasecmp(h + n - 10, ".localhost") == 0))
		return WH_ADDR_LOOPBACK;
	if (strcasecmp(h, "metadata.google.internal") == 0 || strcasecmp(h, "metadata") == 0)
		return WH_ADDR_LINK_LOCAL;
	return WH_ADDR_PUBLIC;
}

char *wh_url_check(const char *url, const struct wh_policy *policy, char *err, size_t errsize)
{
	size_t len = url ? strlen(url) : 0;
	if (len == 0 || len > 2000) {
		snprintf(err, errsize, "must be an http:// or https:// URL of at most 2000 bytes");
		return NULL;
	}
	if (strncasecmp(url, "https://", 8) != 0 && strncasecmp(url, "http://", 7) != 0) {
		snprintf(err, errsize, "must start with https:// or http://");
		return NULL;
	}
	CURLU *u = curl_url();
	char *host = NULL, *norm = NULL, *out = NULL;
	if (!u) {
		snprintf(err, errsize, "cannot be checked now");
		return NULL;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host) {
		snprintf(err, errsize, "is not a valid URL with a host");
		goto done;
	}
	enum wh_addr_kind kind;
	if (!literal_kind(host, &kind))
		kind = name_kind(host);
	if (!wh_addr_allowed(kind, policy)) {
		snprintf(err, errsize, "points to %s", wh_addr_refusal(kind));
		goto done;
	}
	if (curl_url_get(u, CURLUPART_URL, &norm, 0) != CURLUE_OK || !norm || strlen(norm) > 2000) {
		snprintf(err, errsize, "is not a valid URL");
		goto done;
	}
	out = strdup(norm);
	if (!out)
		snprintf(err, errsize, "cannot be stored now");
done:
	curl_free(host);
	curl_free(norm);
	curl_url_cleanup(u);
	return out;
}

/* ---- schedule ---- */

int wh_schedule_parse(const char *text, unsigned delays[WH_SCHEDULE_MAX], char *err, size_t errsize)
{
	int n = 0;
	const char *p = text;
	if (!p)
		goto bad;
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p < '0' || *p > '9')
			goto bad;
		unsigned long v = 0;
		while (*p >= '0' && *p <= '9') {
			v = v * 10 + (unsigned long)(*p - '0');
			if (v > WH_DELAY_MAX) {
				snprintf(err, errsize, "each delay is 1 to %d seconds",
				         WH_DELAY_MAX);
				return -1;
			}
			p++;
		}
		if (v < 1) {
			snprintf(err, errsize, "each delay is 1 to %d seconds", WH_DELAY_MAX);
			return -1;
		}
		if (n == WH_SCHEDULE_MAX) {
			snprintf(err, errsize, "at most %d delays", WH_SCHEDULE_MAX);
			return -1;
		}
		delays[n++] = (unsigned)v;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			return n;
		if (*p != ',')
			goto bad;
		p++;
	}
bad:
	snprintf(err, errsize, "must be delays in seconds separated by commas, e.g. \"5,30,60\"");
	return -1;
}

unsigned wh_schedule_delay(const unsigned *delays, int ndelays, int attempt, uint32_t rnd)
{
	if (!delays || ndelays < 1)
		return 1;
	int i = attempt < 1 ? 0 : attempt - 1;
	if (i >= ndelays)
		i = ndelays - 1;
	if (rnd > 10000)
		rnd = 10000;
	double d = delays[i] * (0.9 + 0.2 * (double)rnd / 10000.0);
	unsigned s = (unsigned)(d + 0.5);
	return s ? s : 1;
}

/* ---- event types ---- */

bool wh_pattern_valid(const char *p)
{
	if (!p)
		return false;
	if (strcmp(p, "*") == 0)
		return true;
	size_t n = strlen(p);
	if (n == 0 || n > WH_PATTERN_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		bool star_end = c == '*' && i == n - 1 && i > 1 && p[i - 1] == '.';
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		      star_end))
			return false;
	}
	return true;
}

bool wh_pattern_matches(const char *pattern, const char *type)
{
	if (!pattern || !type)
		return false;
	if (strcmp(pattern, "*") == 0)
		return true;
	size_t n = strlen(pattern);
	if (n >= 2 && pattern[n - 1] == '*' && pattern[n - 2] == '.')
		return strncmp(type, pattern, n - 1) == 0;
	return strcmp(pattern, type) == 0;
}

/* ---- identifiers ---- */

bool wh_is_uuid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		             (c >= 'A' && c <= 'F'))) {
			return false;
		}
	}
	return true;
}
