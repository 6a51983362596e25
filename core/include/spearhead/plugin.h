/* spearhead/plugin.h — the public, versioned plugin API of Spearhead.
 *
 * A plugin is one shared module exporting one descriptor named sp_plugin_<name>
 * (see SP_PLUGIN_DEFINE). The core hands init() a table of core services
 * (struct sp_api); that table is the only way a plugin reaches the core.
 *
 * Ownership is stated per parameter in jansson's words: "borrowed" (valid only
 * during the call, do not free), "stolen" (the callee takes the reference) and
 * "new" (the caller must release it). Strings returned by the core are borrowed.
 *
 * Compatibility: the core accepts a plugin whose ABI major equals SP_ABI_MAJOR and
 * whose ABI minor is lower or equal to the core's. Fields are only ever appended to
 * struct sp_api, and every release that appends one bumps SP_ABI_MINOR (1.0 is the
 * first released ABI). Structs the plugin passes in (sp_route, sp_setting, ...) never
 * change within a major version.
 */
#ifndef SPEARHEAD_PLUGIN_H
#define SPEARHEAD_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SP_ABI_MAJOR    1
#define SP_ABI_MINOR    0
#define SP_PLUGIN_MAGIC 0x53504c47u /* "SPLG" */

#if defined(__GNUC__)
#define SP_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define SP_MUST_CHECK        __attribute__((warn_unused_result))
#define SP_EXPORT            __attribute__((visibility("default")))
#else
#define SP_EXPORT
#define SP_PRINTF(fmt, args)
#define SP_MUST_CHECK
#endif

struct sp_api;
struct sp_plugin;    /* the core's record of one loaded plugin (opaque) */
struct sp_request;   /* one HTTP request being answered (opaque) */
struct sp_db_result; /* one query result, borrowed by callbacks (opaque) */
struct sp_db_tx;     /* one database transaction (opaque) */
struct sp_timer;     /* one timer (opaque) */
struct sp_metric;    /* one metric (opaque) */

enum sp_log_level { SP_LOG_ERROR = 0, SP_LOG_WARN = 1, SP_LOG_INFO = 2, SP_LOG_DEBUG = 3 };

/* Who may call a route; the core checks it before the handler runs. */
enum sp_access {
	SP_ACCESS_PUBLIC = 0, /* anyone, no credentials */
	SP_ACCESS_USER = 1,   /* any authenticated user */
	SP_ACCESS_ADMIN = 2,  /* cluster staff only */
};

/* An HTTP handler. It must answer exactly once, now or later (after a query), with
 * one of the reply_* functions. plugin_state is what init() stored. */
typedef void sp_route_fn(struct sp_request *req, void *plugin_state);

struct sp_route {
	const char *method;  /* "GET", "POST", "PUT", "PATCH", "DELETE" */
	const char *pattern; /* e.g. "/v1/example/{id}"; must start with "/v1/" */
	enum sp_access access;
	sp_route_fn *handler;
	const char *summary;         /* one line for the OpenAPI document */
	const char *request_schema;  /* JSON Schema (text) of the body, or NULL */
	const char *response_schema; /* JSON Schema (text) of a 2xx body, or NULL */
};

/* Setting types, declared by the plugin; the core validates values against them. */
enum sp_setting_type {
	SP_SETTING_BOOL = 0,
	SP_SETTING_INT = 1,
	SP_SETTING_NUMBER = 2,
	SP_SETTING_STRING = 3,
};

struct sp_setting {
	const char *name; /* [a-z0-9_]+ */
	enum sp_setting_type type;
	const char *default_json; /* default as JSON text: "true", "42", "\"hi\"" */
	double min, max;          /* bounds for INT/NUMBER, string length for STRING; 0,0 = none */
	const char *help;         /* one line; shown in docs and the settings schema */
};

/* One schema migration owned by the plugin, applied once, in array order. */
struct sp_migration {
	const char *name; /* unique within the plugin, e.g. "0001_init" */
	const char *sql;  /* may hold several statements; runs inside one transaction */
};

