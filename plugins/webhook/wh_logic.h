/* wh_logic.h — the webhook plugin's pure logic, without I/O: Standard Webhooks secrets
 * and signatures, which addresses a delivery may connect to, target URL checks, the
 * retry schedule and event-type patterns. Unit-tested on its own. */
#ifndef SP_WEBHOOK_LOGIC_H
#define SP_WEBHOOK_LOGIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#define WH_SECRET_PREFIX "whsec_"
#define WH_SECRET_BYTES  24                /* random bytes of a new secret */
#define WH_SECRET_SIZE   (6 + 32 + 1)      /* "whsec_" + base64 of 24 bytes + NUL */
#define WH_KEY_MAX       64                /* longest key accepted in a secret */
#define WH_SIG_SIZE      (3 + 44 + 1)      /* "v1," + base64 of 32 bytes + NUL */
#define WH_SIG_HEADER    (2 * WH_SIG_SIZE) /* two signatures, a space between */
#define WH_SCHEDULE_MAX  30                /* most retry delays in a schedule */
#define WH_DELAY_MAX     604800            /* one delay: a week at most */
#define WH_PATTERN_MAX   100               /* length of an event-type pattern */

/* ---- secrets and signatures (libsodium) ---- */

/* Writes a new secret "whsec_<base64 of 24 random bytes>" into out (WH_SECRET_SIZE). */
void wh_secret_new(char out[WH_SECRET_SIZE]);

/* Decodes the key of a secret (base64 after an optional "whsec_" prefix, padded or
 * not) into key (WH_KEY_MAX bytes). Returns the key length (>= 16), or -1. */
int wh_secret_key(const char *secret, unsigned char key[WH_KEY_MAX]);

/* The Standard Webhooks signature "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>"
 * into out (WH_SIG_SIZE). Returns 0, or -1 for a bad secret. */
int wh_sign(const char *secret, const char *msg_id, long long timestamp, const void *body,
            size_t body_len, char out[WH_SIG_SIZE]);

/* The webhook-signature header: the signature with secret, followed after a space by
 * the one with previous when previous is not NULL (a rotation in progress). out has
 * WH_SIG_HEADER bytes. Returns 0, or -1 for a bad secret. */
int wh_signature_header(const char *secret, const char *previous, const char *msg_id,
                        long long timestamp, const void *body, size_t body_len,
                        char out[WH_SIG_HEADER]);

/* ---- addresses a delivery may connect to (server-side request forgery) ---- */

enum wh_addr_kind {
	WH_ADDR_PUBLIC = 0,     /* global unicast */
	WH_ADDR_LOOPBACK = 1,   /* 127/8, ::1 */
	WH_ADDR_PRIVATE = 2,    /* 10/8, 172.16/12, 192.168/16, 100.64/10, 198.18/15, fc00::/7 */
	WH_ADDR_LINK_LOCAL = 3, /* 169.254/16, fe80::/10 and cloud metadata addresses */
	WH_ADDR_RESERVED = 4,   /* unspecified, 0/8, multicast, broadcast, documentation, … */
	WH_ADDR_UNSUPPORTED = 5 /* not IPv4 or IPv6 */
};

struct wh_policy {
	bool allow_loopback; /* setting allow_loopback or SPEARHEAD_WEBHOOK_ALLOW_LOOPBACK=1 */
	bool allow_private;  /* setting allow_private */
};

/* Classifies an IPv4 address in network byte order (4 bytes) or an IPv6 one (16
 * bytes); IPv4 embedded in IPv6 (mapped, NAT64, 6to4) is classified as IPv4. */
enum wh_addr_kind wh_addr_classify_v4(const unsigned char a[4]);
enum wh_addr_kind wh_addr_classify_v6(const unsigned char a[16]);
/* The same for a socket address (AF_INET or AF_INET6; anything else is UNSUPPORTED). */
enum wh_addr_kind wh_addr_classify(const struct sockaddr *sa);

/* Whether the policy lets a delivery connect to an address of this kind. Link-local,
 * reserved and unsupported addresses are never allowed. */
bool wh_addr_allowed(enum wh_addr_kind kind, const struct wh_policy *policy);

/* Why an address of this kind is refused, as a phrase ("a loopback address, allowed
 * only with ..."). Static text. */
const char *wh_addr_refusal(enum wh_addr_kind kind);

/* ---- target URLs ---- */

/* Checks a target URL given at registration: http:// or https:// only, a host, no
 * more than 2000 bytes, and no host that is obviously refused by the policy (a
 * literal IP address in a refused range, or localhost). Returns the normalised URL
 * (new string, free()), or NULL with a message in err. Names are resolved only when
 * a delivery connects, where every address is checked again. */
char *wh_url_check(const char *url, const struct wh_policy *policy, char *err, size_t errsize);

/* ---- retry schedule ---- */

/* Parses "5,30,60" (delays in seconds between attempts, 1..WH_DELAY_MAX each, 1 to
 * WH_SCHEDULE_MAX of them, spaces allowed around commas) into delays. Returns the
 * number of delays, or -1 with a message in err. */
int wh_schedule_parse(const char *text, unsigned delays[WH_SCHEDULE_MAX], char *err,
                      size_t errsize);

/* The delay before the attempt after failed attempt number attempt (1-based): the
 * attempt-th delay of the schedule (the last one past its end), with ±10% jitter from
 * rnd (0..10000, uniform), at least 1 s. */
unsigned wh_schedule_delay(const unsigned *delays, int ndelays, int attempt, uint32_t rnd);

/* ---- event types ---- */

/* "*", an event type ([a-z0-9_.], 1..100 bytes) or "prefix.*". */
bool wh_pattern_valid(const char *pattern);
/* Whether type matches: "*" all, "a.*" types starting with "a.", else equality. */
bool wh_pattern_matches(const char *pattern, const char *type);

/* ---- identifiers ---- */

/* A UUID in its canonical 36-character text form (any version, any case). */
bool wh_is_uuid(const char *s);

#endif
