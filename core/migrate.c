/* migrate.c — schema migrations. Run before the event loop starts, so plain blocking
 * libpq is right here. Four instances starting at once on an empty database queue
 * on one advisory lock: the first applies, the others then find nothing to do. */
#include "migrate.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#define MIGRATION_LOCK_KEY "7350010001" /* arbitrary, constant: "sp" migrations */

static const char create_table_sql[] =
    "CREATE TABLE IF NOT EXISTS sp_schema_migrations ("
    " component text NOT NULL,"
    " name text NOT NULL,"
    " checksum text NOT NULL,"
    " status text NOT NULL CHECK (status IN ('applied', 'failed')),"
    " error text,"
    " applied_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (component, name))";

void sp_migrate_checksum(const char *sql, char *hex)
{
	unsigned char digest[crypto_hash_sha256_BYTES];
	crypto_hash_sha256(digest, (const unsigned char *)sql, strlen(sql));
	sodium_bin2hex(hex, 65, digest, sizeof(digest));
}

int sp_migrate_check_order(const struct sp_migration *list, char *err, size_t errlen)
{
	for (size_t i = 0; list && list[i].name; i++) {
		if (!list[i].sql) {
			snprintf(err, errlen, "migration %s has no SQL", list[i].name);
			return -1;
		}
		if (i > 0 && strcmp(list[i - 1].name, list[i].name) >= 0) {
			snprintf(err, errlen,
			         "migrations out of order or duplicated: '%s' comes after '%s'",
			         list[i].name, list[i - 1].name);
			return -1;
		}
	}
	return 0;
}

static int exec_ok(PGconn *conn, const char *sql, char *err, size_t errlen)
{
	PGresult *r = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(r);
	int rc = 0;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "%s", PQerrorMessage(conn));
		rc = -1;
	}
	PQclear(r);
	return rc;
}

PGconn *sp_migrate_begin(const char *url, char *err, size_t errlen)
{
	const char *keys[] = { "dbname", "application_name", NULL };
	const char *vals[] = { url, "spearhead-migrate", NULL };
	PGconn *conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(conn) != CONNECTION_OK) {
		snprintf(err, errlen, "cannot connect to the database: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	/* Quiet NOTICEs such as "relation already exists, skipping". */
	if (exec_ok(conn, "SET client_min_messages = warning", err, errlen) < 0 ||
	    exec_ok(conn, "SELECT pg_advisory_lock(" MIGRATION_LOCK_KEY ")", err, errlen) < 0 ||
	    exec_ok(conn, create_table_sql, err, errlen) < 0) {
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

void sp_migrate_end(PGconn *conn)
{
	if (!conn)
		return;
	PGresult *r = PQexec(conn, "SELECT pg_advisory_unlock(" MIGRATION_LOCK_KEY ")");
	PQclear(r);
	PQfinish(conn);
}

static void record_failure(PGconn *conn, const char *component, const char *name,
                           const char *checksum, const char *error)
{
	const char *params[] = { component, name, checksum, error };
	PGresult *r = PQexecParams(conn,
	                           "INSERT INTO sp_schema_migrations (component, name, checksum, "
	                           "status, error) VALUES ($1, $2, $3, 'failed', $4) "
	                           "ON CONFLICT (component, name) DO UPDATE SET status = 'failed', "
	                           "error = EXCLUDED.error, checksum = EXCLUDED.checksum, "
	                           "applied_at = now()",
	                           4, NULL, params, NULL, NULL, 0);
	PQclear(r);
}

int sp_migrate_component(PGconn *conn, const char *component, const struct sp_migration *list,
                         bool retry_failed, char *err, size_t errlen)
{
	if (sp_migrate_check_order(list, err, errlen) < 0)
		return -1;
	int applied = 0;
	for (size_t i = 0; list && list[i].name; i++) {
		const struct sp_migration *m = &list[i];
		char sum[65];
		sp_migrate_checksum(m->sql, sum);
		const char *params[] = { component, m->name };
		PGresult *r =
		    PQexecParams(conn,
		                 "SELECT checksum, status, coalesce(error, '') FROM "
		                 "sp_schema_migrations WHERE component = $1 AND name = $2",
		                 2, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			snprintf(err, errlen, "reading migrations: %s", PQerrorMessage(conn));
			PQclear(r);
			return -1;
		}
		if (PQntuples(r) == 1) {
			bool failed = strcmp(PQgetvalue(r, 0, 1), "failed") == 0;
			if (!failed && strcmp(PQgetvalue(r, 0, 0), sum) != 0) {
				snprintf(err, errlen,
				         "migration %s/%s was changed after it was applied "
				         "(checksum %.12s… in the database, %.12s… now); add a new "
				         "migration instead of editing an applied one",
				         component, m->name, PQgetvalue(r, 0, 0), sum);
				PQclear(r);
				return -1;
			}
			if (failed && !retry_failed) {
				snprintf(err, errlen,
				         "migration %s/%s failed earlier (%s); fix the cause and "
				         "run `spearhead migrate`",
				         component, m->name, PQgetvalue(r, 0, 2));
				PQclear(r);
				return -1;
			}
			PQclear(r);
			if (!failed)
				continue;
		} else {
			PQclear(r);
		}
		sp_info("applying migration %s/%s", component, m->name);
		char inner[1024];
		if (exec_ok(conn, "BEGIN", err, errlen) < 0)
			return -1;
		if (exec_ok(conn, m->sql, inner, sizeof(inner)) < 0) {
			PQclear(PQexec(conn, "ROLLBACK"));
			inner[strcspn(inner, "\n")] = '\0';
			record_failure(conn, component, m->name, sum, inner);
			snprintf(err, errlen, "migration %s/%s failed: %s", component, m->name,
			         inner);
			return -1;
		}
		const char *ins[] = { component, m->name, sum };
		r = PQexecParams(
		    conn,
		    "INSERT INTO sp_schema_migrations (component, name, checksum, status) "
		    "VALUES ($1, $2, $3, 'applied') ON CONFLICT (component, name) DO "
		    "UPDATE SET status = 'applied', error = NULL, checksum = "
		    "EXCLUDED.checksum, applied_at = now()",
		    3, NULL, ins, NULL, NULL, 0);
		bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
		PQclear(r);
		if (!ok || exec_ok(conn, "COMMIT", inner, sizeof(inner)) < 0) {
			PQclear(PQexec(conn, "ROLLBACK"));
			snprintf(err, errlen, "recording migration %s/%s failed: %s", component,
			         m->name, PQerrorMessage(conn));
			return -1;
		}
		applied++;
	}
	return applied;
}
