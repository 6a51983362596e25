/* test_webhook_addr.c — request-forgery protection of the webhook plugin: which IPv4 and
 * IPv6 addresses deliveries may connect to under each policy, and the checks of target
 * URLs at registration (schemes, literal addresses in every spelling, localhost). */
#include "tap.h"
#include "wh_logic.h"

#include <stdlib.h>

#include <arpa/inet.h>
#include <netinet/in.h>

static enum wh_addr_kind kind_of(const char *text)
{
	struct sockaddr_storage ss = { 0 };
	if (strchr(text, ':')) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, text, &in6->sin6_addr) != 1)
			return (enum wh_addr_kind) - 1;
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		if (inet_pton(AF_INET, text, &in->sin_addr) != 1)
			return (enum wh_addr_kind) - 1;
	}
	return wh_addr_classify((struct sockaddr *)&ss);
}

static const char *names[] = { "public",     "loopback", "private",
	                       "link-local", "reserved", "unsupported" };

static void expect(const char *addr, enum wh_addr_kind want)
{
	enum wh_addr_kind got = kind_of(addr);
	ok(got == want, "%s is %s (got %s)", addr, names[want],
	   (int)got >= 0 && got <= WH_ADDR_UNSUPPORTED ? names[got] : "unparsable");
}

static void url_ok(const char *url, const struct wh_policy *p, const char *normalised)
{
	char err[200] = "";
	char *out = wh_url_check(url, p, err, sizeof(err));
	ok(out && (!normalised || strcmp(out, normalised) == 0), "URL %s accepted (%s)", url,
	   out ? out : err);
	free(out);
}

static void url_refused(const char *url, const struct wh_policy *p, const char *why)
{
	char err[200] = "";
	char *out = wh_url_check(url, p, err, sizeof(err));
	ok(!out && strstr(err, why), "URL %s refused: %s", url, err);
	free(out);
}