/* Who is calling: resolved from the bearer token before the handler runs. */
struct sp_principal {
	const char *user_id; /* opaque id */
	const char *email;
	const char *org_id;   /* NULL when the user belongs to no organisation */
	const char *org_role; /* "member" or "manager"; NULL without organisation */
	bool is_admin;        /* cluster staff */
};

/* Matchmaking: a topic entry of a profile, and an organisation's profile as scorers
 * see it. All strings borrowed for the duration of the call. */
struct sp_match_topic {
	const char *slug;
	int level; /* 1..3 */
};

struct sp_match_profile {
	const char *org_id;
	const char *name;
	const char *kind; /* sme, large_enterprise, hospital, ... */
	const char *country;
	const char *region;
	const struct sp_match_topic *offers;
	size_t noffers;
	const struct sp_match_topic *seeks;
	size_t nseeks;
};

/* A scorer re-ranks the candidates the matchmaking index pre-selected. score() returns
 * a value in [0, 1] and appends its reasons to reasons (borrowed JSON array) as objects
 * {"topic", "relation", "contribution"} whose contributions sum to the score. sought
 * is what the requester looks for (may differ from requester->seeks). */
struct sp_scorer_ops {
	uint32_t size; /* sizeof(struct sp_scorer_ops) */
	const char *description;
	double (*score)(void *state, const struct sp_match_profile *requester,
	                const struct sp_match_topic *sought, size_t nsought,
	                const struct sp_match_profile *candidate, json_t *reasons);
	void *state; /* handed back to score() */
};

/* Durable jobs (PostgreSQL): a handler gets each claimed job of its queue and must end
 * it with job_finish, now or later. A job whose worker dies runs again once its lease
 * ([jobs] lease_s, 120 s by default) expires, so handlers must be idempotent (deliver
 * at least once). */
struct sp_job;
enum sp_job_outcome {
	SP_JOB_DONE = 0,  /* finished */
	SP_JOB_RETRY = 1, /* try again later (dead once max attempts are used up) */
	SP_JOB_FAIL = 2,  /* give up now: dead, kept with its error for admins */
};
typedef void sp_job_fn(struct sp_job *job, const json_t *payload, void *arg);

/* Notifications go through an outbox written in the same transaction as their cause;
 * channel plugins (feed, webhook, e-mail) deliver them from "deliver.<channel>" jobs. */
enum sp_channel_audience {
	SP_CHANNEL_USER = 0, /* delivered to a person (in-app feed, e-mail) */
	SP_CHANNEL_ORG = 1,  /* delivered to an organisation's systems (webhooks) */
};

struct sp_notification {
	const char *type;       /* e.g. "registration.promoted" */
	const char *user_id;    /* the person concerned, or NULL */
	const char *org_id;     /* the organisation concerned; NULL = the person's own */
	const char *dedupe_key; /* the same key, recipient and channel make one row */
	const char *title;      /* one readable line */
	const char *body;       /* a few lines of plain text */
	const json_t *data;     /* machine-readable details (borrowed), or NULL */
};

/* An outgoing transfer finished: easy is the CURL * handed to curl_add (the plugin
 * cleans it up), curl_code its CURLcode (0 = the transfer worked; check the HTTP status
 * with curl_easy_getinfo). */
typedef void sp_curl_done_fn(void *easy, int curl_code, void *arg);
/* A streamed answer's client went away: no more stream_* calls for req. */
typedef void sp_stream_closed_fn(struct sp_request *req, void *arg);

/* Callbacks. Borrowed arguments are valid only during the call. */
typedef void sp_db_result_fn(const struct sp_db_result *res, void *arg);
typedef void sp_db_tx_fn(struct sp_db_tx *tx, void *arg);
typedef void sp_db_tx_done_fn(const struct sp_db_result *err, void *arg);
typedef void sp_bus_fn(const char *type, json_t *data, void *arg); /* data borrowed */
typedef void sp_timer_fn(void *arg);

