/* migrate.h — ordered SQL migrations, applied once each in a transaction and
 * recorded with a checksum; serialised across instances by an advisory lock. */
#ifndef SP_CORE_MIGRATE_H
#define SP_CORE_MIGRATE_H

#include <spearhead/plugin.h>
#include <libpq-fe.h>

/* The core's own migrations, embedded from sql/ at build time. */
extern const struct sp_migration sp_core_migrations[];

/* Connects (blocking) and takes the migration lock; NULL with err on failure. */
PGconn *sp_migrate_begin(const char *url, char *err, size_t errlen);
void sp_migrate_end(PGconn *conn);
/* Applies the pending migrations of one component in order. A migration recorded as
 * failed is retried only when retry_failed (the `migrate` command); otherwise it is an
 * error. Returns the number applied, or -1 with err. */
int sp_migrate_component(PGconn *conn, const char *component, const struct sp_migration *list,
                         bool retry_failed, char *err, size_t errlen);
/* Names unique and strictly increasing (so file order = apply order); 0 or -1. */
int sp_migrate_check_order(const struct sp_migration *list, char *err, size_t errlen);
/* SHA-256 of sql as 64 hex characters into hex (>= 65 bytes). */
void sp_migrate_checksum(const char *sql, char *hex);

#endif
