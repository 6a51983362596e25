/* events.h — what the files of the events plugin share: the plugin state, the state
 * of one request in flight, and helpers to query PostgreSQL and answer. Internal to the
 * module (nothing here is exported; the only exported symbol is sp_plugin_events). */
#ifndef EV_EVENTS_H
#define EV_EVENTS_H

#include <spearhead/plugin.h>

#include <stdbool.h>

#define EV_UNSAFE_ENV "SPEARHEAD_TEST_UNSAFE"

/* What registrations are checked against, per event: cached in each process and
 * trusted only at this version (events_register() answers "stale" otherwise). */
#define EV_META_SLOTS 64
struct ev_meta {
	char id[40]; /* "" for a free slot */
	int version;
	json_t *questions, *names; /* owned: the questions, the category names */
	unsigned long long used;   /* for least-recently-used replacement */
};

struct ev_regq; /* registrations of one event waiting for a batch */

/* The plugin's state, one per worker process. */
struct ev_plugin {
	const struct sp_api *api; /* borrowed from the core until shutdown */
	struct sp_plugin *plugin;
	/* Test-only: registrations skip the capacity guard (see docs/events.md). True only
	 * when the setting asks for it and the process runs with SPEARHEAD_TEST_UNSAFE=1. */
	bool unsafe;
	struct sp_metric *m_confirmed, *m_waitlisted, *m_cancelled, *m_promoted, *m_checkins,
	    *m_replays, *m_unsafe, *m_batches, *m_batched;
	/* The notice relay to the core's outbox (events_notify.c). */
	bool relay_enabled, relay_running, relay_again, relay_pending;
	struct ev_meta meta[EV_META_SLOTS];
	unsigned long long meta_clock;
	/* Registrations waiting for their event's batch (registration_routes.c). */
	struct ev_regq *regqs;
};

/* The cached metadata of event id (borrowed until the next store or drop), or NULL. */
const struct ev_meta *ev_meta_find(struct ev_plugin *ev, const char *id);
/* Caches questions and names (borrowed: the cache takes its own references). */
void ev_meta_store(struct ev_plugin *ev, const char *id, int version, json_t *questions,
                   json_t *names);
void ev_meta_drop(struct ev_plugin *ev, const char *id);

struct ev_op;
/* What to do with a function's outcome: body is borrowed (may be NULL). */
typedef void ev_outcome_fn(struct ev_op *op, const char *outcome, json_t *body);
/* The next step after a query: res is borrowed and successful. */
typedef void ev_step_fn(struct ev_op *op, const struct sp_db_result *res);
/* A failed call: true when handled (op answered or retried), false for the default
 * answer (reply_db_error). res is borrowed. */
typedef bool ev_error_fn(struct ev_op *op, const struct sp_db_result *res);

/* One request in flight: created by a handler, freed by whoever answers it. */
struct ev_op {
	struct ev_plugin *ev;
	struct sp_request *req;         /* valid until we reply */
	const struct sp_principal *who; /* borrowed; NULL when anonymous */
	char event_id[40], reg_id[40];  /* path parameters, validated */
	char code[16];                  /* a normalised check-in code, or "" */
	json_t *doc;                    /* owned: a document being built or sent */
	json_t *extra;                  /* owned: anything else the operation keeps */
	char *text;                     /* owned: a string the operation keeps */
	char *key;                      /* owned: the Idempotency-Key, or NULL */
	int limit;
	int attempts;
	bool csv;
	ev_outcome_fn *on_outcome;
	ev_error_fn *on_error; /* optional, for ev_call */
	ev_step_fn *next;
	json_t *item;        /* owned: a registration checked and ready to be made */
	struct ev_op *qnext; /* next registration waiting for the same event's batch */
};

struct ev_op *ev_op_new(struct ev_plugin *ev, struct sp_request *req);
void ev_op_free(struct ev_op *op);

/* The caller's user id and admin flag as query parameters (NULL / "false" when
 * anonymous). */
const char *ev_user_param(const struct ev_op *op);
const char *ev_admin_param(const struct ev_op *op);

/* Reads the uuid path parameter name into out (40 bytes); answers 404 and returns
 * false when it is not a uuid. */
bool ev_path_uuid(struct sp_request *req, const struct sp_api *api, const char *name, char *out,
                  const char *what);

/* Runs a prepared statement for op; cb gets op. When nothing could be queued, answers
 * 503, frees op and returns false. */
bool ev_query(struct ev_op *op, const char *name, const char *sql, int nparams,
              const char *const *params, sp_db_result_fn *cb);

/* Runs a prepared statement that calls one of the plugin's SQL functions returning
 * (outcome, body, notices): on success the notices are emitted on the bus and
 * op->on_outcome runs; a failed statement is answered with reply_db_error. */
bool ev_call(struct ev_op *op, const char *name, const char *sql, int nparams,
             const char *const *params, ev_outcome_fn *on_outcome);

/* Runs a query and then op->next(op, res) with a successful result; failures are
 * answered and op freed. */
bool ev_step(struct ev_op *op, const char *name, const char *sql, int nparams,
             const char *const *params, ev_step_fn *next);

/* Answers and frees op. body is stolen. */
void ev_reply(struct ev_op *op, int status, json_t *body);
void ev_problem(struct ev_op *op, int status, const char *title, const char *detail,
                json_t *errors);
void ev_reply_raw(struct ev_op *op, int status, const char *type, const char *body, size_t n);

/* Parses a JSON text column (NULL for SQL NULL or bad text): a new reference. */
json_t *ev_json_value(const struct sp_api *api, const struct sp_db_result *res, int row, int col);
json_t *ev_json_col(const struct ev_op *op, const struct sp_db_result *res, int row, int col);

/* Whether the request carries a body (Content-Length > 0 or chunked). */
bool ev_has_body(struct ev_plugin *ev, struct sp_request *req);

/* Emits notices (an array of {type, data}, borrowed) on the bus, counting them. */
void ev_emit_notices(struct ev_plugin *ev, const json_t *notices);

/* The notice relay: started by init, kicked after each registration change. */
void ev_relay_init(struct ev_plugin *ev);
void ev_relay_kick(struct ev_plugin *ev);

/* Answers the registrations still waiting for a batch (503) and frees the queues. */
void ev_regq_free_all(struct ev_plugin *ev);

/* Route tables of the two halves of the API. */
int ev_add_event_routes(struct ev_plugin *ev);
int ev_add_registration_routes(struct ev_plugin *ev);

#endif