/* The descriptor each plugin exports (as const data). */
struct sp_plugin_desc {
	uint32_t magic;      /* SP_PLUGIN_MAGIC */
	uint16_t abi_major;  /* SP_ABI_MAJOR the plugin was built with */
	uint16_t abi_minor;  /* SP_ABI_MINOR the plugin was built with */
	uint32_t size;       /* sizeof(struct sp_plugin_desc) in the plugin's build */
	const char *name;    /* must equal the module's file name, [a-z0-9_]+ */
	const char *version; /* the plugin's own version, e.g. "1.2.0" */
	const char *description;
	const struct sp_setting *settings;     /* terminated by {NULL}; may be NULL */
	const struct sp_migration *migrations; /* terminated by {NULL}; may be NULL */
	/* Called once after migrations. settings is borrowed and already validated, with
	 * defaults filled in. Store private state in *state. Return 0, or -1 to be left
	 * out (log why through api->log first). */
	int (*init)(const struct sp_api *api, struct sp_plugin *plugin, const json_t *settings,
	            void **state);
	/* Called once at shutdown (not after a failed init). Free the state. */
	void (*shutdown)(void *state);
	/* Optional: new validated settings (borrowed) applied at run time. Return 0 or -1. */
	int (*reload)(void *state, const json_t *settings);
	void *reserved[8]; /* keep zero: room to grow without breaking the ABI */
};

#define SP_PLUGIN_DESC_HEADER                                                                      \
	.magic = SP_PLUGIN_MAGIC, .abi_major = SP_ABI_MAJOR, .abi_minor = SP_ABI_MINOR,            \
	.size = sizeof(struct sp_plugin_desc)

/* Declares the exported descriptor: SP_PLUGIN_DEFINE(example) = { SP_PLUGIN_DESC_HEADER, ... }; */
#define SP_PLUGIN_DEFINE(name_)                                                                    \
	extern const struct sp_plugin_desc sp_plugin_##name_;                                      \
	SP_EXPORT const struct sp_plugin_desc sp_plugin_##name_

/* Services of the core. All functions take the plugin's handle so that what it
 * registers belongs to it and is removed with it. */
struct sp_api {
	uint32_t size; /* sizeof(struct sp_api) in the core: check before using later fields */
	uint16_t abi_major, abi_minor;

	/* ---- logging ---- */
	void (*log)(struct sp_plugin *plugin, enum sp_log_level level, const char *fmt, ...)
	    SP_PRINTF(3, 4);

	/* ---- HTTP ---- */
	/* route is copied. Returns 0, or -1 (bad pattern, not under /v1/, duplicate). */
	int (*route_add)(struct sp_plugin *plugin, const struct sp_route *route);
	/* Path parameter {name}, query parameter, request header: borrowed, NULL if absent. */
	const char *(*req_param)(struct sp_request *req, const char *name);
	const char *(*req_query)(struct sp_request *req, const char *name);
	const char *(*req_header)(struct sp_request *req, const char *name);
	const char *(*req_id)(struct sp_request *req);
	/* The parsed JSON body (borrowed, owned by the request). NULL when absent or
	 * invalid: then the core has already answered (400/413/415) and the handler must
	 * return without replying. */
	json_t *(*req_json)(struct sp_request *req);
	/* Answers with JSON; body is stolen. */
	void (*reply_json)(struct sp_request *req, int status, json_t *body);
	/* Answers with application/problem+json; errors (stolen, may be NULL) is an object
	 * field → message for validation errors. */
	void (*reply_problem)(struct sp_request *req, int status, const char *title,
	                      const char *detail, json_t *errors);
	/* Answers with an arbitrary body (copied). */
	void (*reply_raw)(struct sp_request *req, int status, const char *content_type,
	                  const void *body, size_t len);
	/* Answers a failed query: 503 when the database is unavailable, 409 on a unique
	 * violation, 500 otherwise (the detail is logged, not shown). */
	void (*reply_db_error)(struct sp_request *req, const struct sp_db_result *res);

