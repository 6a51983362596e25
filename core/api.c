/* api.c — the core-services table plugins receive. Each entry forwards to the core
 * module that owns the work, attributing registrations to the calling plugin. */
#include "api.h"
#include "bus.h"
#include "db.h"
#include "curl.h"
#include "jobs.h"
#include "loader.h"
#include "log.h"
#include "metrics.h"
#include "router.h"
#include "serve.h"
#include "server.h"
#include "util.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct sp_timer {
	struct event *ev;
	struct sp_plugin *plugin;
	sp_timer_fn *cb;
	void *arg;
	bool repeat;
	struct sp_timer *next, **prevp;
};

static void api_log(struct sp_plugin *plugin, enum sp_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sp_logv(level, plugin ? sp_plugin_name(plugin) : NULL, fmt, ap);
	va_end(ap);
}

static int api_route_add(struct sp_plugin *plugin, const struct sp_route *route)
{
	char err[256];
	struct sp_core *core = sp_plugin_core(plugin);
	if (!route || !route->pattern || strncmp(route->pattern, "/v1/", 4) != 0) {
		sp_error("plugin %s: route patterns must start with /v1/", sp_plugin_name(plugin));
		return -1;
	}
	/* The handler receives the plugin's state, which init() may set after adding
	 * routes: pass the plugin and resolve the state at call time. */
	if (sp_router_add(core->router, route, plugin, NULL, err, sizeof(err)) < 0) {
		sp_error("plugin %s: %s", sp_plugin_name(plugin), err);
		return -1;
	}
	return 0;
}

/* Keeps the request id and plugin in the log context across the asynchronous hop. */
struct query_ctx {
	sp_db_result_fn *cb;
	void *arg;
	struct sp_plugin *plugin;
	char rid[65];
};

static void query_done(const struct sp_db_result *res, void *arg)
{
	struct query_ctx *q = arg;
	sp_log_set_context(q->rid[0] ? q->rid : NULL, sp_plugin_name(q->plugin));
	q->cb(res, q->arg);
	sp_log_set_context(NULL, NULL);
	free(q);
}

static struct query_ctx *query_ctx_new(struct sp_plugin *plugin, sp_db_result_fn *cb, void *arg)
{
	struct query_ctx *q = sp_calloc(1, sizeof(*q));
	q->cb = cb;
	q->arg = arg;
	q->plugin = plugin;
	const char *rid, *pl;
	sp_log_get_context(&rid, &pl);
	snprintf(q->rid, sizeof(q->rid), "%s", rid ? rid : "");
	return q;
}

static int api_db_query(struct sp_plugin *plugin, const char *sql, int nparams,
                        const char *const *params, sp_db_result_fn *cb, void *arg)
{
	struct query_ctx *q = query_ctx_new(plugin, cb, arg);
	if (sp_db_query(sp_plugin_core(plugin)->db, sql, nparams, params, query_done, q) < 0) {
		free(q);
		return -1;
	}
	return 0;
}

static int api_db_query_prepared(struct sp_plugin *plugin, const char *name, const char *sql,
                                 int nparams, const char *const *params, sp_db_result_fn *cb,
                                 void *arg)
{
	/* Statement names are per connection and shared by all plugins: scope them. */
	char scoped[64];
	int n = snprintf(scoped, sizeof(scoped), "%s.%s", sp_plugin_name(plugin), name ? name : "");
	if (!name || !*name || n >= (int)sizeof(scoped))
		return -1;
	struct query_ctx *q = query_ctx_new(plugin, cb, arg);
	if (sp_db_query_prepared(sp_plugin_core(plugin)->db, scoped, sql, nparams, params,
	                         query_done, q) < 0) {
		free(q);
		return -1;
	}
	return 0;
}

static int api_db_tx(struct sp_plugin *plugin, const char *isolation, int max_retries,
                     sp_db_tx_fn *body, sp_db_tx_done_fn *done, void *arg)
{
	return sp_db_tx(sp_plugin_core(plugin)->db, isolation, max_retries, body, done, arg);
}

static int api_bus_subscribe(struct sp_plugin *plugin, const char *pattern, sp_bus_fn *cb,
                             void *arg)
{
	return sp_bus_subscribe(sp_plugin_core(plugin)->bus, plugin, pattern, cb, arg);
}

static int api_bus_emit(struct sp_plugin *plugin, const char *type, json_t *data)
{
	return sp_bus_emit(sp_plugin_core(plugin)->bus, type, data);
}

