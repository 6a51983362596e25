/* db.h — non-blocking PostgreSQL connection pool driven by the libevent loop. */
#ifndef SP_CORE_DB_H
#define SP_CORE_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <event2/event.h>
#include <jansson.h>

struct sp_db;
struct sp_db_tx;
/* Public (opaque to plugins): a result handed to callbacks, valid only during the call. */
struct sp_db_result;

/* Result callback. res is borrowed: valid only until the callback returns. */
typedef void sp_db_result_fn(const struct sp_db_result *res, void *arg);
/* Transaction body: runs after BEGIN; may run again when the transaction is retried
 * after a serialization failure or deadlock (SQLSTATE 40001/40P01). */
typedef void sp_db_tx_fn(struct sp_db_tx *tx, void *arg);
/* Transaction outcome: res is NULL after COMMIT succeeded, else the failing result
 * (borrowed) whose sqlstate/error say why (also "rolled back by the body": sqlstate
 * "SP000"). */
typedef void sp_db_tx_done_fn(const struct sp_db_result *err, void *arg);
/* LISTEN callback: payload borrowed. */
typedef void sp_db_notify_fn(const char *channel, const char *payload, void *arg);

struct sp_db_options {
	const char *url;              /* libpq connection URI or conninfo; never concatenated */
	int pool_size;                /* connections for queries (default 4) */
	int queue_timeout_ms;         /* a query waiting longer than this for a connection
	                                 fails with SQLSTATE "SP503" (default 5000) */
	int statement_timeout_ms;     /* SET statement_timeout on each connection, 0 = none */
	int lock_timeout_ms;          /* SET lock_timeout on each connection, 0 = none */
	const char *application_name; /* shown in pg_stat_activity */
};

/* Creates the pool and starts connecting (non-blocking). Returns NULL on bad options. */
struct sp_db *sp_db_new(struct event_base *base, const struct sp_db_options *opts);
/* Closes every connection; pending queries get their callback with SQLSTATE "SP503".
 * May be called from a callback: it then takes effect when the callback returns. */
void sp_db_free(struct sp_db *db);

/* Runs one parameterised statement (text params, NULL = SQL NULL). Copies sql and
 * params. The callback runs exactly once, later, from the event loop (never inside
 * this call). Returns 0, or -1 if the query could not be queued (then no callback). */
int sp_db_query(struct sp_db *db, const char *sql, int nparams, const char *const *params,
                sp_db_result_fn *cb, void *arg);
/* Same, but the statement is prepared once per connection and reused by name. */
int sp_db_query_prepared(struct sp_db *db, const char *name, const char *sql, int nparams,
                         const char *const *params, sp_db_result_fn *cb, void *arg);

/* Runs body inside BEGIN (isolation: NULL = READ COMMITTED, or e.g. "SERIALIZABLE"),
 * retrying up to max_retries times on 40001/40P01. done runs exactly once.
 * The body and each tx query callback must leave the transaction something to do (a
 * query, commit or rollback) when they return: one left idle is rolled back ("SP000"). */
int sp_db_tx(struct sp_db *db, const char *isolation, int max_retries, sp_db_tx_fn *body,
             sp_db_tx_done_fn *done, void *arg);
/* A query inside the transaction. cb only sees successful results: an error aborts
 * the transaction (retry or done(err)) without calling cb. */
int sp_db_tx_query(struct sp_db_tx *tx, const char *sql, int nparams, const char *const *params,
                   sp_db_result_fn *cb, void *arg);
/* Same, prepared once per connection under name (as sp_db_query_prepared). */
int sp_db_tx_query_prepared(struct sp_db_tx *tx, const char *name, const char *sql, int nparams,
                            const char *const *params, sp_db_result_fn *cb, void *arg);
/* Both run after the queries already issued; later tx calls on it are refused. */
void sp_db_tx_commit(struct sp_db_tx *tx);
void sp_db_tx_rollback(struct sp_db_tx *tx);

/* LISTEN on channel through a dedicated connection, re-subscribed after reconnects. */
int sp_db_listen(struct sp_db *db, const char *channel, sp_db_notify_fn *cb, void *arg);
/* NOTIFY through the pool (pg_notify($1,$2)). */
int sp_db_notify(struct sp_db *db, const char *channel, const char *payload);

/* Pool health for /ready and /metrics. */
bool sp_db_is_up(const struct sp_db *db);
struct sp_db_stats {
	int size, connected, busy, queued;
	unsigned long long queries, errors;
};
void sp_db_get_stats(const struct sp_db *db, struct sp_db_stats *out);

/* Result accessors (all take a borrowed result; NULL, as a successful tx done gets,
 * reads as OK and empty). */
bool sp_db_result_ok(const struct sp_db_result *res);              /* command or tuples OK */
const char *sp_db_result_sqlstate(const struct sp_db_result *res); /* "" when ok */
const char *sp_db_result_error(const struct sp_db_result *res);    /* "" when ok */
int sp_db_result_ntuples(const struct sp_db_result *res);
int sp_db_result_nfields(const struct sp_db_result *res);
const char *sp_db_result_fname(const struct sp_db_result *res, int col);
int sp_db_result_fnumber(const struct sp_db_result *res, const char *name); /* -1 if none */
const char *sp_db_result_value(const struct sp_db_result *res, int row, int col);
bool sp_db_result_isnull(const struct sp_db_result *res, int row, int col);
const char *sp_db_result_cmd_tuples(const struct sp_db_result *res); /* "INSERT 0 1" count */
/* Row as a JSON object (new reference): int2/4/8 → integer, float/numeric → real,
 * bool → true/false, json/jsonb → parsed value, NULL → null, others → string. */
json_t *sp_db_result_row_json(const struct sp_db_result *res, int row);
/* All rows as an array of such objects (new reference). */
json_t *sp_db_result_rows_json(const struct sp_db_result *res);

/* SQL text for a timestamptz column as RFC 3339 UTC ("2026-11-23T18:33:06Z"). */
#define SP_SQL_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* SQLSTATEs the pool itself reports. */
#define SP_DB_STATE_UNAVAILABLE "SP503" /* no connection within queue_timeout / db down */
#define SP_DB_STATE_ROLLBACK    "SP000" /* the transaction body rolled back */

#endif