	/* ---- database (never blocks the loop) ---- */
	int (*db_query)(struct sp_plugin *plugin, const char *sql, int nparams,
	                const char *const *params, sp_db_result_fn *cb, void *arg) SP_MUST_CHECK;
	int (*db_tx)(struct sp_plugin *plugin, const char *isolation, int max_retries,
	             sp_db_tx_fn *body, sp_db_tx_done_fn *done, void *arg) SP_MUST_CHECK;
	int (*db_tx_query)(struct sp_db_tx *tx, const char *sql, int nparams,
	                   const char *const *params, sp_db_result_fn *cb, void *arg) SP_MUST_CHECK;
	void (*db_tx_commit)(struct sp_db_tx *tx);
	void (*db_tx_rollback)(struct sp_db_tx *tx);
	bool (*db_ok)(const struct sp_db_result *res);
	const char *(*db_sqlstate)(const struct sp_db_result *res);
	int (*db_ntuples)(const struct sp_db_result *res);
	const char *(*db_value)(const struct sp_db_result *res, int row, int col);
	bool (*db_isnull)(const struct sp_db_result *res, int row, int col);
	json_t *(*db_row_json)(const struct sp_db_result *res, int row); /* new reference */
	json_t *(*db_rows_json)(const struct sp_db_result *res);         /* new reference */

	/* ---- bus: in-process and across instances ---- */
	/* pattern: an exact type ("org.updated"), a prefix ("org.*") or "*". */
	int (*bus_subscribe)(struct sp_plugin *plugin, const char *pattern, sp_bus_fn *cb,
	                     void *arg);
	/* data is borrowed (serialised); delivered to local subscribers on the next loop
	 * turn and to other instances through PostgreSQL NOTIFY. */
	int (*bus_emit)(struct sp_plugin *plugin, const char *type, json_t *data);

	/* ---- timers ---- */
	struct sp_timer *(*timer_add)(struct sp_plugin *plugin, unsigned interval_ms, bool repeat,
	                              sp_timer_fn *cb, void *arg);
	void (*timer_cancel)(struct sp_timer *timer);

	/* ---- metrics (Prometheus text on /metrics, prefixed spearhead_<plugin>_) ---- */
	struct sp_metric *(*metric_counter)(struct sp_plugin *plugin, const char *name,
	                                    const char *help);
	struct sp_metric *(*metric_gauge)(struct sp_plugin *plugin, const char *name,
	                                  const char *help);
	void (*metric_add)(struct sp_metric *metric, double delta);
	void (*metric_set)(struct sp_metric *metric, double value);

	/* ---- settings ---- */
	/* The plugin's current validated settings (borrowed until the next reload). */
	const json_t *(*settings)(struct sp_plugin *plugin);

	/* ---- more database ---- */
	/* Like db_query, but the statement is prepared once per connection under name
	 * (unique within the plugin) and reused: for hot queries. */
	int (*db_query_prepared)(struct sp_plugin *plugin, const char *name, const char *sql,
	                         int nparams, const char *const *params, sp_db_result_fn *cb,
	                         void *arg) SP_MUST_CHECK;

	/* ---- identity ---- */
	/* The caller (borrowed, valid until the reply), or NULL when anonymous. */
	const struct sp_principal *(*req_principal)(struct sp_request *req);

	/* ---- matchmaking scorers ---- */
	/* Registers a scorer under name ([a-z0-9_]+; ops copied, state kept). -1 when the
	 * name is taken. Removed with the plugin. */
	int (*scorer_register)(struct sp_plugin *plugin, const char *name,
	                       const struct sp_scorer_ops *ops);
	/* The scorer registered under name (borrowed; valid while its plugin runs), or
	 * NULL. */
	const struct sp_scorer_ops *(*scorer_find)(const char *name);

