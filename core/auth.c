/* auth.c — bearer tokens and passwords. Tokens are 256 random bits with a
 * recognisable prefix; only their SHA-256 digest is stored, looked up through the
 * unique index and compared again in constant time. No cache: a revoked or expired
 * token fails on every instance at once. */
#include "auth.h"
#include "db.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

static void digest_hex(const char *token, char *hex)
{
	unsigned char d[crypto_hash_sha256_BYTES];
	crypto_hash_sha256(d, (const unsigned char *)token, strlen(token));
	sodium_bin2hex(hex, SP_TOKEN_DIGEST_HEX, d, sizeof(d));
}

void sp_token_generate(char *token, char *prefix, char *digest)
{
	unsigned char raw[32];
	randombytes_buf(raw, sizeof(raw));
	memcpy(token, SP_TOKEN_PREFIX, 4);
	sodium_bin2base64(token + 4, 44, raw, sizeof(raw),
	                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	snprintf(prefix, 16, "%.12s", token);
	digest_hex(token, digest);
	sodium_memzero(raw, sizeof(raw));
}

int sp_token_digest(const char *token, char *digest)
{
	if (!token || strlen(token) != SP_TOKEN_CHARS || strncmp(token, SP_TOKEN_PREFIX, 4) != 0)
		return -1;
	for (const char *p = token + 4; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			return -1;
	digest_hex(token, digest);
	return 0;
}

const char *sp_auth_bearer(const char *header)
{
	if (!header || strncasecmp(header, "Bearer ", 7) != 0)
		return NULL;
	header += 7;
	while (*header == ' ')
		header++;
	return *header ? header : NULL;
}

struct principal_box {
	struct sp_principal p; /* first: the public view */
	json_t *row;           /* owns the strings p points into */
};

struct resolve_ctx {
	sp_auth_fn *cb;
	void *arg;
	char digest[SP_TOKEN_DIGEST_HEX];
};

static void resolved(const struct sp_db_result *res, void *arg)
{
	struct resolve_ctx *ctx = arg;
	if (!sp_db_result_ok(res)) {
		ctx->cb(NULL, 503, ctx->arg);
		free(ctx);
		return;
	}
	if (sp_db_result_ntuples(res) != 1 ||
	    sodium_memcmp(sp_db_result_value(res, 0, 0), ctx->digest, 64) != 0) {
		ctx->cb(NULL, 401, ctx->arg);
		free(ctx);
		return;
	}
	struct principal_box *box = sp_calloc(1, sizeof(*box));
	box->row = sp_db_result_row_json(res, 0);
	box->p.user_id = json_string_value(json_object_get(box->row, "user_id"));
	box->p.email = json_string_value(json_object_get(box->row, "email"));
	box->p.org_id = json_string_value(json_object_get(box->row, "org_id"));
	box->p.org_role = json_string_value(json_object_get(box->row, "org_role"));
	box->p.is_admin = json_is_true(json_object_get(box->row, "is_admin"));
	ctx->cb(&box->p, 0, ctx->arg);
	free(ctx);
}

int sp_auth_resolve(struct sp_db *db, const char *token, sp_auth_fn *cb, void *arg)
{
	struct resolve_ctx *ctx = sp_calloc(1, sizeof(*ctx));
	ctx->cb = cb;
	ctx->arg = arg;
	if (sp_token_digest(token, ctx->digest) < 0) {
		/* Not one of ours: answer without touching the database, but still later. */
		memset(ctx->digest, 0, sizeof(ctx->digest));
	}
	const char *params[] = { ctx->digest };
	if (sp_db_query_prepared(db, "sp_auth_resolve",
	                         "SELECT encode(t.digest, 'hex'), u.id::text AS user_id, u.email, "
	                         "t.id::text AS token_id, "
	                         "u.org_id::text AS org_id, u.org_role, u.is_admin "
	                         "FROM sp_tokens t JOIN sp_users u ON u.id = t.user_id "
	                         "WHERE t.digest = decode($1, 'hex') AND t.revoked_at IS NULL "
	                         "AND (t.expires_at IS NULL OR t.expires_at > now())",
	                         1, params, resolved, ctx) < 0) {
		free(ctx);
		return -1;
	}
	return 0;
}

const char *sp_principal_token_id(const struct sp_principal *principal)
{
	const struct principal_box *box = (const struct principal_box *)principal;
	return principal ? json_string_value(json_object_get(box->row, "token_id")) : NULL;
}

void sp_principal_free(struct sp_principal *principal)
{
	if (!principal)
		return;
	struct principal_box *box = (struct principal_box *)principal;
	json_decref(box->row);
	free(box);
}

int sp_password_hash(const char *password, char *out, size_t outlen)
{
	if (outlen < crypto_pwhash_STRBYTES)
		return -1;
	return crypto_pwhash_str(out, password, strlen(password),
	                         crypto_pwhash_OPSLIMIT_INTERACTIVE,
	                         crypto_pwhash_MEMLIMIT_INTERACTIVE);
}

bool sp_password_verify(const char *hash, const char *password)
{
	return hash && crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
}
