/* auth.h — bearer tokens (generation, digests) and resolving a request's principal. */
#ifndef SP_CORE_AUTH_H
#define SP_CORE_AUTH_H

#include <spearhead/plugin.h>

struct sp_db;

#define SP_TOKEN_PREFIX     "sph_" /* recognisable, so secret scanners can find leaked tokens */
#define SP_TOKEN_CHARS      47     /* prefix + 43 base64url characters (256 random bits) */
#define SP_TOKEN_DIGEST_HEX 65     /* SHA-256 as hex, with the terminating NUL */

/* A new random token (token >= 48 bytes), its display prefix (>= 16 bytes) and the
 * hex digest stored in the database. */
void sp_token_generate(char *token, char *prefix, char *digest_hex);
/* Digest of a well-formed token; -1 when it is not one of ours. */
int sp_token_digest(const char *token, char *digest_hex);
/* The token of an "Authorization: Bearer X" header (borrowed), or NULL. */
const char *sp_auth_bearer(const char *header);

/* status: 0 resolved (principal new, free with sp_principal_free), 401 unknown,
 * expired or revoked token, 503 database unavailable. */
typedef void sp_auth_fn(struct sp_principal *principal, int status, void *arg);
/* Looks the token up without blocking; cb runs later, exactly once. -1 = not queued. */
int sp_auth_resolve(struct sp_db *db, const char *token, sp_auth_fn *cb, void *arg);
void sp_principal_free(struct sp_principal *principal);
/* The id of the token that authenticated the request (borrowed). */
const char *sp_principal_token_id(const struct sp_principal *principal);

/* argon2id via libsodium. Returns 0 or -1 (out of memory). */
int sp_password_hash(const char *password, char *out, size_t outlen);
bool sp_password_verify(const char *hash, const char *password);

#endif
