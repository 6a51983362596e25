/* users.c — `spearhead user add` and `spearhead token create`: administer a fresh
 * install from the command line (blocking libpq is right for a one-shot command). */
#include "auth.h"
#include "cli.h"
#include "config.h"
#include "pgembed.h"
#include "users.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <sodium.h>

/* Opens the configured database (starting the embedded one if needed), brings the
 * core schema up to date and connects. */
static PGconn *open_db(const char *cmd, struct sp_cli_common *c, struct sp_config **cfg,
                       struct sp_pgembed **pg)
{
	char err[1024];
	*cfg = sp_cli_load_config(c->config, c->overrides, err, sizeof(err));
	if (!*cfg) {
		fprintf(stderr, "spearhead %s: %s\n", cmd, err);
		return NULL;
	}
	const char *url;
	if (sp_open_database(*cfg, pg, &url, err, sizeof(err)) < 0) {
		fprintf(stderr, "spearhead %s: %s\n", cmd, err);
		return NULL;
	}
	if (sp_run_migrations(url, NULL, false, NULL) < 0) {
		fprintf(stderr, "spearhead %s: the database schema is not usable (see above)\n",
		        cmd);
		return NULL;
	}
	const char *keys[] = { "dbname", "application_name", NULL };
	const char *vals[] = { url, "spearhead-cli", NULL };
	PGconn *conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "spearhead %s: cannot connect: %s", cmd, PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

static void close_db(PGconn *conn, struct sp_config *cfg, struct sp_pgembed *pg)
{
	PQfinish(conn);
	if (pg)
		sp_pgembed_stop(pg);
	sp_config_free(cfg);
}

/* Value of a flag taking an argument, from the unconsumed arguments. */
static const char *take(struct sp_cli_common *c, int *i, const char *flag)
{
	if (strcmp(c->rest[*i], flag) != 0)
		return NULL;
	if (*i + 1 >= c->nrest) {
		fprintf(stderr, "spearhead: %s needs a value\n", flag);
		exit(2);
	}
	return c->rest[++*i];
}

static void user_usage(FILE *out)
{
	fprintf(out,
	        "Usage: spearhead user add --email E [--name NAME] [--admin] [--org ID]\n"
	        "                          [--role member|manager] [--password-stdin]\n"
	        "                          [--config FILE] [--database URL | --state-dir DIR]\n"
	        "\n"
	        "Creates a user. The password is read from standard input with --password-stdin\n"
	        "(one line, at least 8 characters); otherwise one is generated and printed once.\n"
	        "Prints id=<user id> (and password=<generated password>) on standard output.\n");
}

int sp_cmd_user(int argc, char **argv)
{
	struct sp_cli_common c;
	int rc = sp_cli_parse_common(argc, argv, NULL, &c, user_usage);
	if (rc >= 0)
		return rc;
	const char *email = NULL, *name = "", *org = NULL, *role = NULL;
	bool admin = false, from_stdin = false;
	if (c.nrest == 0 || strcmp(c.rest[0], "add") != 0) {
		user_usage(stderr);
		sp_cli_common_free(&c);
		return 2;
	}
	for (int i = 1; i < c.nrest; i++) {
		const char *v;
		if ((v = take(&c, &i, "--email")))
			email = v;
		else if ((v = take(&c, &i, "--name")))
			name = v;
		else if ((v = take(&c, &i, "--org")))
			org = v;
		else if ((v = take(&c, &i, "--role")))
			role = v;
		else if (strcmp(c.rest[i], "--admin") == 0)
			admin = true;
		else if (strcmp(c.rest[i], "--password-stdin") == 0)
			from_stdin = true;
		else {
			fprintf(stderr, "spearhead user add: unknown argument '%s'\n", c.rest[i]);
			sp_cli_common_free(&c);
			return 2;
		}
	}
	if (!email || !strchr(email, '@')) {
		fprintf(stderr, "spearhead user add: --email with an e-mail address is required\n");
		sp_cli_common_free(&c);
		return 2;
	}
	if (role && strcmp(role, "member") != 0 && strcmp(role, "manager") != 0) {
		fprintf(stderr, "spearhead user add: --role must be member or manager\n");
		sp_cli_common_free(&c);
		return 2;
	}
	if (role && !org) {
		fprintf(stderr, "spearhead user add: --role needs --org\n");
		sp_cli_common_free(&c);
		return 2;
	}
	char password[256] = "";
	bool generated = false;
	if (from_stdin) {
		if (!fgets(password, sizeof(password), stdin)) {
			fprintf(stderr, "spearhead user add: no password on standard input\n");
			sp_cli_common_free(&c);
			return 2;
		}
		password[strcspn(password, "\r\n")] = '\0';
		if (strlen(password) < 8) {
			fprintf(stderr,
			        "spearhead user add: the password needs 8 characters or more\n");
			sp_cli_common_free(&c);
			return 2;
		}
	} else {
		unsigned char raw[15];
		randombytes_buf(raw, sizeof(raw));
		sodium_bin2base64(password, sizeof(password), raw, sizeof(raw),
		                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		generated = true;
	}
	char hash[crypto_pwhash_STRBYTES];
	if (sp_password_hash(password, hash, sizeof(hash)) < 0) {
		fprintf(stderr,
		        "spearhead user add: hashing the password failed (out of memory)\n");
		sp_cli_common_free(&c);
		return 1;
	}
	struct sp_config *cfg = NULL;
	struct sp_pgembed *pg = NULL;
	PGconn *conn = open_db("user add", &c, &cfg, &pg);
	sp_cli_common_free(&c);
	if (!conn) {
		if (pg)
			sp_pgembed_stop(pg);
		sp_config_free(cfg);
		return 1;
	}
	const char *params[] = { email, name,
		                 hash,  admin ? "true" : "false",
		                 org,   org ? (role ? role : "member") : NULL };
	PGresult *r =
	    PQexecParams(conn,
	                 "INSERT INTO sp_users (email, display_name, password_hash, "
	                 "is_admin, org_id, org_role) VALUES ($1, $2, $3, $4, $5::uuid, $6) "
	                 "RETURNING id",
	                 6, NULL, params, NULL, NULL, 0);
	rc = 0;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		if (state && strcmp(state, "23505") == 0)
			fprintf(stderr,
			        "spearhead user add: a user with e-mail %s already exists\n",
			        email);
		else if (state && (strcmp(state, "23503") == 0 || strcmp(state, "22P02") == 0))
			fprintf(stderr, "spearhead user add: no organisation with id %s\n", org);
		else if (state && strcmp(state, "23514") == 0)
			fprintf(stderr, "spearhead user add: invalid e-mail address or name\n");
		else
			fprintf(stderr, "spearhead user add: %s", PQerrorMessage(conn));
		rc = 1;
	} else {
		printf("id=%s\n", PQgetvalue(r, 0, 0));
		if (generated)
			printf("password=%s\n", password);
		fprintf(stderr, "created %s%s%s\n", admin ? "admin " : "user ", email,
		        generated ? " (the generated password is shown once)" : "");
	}
	PQclear(r);
	sodium_memzero(password, sizeof(password));
	close_db(conn, cfg, pg);
	return rc;
}

static void token_usage(FILE *out)
{
	fprintf(out,
	        "Usage: spearhead token create --email E [--name N] [--expires-in SECONDS]\n"
	        "                              [--config FILE] [--database URL | --state-dir DIR]\n"
	        "\n"
	        "Creates an API token for the user and prints the token alone on standard\n"
	        "output. It is shown this once; only its digest is stored.\n");
}

int sp_cmd_token(int argc, char **argv)
{
	struct sp_cli_common c;
	int rc = sp_cli_parse_common(argc, argv, NULL, &c, token_usage);
	if (rc >= 0)
		return rc;
	const char *email = NULL, *name = "cli", *expires = NULL;
	if (c.nrest == 0 || strcmp(c.rest[0], "create") != 0) {
		token_usage(stderr);
		sp_cli_common_free(&c);
		return 2;
	}
	for (int i = 1; i < c.nrest; i++) {
		const char *v;
		if ((v = take(&c, &i, "--email")))
			email = v;
		else if ((v = take(&c, &i, "--name")))
			name = v;
		else if ((v = take(&c, &i, "--expires-in")))
			expires = v;
		else {
			fprintf(stderr, "spearhead token create: unknown argument '%s'\n",
			        c.rest[i]);
			sp_cli_common_free(&c);
			return 2;
		}
	}
	long secs = 0;
	if (!email || (expires && sp_parse_long(expires, 60, 10L * 365 * 86400, &secs) < 0)) {
		fprintf(stderr, "spearhead token create: --email is required; --expires-in is "
		                "seconds between 60 and ten years\n");
		sp_cli_common_free(&c);
		return 2;
	}
	struct sp_config *cfg = NULL;
	struct sp_pgembed *pg = NULL;
	PGconn *conn = open_db("token create", &c, &cfg, &pg);
	sp_cli_common_free(&c);
	if (!conn) {
		if (pg)
			sp_pgembed_stop(pg);
		sp_config_free(cfg);
		return 1;
	}
	char token[64], prefix[16], digest[SP_TOKEN_DIGEST_HEX], secs_text[32];
	sp_token_generate(token, prefix, digest);
	snprintf(secs_text, sizeof(secs_text), "%ld", secs);
	const char *params[] = { email, name, prefix, digest, expires ? secs_text : NULL };
	PGresult *r = PQexecParams(
	    conn,
	    "INSERT INTO sp_tokens (user_id, kind, name, prefix, digest, expires_at) "
	    "SELECT id, 'api', $2, $3, decode($4, 'hex'), now() + make_interval(secs => $5::int) "
	    "FROM sp_users WHERE lower(email) = lower($1) RETURNING id",
	    5, NULL, params, NULL, NULL, 0);
	rc = 0;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "spearhead token create: %s", PQerrorMessage(conn));
		rc = 1;
	} else if (PQntuples(r) == 0) {
		fprintf(stderr, "spearhead token create: no user with e-mail %s\n", email);
		rc = 1;
	} else {
		printf("%s\n", token);
	}
	PQclear(r);
	sodium_memzero(token, sizeof(token));
	close_db(conn, cfg, pg);
	return rc;
}