	/* ---- durable jobs ---- */
	/* Serves queue ([a-z0-9_.]+) with at most concurrency jobs at a time per worker. */
	int (*job_handle)(struct sp_plugin *plugin, const char *queue, int concurrency,
	                  sp_job_fn *fn, void *arg);
	/* Adds a job (payload borrowed, may be NULL) to run after delay_s; while a job with
	 * the same queue and dedupe_key (may be NULL) exists, no second one is created
	 * (finished jobs are purged after 7 days). cb may be NULL. */
	int (*job_enqueue)(struct sp_plugin *plugin, const char *queue, const json_t *payload,
	                   unsigned delay_s, const char *dedupe_key, sp_db_result_fn *cb,
	                   void *arg);
	/* The same inside a transaction: the job exists only if the transaction commits. */
	int (*job_enqueue_tx)(struct sp_db_tx *tx, const char *queue, const json_t *payload,
	                      unsigned delay_s, const char *dedupe_key, sp_db_result_fn *cb,
	                      void *arg);
	/* Ends a claimed job (error copied, may be NULL). retry_s = 0 uses the default
	 * backoff: exponential with jitter. The job handle is invalid afterwards. */
	void (*job_finish)(struct sp_job *job, enum sp_job_outcome outcome, unsigned retry_s,
	                   const char *error);
	int (*job_attempt)(const struct sp_job *job); /* 1 on the first run */
	const char *(*job_id)(const struct sp_job *job);

	/* ---- notifications ---- */
	/* Declares a delivery channel ([a-z0-9_], at most 40 characters); the plugin serves
	 * it with its own job_handle on "deliver.<name>". */
	int (*channel_register)(struct sp_plugin *plugin, const char *name,
	                        enum sp_channel_audience audience);
	/* Writes a notification (type and dedupe_key required) to the outbox, inside tx:
	 * nothing is sent if the transaction rolls back. One row per person channel the
	 * person's preferences choose for the type (all when none are set) and per
	 * organisation channel; channels are those registered in this process. cb may be
	 * NULL. */
	int (*notify_tx)(struct sp_db_tx *tx, const struct sp_notification *n, sp_db_result_fn *cb,
	                 void *arg);
	/* The same on its own (when the cause is already committed). */
	int (*notify)(struct sp_plugin *plugin, const struct sp_notification *n,
	              sp_db_result_fn *cb, void *arg);

	/* ---- outgoing requests (libcurl, without blocking the loop) ---- */
	/* Runs a prepared CURL easy handle (passed as void * so this header does not need
	 * curl's); done runs once, later. Transfers still running when the plugin stops
	 * end with an abort code. */
	int (*curl_add)(struct sp_plugin *plugin, void *easy, sp_curl_done_fn *done, void *arg);

	/* ---- streamed answers (Server-Sent Events) ---- */
	/* Sends status and headers now; the answer then stays open. on_close (may be
	 * NULL) runs if the client leaves or the server stops first. */
	void (*reply_stream_start)(struct sp_request *req, int status, const char *content_type,
	                           sp_stream_closed_fn *on_close, void *arg);
	/* Sends one chunk (copied). */
	int (*stream_send)(struct sp_request *req, const void *data, size_t len);
	/* Ends the answer; req is invalid afterwards (on_close does not run). */
	void (*stream_end)(struct sp_request *req);

	/* ---- response headers ---- */
	/* Adds a header (both copied) to the answer req is about to get: call it before
	 * reply_*, e.g. Location with a 201 or Retry-After with a 429/503. Returns 0, or -1
	 * when name is not an HTTP token, value holds control characters, or name is one the
	 * core owns (Content-Type, Content-Length, Connection, Transfer-Encoding,
	 * X-Request-Id). */
	int (*reply_header)(struct sp_request *req, const char *name, const char *value);
};

#ifdef __cplusplus
}
#endif

#endif /* SPEARHEAD_PLUGIN_H */
