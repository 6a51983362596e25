/* test_proxy.c — trusted proxies: parsing, ranges, and which X-Forwarded-For hop is
 * the client. */
#include "proxy.h"
#include "tap.h"

#include <string.h>

static const char *client(const struct sp_proxies *p, const char *peer, const char *xff)
{
	static char out[64];
	sp_proxies_client(p, peer, xff, out, sizeof(out));
	return out;
}

int main(void)
{
	char err[160];
	struct sp_proxies *none = sp_proxies_parse("", err, sizeof(err));
	ok(none && sp_proxies_empty(none), "an empty list parses and trusts nobody");
	is_str(client(none, "10.0.0.5", "1.2.3.4"), "10.0.0.5",
	       "without trusted proxies X-Forwarded-For is ignored");

	struct sp_proxies *p =
	    sp_proxies_parse("127.0.0.1, 10.0.0.0/8,fd00::/8  192.168.1.0/25", err, sizeof(err));
	ok(p && !sp_proxies_empty(p), "a list of addresses and ranges parses");
	ok(sp_proxies_trust(p, "127.0.0.1"), "a single address");
	ok(!sp_proxies_trust(p, "127.0.0.2"), "its neighbour is not trusted");
	ok(sp_proxies_trust(p, "10.200.3.4"), "inside a /8");
	ok(!sp_proxies_trust(p, "11.0.0.1"), "outside it");
	ok(sp_proxies_trust(p, "192.168.1.127"), "the top of a /25");
	ok(!sp_proxies_trust(p, "192.168.1.128"), "one past it");
	ok(sp_proxies_trust(p, "fd12:3456::1"), "an IPv6 range");
	ok(!sp_proxies_trust(p, "fe80::1"), "outside the IPv6 range");
	ok(sp_proxies_trust(p, "::ffff:10.1.2.3"), "an IPv4-mapped IPv6 peer reads as IPv4");
	ok(!sp_proxies_trust(p, "not-an-address"), "garbage is never trusted");

	is_str(client(p, "203.0.113.9", "1.2.3.4"), "203.0.113.9",
	       "a peer that is not a proxy is the client, whatever it sends");
	is_str(client(p, "127.0.0.1", NULL), "127.0.0.1", "a proxy without the header");
	is_str(client(p, "127.0.0.1", "198.51.100.7"), "198.51.100.7",
	       "behind one proxy: the forwarded address");
	is_str(client(p, "127.0.0.1", "6.6.6.6, 198.51.100.7, 10.1.1.1"), "198.51.100.7",
	       "behind two proxies: the rightmost untrusted hop, not what the client claimed");
	is_str(client(p, "127.0.0.1", " 198.51.100.7 ,10.1.1.1 "), "198.51.100.7",
	       "spaces around hops");
	is_str(client(p, "127.0.0.1", "10.1.1.2, 10.1.1.1"), "10.1.1.2",
	       "every hop trusted: the leftmost");
	is_str(client(p, "127.0.0.1", "garbage, 10.1.1.1"), "10.1.1.1",
	       "a hop that is not an address stops the walk at the last trusted one");
	is_str(client(p, "127.0.0.1", "198.51.100.7,"), "127.0.0.1", "an empty hop: the peer");
	is_str(client(p, "127.0.0.1", "2001:db8::1"), "2001:db8::1", "an IPv6 client");

	ok(!sp_proxies_parse("10.0.0.0/33", err, sizeof(err)),
	   "a prefix longer than 32 is refused");
	ok(!sp_proxies_parse("10.0.0.1, example.org", err, sizeof(err)), "a host name is refused");
	ok(strstr(err, "example.org") != NULL, "and the error names it");
	ok(!sp_proxies_parse("::1/129", err, sizeof(err)), "a prefix longer than 128 is refused");
	ok(!sp_proxies_parse("10.0.0.0/x", err, sizeof(err)), "a prefix that is no number");

	sp_proxies_free(none);
	sp_proxies_free(p);
	return tap_done();
}
