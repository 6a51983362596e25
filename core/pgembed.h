/* pgembed.h — the embedded PostgreSQL cluster kept in the state directory. */
#ifndef SP_CORE_PGEMBED_H
#define SP_CORE_PGEMBED_H

#include <stdbool.h>
#include <stddef.h>

struct sp_pgembed;

/* Starts (initdb on first use) or reuses the private cluster in state_dir/pg:
 * unix socket only (in state_dir/run), listen_addresses='', trust auth for the
 * owner. When running as root, the cluster runs as the unprivileged system user
 * "postgres" (runuser / setuid) and state_dir/pg is owned by it. Blocks until the
 * server accepts connections (pg_ctl -w). Binaries come from $PG_BINDIR, then
 * `pg_config --bindir`, then /usr/lib/postgresql/<newest>/bin. If the cluster is
 * already running (another `spearhead` started it), it is reused and not stopped
 * by sp_pgembed_stop. On failure returns NULL and writes a human-readable reason
 * (what to install or fix) into err. */
struct sp_pgembed *sp_pgembed_start(const char *state_dir, char *err, size_t errlen);
/* The libpq URL for the cluster ("postgresql:///spearhead?host=/abs/run&port=5432&user=..."),
 * borrowed; the database "spearhead" exists. */
const char *sp_pgembed_url(const struct sp_pgembed *pg);
/* Stops the cluster (pg_ctl stop -m fast) if this process started it; frees pg. */
void sp_pgembed_stop(struct sp_pgembed *pg);
/* Frees without stopping (used in forked children). */
void sp_pgembed_release(struct sp_pgembed *pg);

#endif