int main(void)
{
	/* IPv4 */
	expect("8.8.8.8", WH_ADDR_PUBLIC);
	expect("93.184.216.34", WH_ADDR_PUBLIC);
	expect("127.0.0.1", WH_ADDR_LOOPBACK);
	expect("127.255.255.254", WH_ADDR_LOOPBACK);
	expect("10.1.2.3", WH_ADDR_PRIVATE);
	expect("172.16.0.1", WH_ADDR_PRIVATE);
	expect("172.31.255.255", WH_ADDR_PRIVATE);
	expect("172.32.0.1", WH_ADDR_PUBLIC);
	expect("172.15.255.255", WH_ADDR_PUBLIC);
	expect("192.168.1.1", WH_ADDR_PRIVATE);
	expect("100.64.0.1", WH_ADDR_PRIVATE);
	expect("100.127.255.255", WH_ADDR_PRIVATE);
	expect("100.128.0.1", WH_ADDR_PUBLIC);
	expect("100.100.100.200", WH_ADDR_LINK_LOCAL);
	expect("198.18.0.1", WH_ADDR_PRIVATE);
	expect("169.254.169.254", WH_ADDR_LINK_LOCAL);
	expect("169.254.0.1", WH_ADDR_LINK_LOCAL);
	expect("0.0.0.0", WH_ADDR_RESERVED);
	expect("0.1.2.3", WH_ADDR_RESERVED);
	expect("224.0.0.1", WH_ADDR_RESERVED);
	expect("239.255.255.250", WH_ADDR_RESERVED);
	expect("240.0.0.1", WH_ADDR_RESERVED);
	expect("255.255.255.255", WH_ADDR_RESERVED);
	expect("192.0.2.10", WH_ADDR_RESERVED);
	expect("198.51.100.1", WH_ADDR_RESERVED);
	expect("203.0.113.5", WH_ADDR_RESERVED);
	expect("192.0.0.8", WH_ADDR_RESERVED);
	/* IPv6 */
	expect("2606:4700:4700::1111", WH_ADDR_PUBLIC);
	expect("::1", WH_ADDR_LOOPBACK);
	expect("::", WH_ADDR_RESERVED);
	expect("fe80::1", WH_ADDR_LINK_LOCAL);
	expect("febf::1", WH_ADDR_LINK_LOCAL);
	expect("fc00::1", WH_ADDR_PRIVATE);
	expect("fd12:3456::1", WH_ADDR_PRIVATE);
	expect("fd00:ec2::254", WH_ADDR_LINK_LOCAL);
	expect("fec0::1", WH_ADDR_PRIVATE);
	expect("ff02::1", WH_ADDR_RESERVED);
	expect("2001:db8::1", WH_ADDR_RESERVED);
	expect("2001::1", WH_ADDR_RESERVED);
	expect("100::1", WH_ADDR_RESERVED);
	expect("::ffff:127.0.0.1", WH_ADDR_LOOPBACK);
	expect("::ffff:169.254.169.254", WH_ADDR_LINK_LOCAL);
	expect("::ffff:10.0.0.1", WH_ADDR_PRIVATE);
	expect("::ffff:8.8.8.8", WH_ADDR_PUBLIC);
	expect("::127.0.0.1", WH_ADDR_RESERVED);
	expect("64:ff9b::a9fe:a9fe", WH_ADDR_LINK_LOCAL);
	expect("64:ff9b::808:808", WH_ADDR_PUBLIC);
	expect("64:ff9b:1::1", WH_ADDR_PRIVATE);
	expect("2002:7f00:1::1", WH_ADDR_LOOPBACK);
	expect("2002:808:808::1", WH_ADDR_PUBLIC);
	struct sockaddr unix_sa = { .sa_family = AF_UNIX };
	ok(wh_addr_classify(&unix_sa) == WH_ADDR_UNSUPPORTED, "AF_UNIX unsupported");
	ok(wh_addr_classify(NULL) == WH_ADDR_UNSUPPORTED, "NULL unsupported");

	/* Policies */
	struct wh_policy strict = { false, false }, loop = { true, false }, priv = { false, true },
	                 all = { true, true };
	ok(wh_addr_allowed(WH_ADDR_PUBLIC, &strict), "public allowed by default");
	ok(!wh_addr_allowed(WH_ADDR_LOOPBACK, &strict), "loopback refused by default");
	ok(!wh_addr_allowed(WH_ADDR_PRIVATE, &strict), "private refused by default");
	ok(wh_addr_allowed(WH_ADDR_LOOPBACK, &loop), "allow_loopback allows loopback");
	ok(!wh_addr_allowed(WH_ADDR_PRIVATE, &loop), "but not private networks");
	ok(wh_addr_allowed(WH_ADDR_PRIVATE, &priv), "allow_private allows private networks");
	ok(!wh_addr_allowed(WH_ADDR_LOOPBACK, &priv), "but not loopback");
	ok(!wh_addr_allowed(WH_ADDR_LINK_LOCAL, &all), "link-local never allowed");
	ok(!wh_addr_allowed(WH_ADDR_RESERVED, &all), "reserved never allowed");
	ok(!wh_addr_allowed(WH_ADDR_UNSUPPORTED, &all), "unsupported never allowed");
	ok(strstr(wh_addr_refusal(WH_ADDR_LOOPBACK), "allow_loopback") != NULL,
	   "the loopback refusal names the setting");
	ok(strstr(wh_addr_refusal(WH_ADDR_LINK_LOCAL), "metadata") != NULL,
	   "the link-local refusal says metadata");

	/* URLs at registration */
	url_ok("https://hooks.example.com/spearhead", &strict,
	       "https://hooks.example.com/spearhead");
	url_ok("HTTPS://Hooks.Example.com:8443/a?b=c", &strict, NULL);
	url_ok("http://8.8.8.8/x", &strict, "http://8.8.8.8/x");
	url_ok("https://user:pw@hooks.example.com/", &strict, NULL);
	url_refused("ftp://example.com/", &strict, "https://");
	url_refused("gopher://example.com/", &strict, "https://");
	url_refused("file:///etc/passwd", &strict, "https://");
	url_refused("http:/example.com", &strict, "https://");
	url_refused("//example.com/", &strict, "https://");
	url_refused("", &strict, "URL");
	url_refused("https://", &strict, "host");
	url_refused("https://exa mple.com/", &strict, "valid");
	url_refused("http://127.0.0.1:8080/", &strict, "loopback");
	url_refused("http://127.1/", &strict, "loopback");
	url_refused("http://2130706433/", &strict, "loopback");
	url_refused("http://0x7f000001/", &strict, "loopback");
	url_refused("http://0177.0.0.1/", &strict, "loopback");
	url_refused("http://localhost:8080/", &strict, "loopback");
	url_refused("http://LOCALHOST./", &strict, "loopback");
	url_refused("http://api.localhost/", &strict, "loopback");
	url_refused("http://[::1]/", &strict, "loopback");
	url_refused("http://[::ffff:127.0.0.1]/", &strict, "loopback");
	url_refused("http://10.0.0.5/", &strict, "private");
	url_refused("http://192.168.0.1/", &strict, "private");
	url_refused("http://[fd00::1]/", &strict, "private");
	url_refused("http://169.254.169.254/latest/meta-data/", &all, "metadata");
	url_refused("http://[::ffff:169.254.169.254]/", &all, "metadata");
	url_refused("http://[fe80::1%25eth0]/", &all, "link-local");
	url_refused("http://metadata.google.internal/", &all, "metadata");
	url_refused("http://0.0.0.0:80/", &all, "reserved");
	url_refused("http://[::]/", &all, "reserved");
	url_refused("http://224.0.0.1/", &all, "reserved");
	url_ok("http://127.0.0.1:8080/hook", &loop, "http://127.0.0.1:8080/hook");
	url_ok("http://localhost:8080/hook", &loop, NULL);
	url_ok("http://10.0.0.5/", &priv, NULL);
	char longurl[2100] = "https://example.com/";
	while (strlen(longurl) < 2001)
		strcat(longurl, "a");
	url_refused(longurl, &strict, "2000");
	url_refused(NULL, &strict, "URL");
	return tap_done();
}
