/* test_webhook_sign.c — Standard Webhooks secrets and signatures of the webhook plugin:
 * the specification's published test vector, vectors computed independently (Python's
 * hmac), two signatures during a rotation, and secrets that are not secrets. */
#include "tap.h"
#include "wh_logic.h"

#include <sodium.h>

#define BODY  "{\"id\":\"x\",\"data\":{\"caf\xc3\xa9\":1}}"
#define EVENT "0b9c3f3e-8a55-4c61-9d8f-2f0e6d3b1a77"

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	char sig[WH_SIG_SIZE];

	/* The Standard Webhooks specification's test vector. */
	const char *spec_body = "{\"test\": 2432232314}";
	ok(wh_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
	           1614265330, spec_body, strlen(spec_body), sig) == 0,
	   "sign the specification's vector");
	is_str(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
	       "matches the published signature");
	ok(wh_sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
	           spec_body, strlen(spec_body), sig) == 0 &&
	       strcmp(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=") == 0,
	   "the whsec_ prefix is optional");

	/* Vectors from an independent implementation (Python hmac + base64). */
	const char *s24 = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX";             /* bytes 0..23 */
	const char *s32 = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; /* 0..31, padded */
	ok(wh_sign(s24, EVENT, 1700000000, BODY, strlen(BODY), sig) == 0, "24-byte key");
	is_str(sig, "v1,BBH9hlp5JyjI7jQ21XTfhENx6uZE3xC+gm+ynILV2ts=", "UTF-8 body, 24-byte key");
	ok(wh_sign(s32, EVENT, 1700000000, BODY, strlen(BODY), sig) == 0, "32-byte padded key");
	is_str(sig, "v1,cn4YEuwIgepqD5PRMYp6tboaY1/32mGt+Mh4QbBPzsw=", "UTF-8 body, 32-byte key");
	ok(wh_sign(s32, EVENT, 1700000001, BODY, strlen(BODY), sig) == 0 &&
	       strcmp(sig, "v1,cn4YEuwIgepqD5PRMYp6tboaY1/32mGt+Mh4QbBPzsw=") != 0,
	   "another timestamp, another signature");

	/* Rotation: two signatures, new secret first. */
	char header[WH_SIG_HEADER];
	ok(wh_signature_header(s32, s24, EVENT, 1700000000, BODY, strlen(BODY), header) == 0,
	   "header with two secrets");
	is_str(header,
	       "v1,cn4YEuwIgepqD5PRMYp6tboaY1/32mGt+Mh4QbBPzsw= "
	       "v1,BBH9hlp5JyjI7jQ21XTfhENx6uZE3xC+gm+ynILV2ts=",
	       "space-separated, current secret first");
	ok(wh_signature_header(s32, NULL, EVENT, 1700000000, BODY, strlen(BODY), header) == 0,
	   "header with one secret");
	is_str(header, "v1,cn4YEuwIgepqD5PRMYp6tboaY1/32mGt+Mh4QbBPzsw=", "one signature");
	ok(wh_signature_header("whsec_!!", NULL, EVENT, 1, "{}", 2, header) < 0,
	   "a broken secret signs nothing");

	/* Secrets. */
	char a[WH_SECRET_SIZE], b[WH_SECRET_SIZE];
	unsigned char key[WH_KEY_MAX];
	wh_secret_new(a);
	wh_secret_new(b);
	ok(strncmp(a, "whsec_", 6) == 0 && strlen(a) == 38, "a new secret is whsec_ + 32 chars");
	is_int(wh_secret_key(a, key), 24, "it decodes to 24 random bytes");
	ok(strcmp(a, b) != 0, "two secrets differ");
	is_int(wh_secret_key(s32, key), 32, "padded base64 decodes");
	is_int(wh_secret_key("whsec_", key), -1, "empty key refused");
	is_int(wh_secret_key("whsec_not base64!", key), -1, "not base64 refused");
	is_int(wh_secret_key("whsec_AAECAwQFBgcI", key), -1, "a key under 16 bytes is refused");
	is_int(wh_secret_key(NULL, key), -1, "NULL refused");
	char longer[200] = "whsec_";
	for (int i = 0; i < 120; i++)
		strcat(longer, "A");
	is_int(wh_secret_key(longer, key), -1, "a key over 64 bytes is refused");
	return tap_done();
}