static void timer_free(struct sp_timer *t)
{
	*t->prevp = t->next;
	if (t->next)
		t->next->prevp = t->prevp;
	event_free(t->ev);
	free(t);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sp_timer *t = arg;
	sp_timer_fn *cb = t->cb;
	void *cbarg = t->arg;
	struct sp_plugin *plugin = t->plugin;
	if (!t->repeat)
		timer_free(t); /* a one-shot timer's handle is invalid once it fired */
	sp_log_set_context(NULL, sp_plugin_name(plugin));
	cb(cbarg);
	sp_log_set_context(NULL, NULL);
}

static struct sp_timer *api_timer_add(struct sp_plugin *plugin, unsigned interval_ms, bool repeat,
                                      sp_timer_fn *cb, void *arg)
{
	if (!cb)
		return NULL;
	struct sp_timer *t = sp_calloc(1, sizeof(*t));
	t->plugin = plugin;
	t->cb = cb;
	t->arg = arg;
	t->repeat = repeat;
	t->ev = event_new(sp_plugin_core(plugin)->base, -1, repeat ? EV_PERSIST : 0, timer_cb, t);
	struct sp_timer **head = sp_plugin_timers(plugin);
	t->next = *head;
	if (t->next)
		t->next->prevp = &t->next;
	t->prevp = head;
	*head = t;
	struct timeval tv = { interval_ms / 1000, (interval_ms % 1000) * 1000 };
	event_add(t->ev, &tv);
	return t;
}

static void api_timer_cancel(struct sp_timer *t)
{
	if (t)
		timer_free(t);
}

void sp_api_cancel_timers(struct sp_timer **list)
{
	while (*list)
		timer_free(*list);
}

static struct sp_metric *api_metric_counter(struct sp_plugin *plugin, const char *name,
                                            const char *help)
{
	return sp_metrics_register(sp_plugin_core(plugin)->metrics, plugin, sp_plugin_name(plugin),
	                           name, help, false);
}

static struct sp_metric *api_metric_gauge(struct sp_plugin *plugin, const char *name,
                                          const char *help)
{
	return sp_metrics_register(sp_plugin_core(plugin)->metrics, plugin, sp_plugin_name(plugin),
	                           name, help, true);
}

static const json_t *api_settings(struct sp_plugin *plugin)
{
	return sp_plugin_current_settings(plugin);
}

/* Scorers registered by plugins; few, so a list. */
struct scorer {
	struct sp_plugin *owner;
	char *name;
	struct sp_scorer_ops ops;
	struct scorer *next;
};
static struct scorer *scorers;

static int api_scorer_register(struct sp_plugin *plugin, const char *name,
                               const struct sp_scorer_ops *ops)
{
	if (!sp_is_ident(name) || !ops || !ops->score || ops->size < sizeof(struct sp_scorer_ops))
		return -1;
	for (struct scorer *s = scorers; s; s = s->next)
		if (strcmp(s->name, name) == 0)
			return -1;
	struct scorer *s = sp_calloc(1, sizeof(*s));
	s->owner = plugin;
	s->name = sp_strdup(name);
	s->ops = *ops;
	s->next = scorers;
	scorers = s;
	return 0;
}

static const struct sp_scorer_ops *api_scorer_find(const char *name)
{
	for (struct scorer *s = scorers; name && s; s = s->next)
		if (strcmp(s->name, name) == 0)
			return &s->ops;
	return NULL;
}

void sp_api_remove_owner(struct sp_plugin *plugin)
{
	struct scorer **p = &scorers;
	while (*p) {
		if ((*p)->owner == plugin) {
			struct scorer *dead = *p;
			*p = dead->next;
			free(dead->name);
			free(dead);
		} else {
			p = &(*p)->next;
		}
	}
}

static int api_job_handle(struct sp_plugin *plugin, const char *queue, int concurrency,
                          sp_job_fn *fn, void *arg)
{
	struct sp_core *core = sp_plugin_core(plugin);
	return core->jobs ? sp_jobs_handle(core->jobs, plugin, queue, concurrency, fn, arg) : -1;
}

static int api_job_enqueue(struct sp_plugin *plugin, const char *queue, const json_t *payload,
                           unsigned delay_s, const char *dedupe_key, sp_db_result_fn *cb, void *arg)
{
	return sp_jobs_enqueue(sp_plugin_core(plugin), NULL, queue, payload, delay_s, dedupe_key,
	                       cb, arg);
}

static int api_job_enqueue_tx(struct sp_db_tx *tx, const char *queue, const json_t *payload,
                              unsigned delay_s, const char *dedupe_key, sp_db_result_fn *cb,
                              void *arg)
{
	return tx ? sp_jobs_enqueue(NULL, tx, queue, payload, delay_s, dedupe_key, cb, arg) : -1;
}

static int api_channel_register(struct sp_plugin *plugin, const char *name,
                                enum sp_channel_audience audience)
{
	return sp_channels_register(sp_plugin_core(plugin), plugin, name, audience);
}

static int api_notify_tx(struct sp_db_tx *tx, const struct sp_notification *n, sp_db_result_fn *cb,
                         void *arg)
{
	return tx ? sp_notify(NULL, tx, n, cb, arg) : -1;
}

static int api_notify(struct sp_plugin *plugin, const struct sp_notification *n,
                      sp_db_result_fn *cb, void *arg)
{
	return sp_notify(sp_plugin_core(plugin), NULL, n, cb, arg);
}

static int api_curl_add(struct sp_plugin *plugin, void *easy, sp_curl_done_fn *done, void *arg)
{
	return sp_curl_add(sp_plugin_core(plugin)->curl, plugin, easy, done, arg);
}

static int api_reply_header(struct sp_request *req, const char *name, const char *value)
{
	static const char *const owned[] = { "content-type", "content-length", "connection",
		                             "transfer-encoding", "x-request-id" };
	static const char token_chars[] = "!#$%&'*+-.^_`|~";
	if (!req || !name || !*name || !value)
		return -1;
	for (const char *c = name; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || strchr(token_chars, *c)))
			return -1;
	for (const unsigned char *c = (const unsigned char *)value; *c; c++)
		if ((*c < 0x20 && *c != '\t') || *c == 0x7f)
			return -1;
	for (size_t i = 0; i < SP_ARRAY_LEN(owned); i++)
		if (strcasecmp(name, owned[i]) == 0)
			return -1;
	sp_request_add_header(req, name, value);
	return 0;
}

const json_t *sp_api_stored_settings(struct sp_core *core, const char *name)
{
	return core->stored_settings ? json_object_get(core->stored_settings, name) : NULL;
}

static const struct sp_api api_table = {
	.size = sizeof(struct sp_api),
	.abi_major = SP_ABI_MAJOR,
	.abi_minor = SP_ABI_MINOR,
	.log = api_log,
	.route_add = api_route_add,
	.req_param = sp_request_param,
	.req_query = sp_request_query,
	.req_header = sp_request_header,
	.req_id = sp_request_id,
	.req_json = sp_request_json,
	.reply_json = sp_request_reply_json,
	.reply_problem = sp_request_reply_problem,
	.reply_raw = sp_request_reply_raw,
	.reply_db_error = sp_request_reply_db_error,
	.db_query = api_db_query,
	.db_tx = api_db_tx,
	.db_tx_query = sp_db_tx_query,
	.db_tx_commit = sp_db_tx_commit,
	.db_tx_rollback = sp_db_tx_rollback,
	.db_ok = sp_db_result_ok,
	.db_sqlstate = sp_db_result_sqlstate,
	.db_ntuples = sp_db_result_ntuples,
	.db_value = sp_db_result_value,
	.db_isnull = sp_db_result_isnull,
	.db_row_json = sp_db_result_row_json,
	.db_rows_json = sp_db_result_rows_json,
	.bus_subscribe = api_bus_subscribe,
	.bus_emit = api_bus_emit,
	.timer_add = api_timer_add,
	.timer_cancel = api_timer_cancel,
	.metric_counter = api_metric_counter,
	.metric_gauge = api_metric_gauge,
	.metric_add = sp_metric_add,
	.metric_set = sp_metric_set,
	.settings = api_settings,
	.db_query_prepared = api_db_query_prepared,
	.req_principal = sp_request_principal,
	.scorer_register = api_scorer_register,
	.scorer_find = api_scorer_find,
	.job_handle = api_job_handle,
	.job_enqueue = api_job_enqueue,
	.job_enqueue_tx = api_job_enqueue_tx,
	.job_finish = sp_job_finish,
	.job_attempt = sp_job_attempt,
	.job_id = sp_job_id,
	.channel_register = api_channel_register,
	.notify_tx = api_notify_tx,
	.notify = api_notify,
	.curl_add = api_curl_add,
	.reply_stream_start = sp_request_stream_start,
	.stream_send = sp_request_stream_send,
	.stream_end = sp_request_stream_end,
	.reply_header = api_reply_header,
};

const struct sp_api *sp_api_table(void)
{
	return &api_table;
}
