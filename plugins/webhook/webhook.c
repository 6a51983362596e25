/* webhook.c — the webhook notification channel: organisations register HTTPS endpoints
 * and receive their notifications as JSON POSTs signed the Standard Webhooks way, with
 * retries on a schedule, a deliveries log and request-forgery protection. This file
 * holds the descriptor, the settings and the plugin's lifecycle; wh_deliver.c sends,
 * wh_routes.c is the HTTP API. */
#include "wh.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Embedded from plugins/webhook/sql/ by build-aux/sql2c. */
extern const struct sp_migration wh_migrations[];

#define DEFAULT_SCHEDULE "5,30,60,300,1200,3600,14400,21600,43200,43200,86400"
#define JANITOR_MS       (3600 * 1000)

static const struct sp_setting wh_settings[] = {
	{ "allow_loopback", SP_SETTING_BOOL, "false", 0, 0,
	  "Allow deliveries to loopback addresses (127.0.0.0/8, ::1), for local tests; "
	  "SPEARHEAD_WEBHOOK_ALLOW_LOOPBACK=1 does the same" },
	{ "allow_private", SP_SETTING_BOOL, "false", 0, 0,
	  "Allow deliveries to private networks (10/8, 172.16/12, 192.168/16, 100.64/10, "
	  "fc00::/7); link-local and cloud metadata addresses stay refused" },
	{ "retry_schedule", SP_SETTING_STRING, "\"" DEFAULT_SCHEDULE "\"", 1, 400,
	  "Seconds to wait before each new attempt, comma-separated (jitter of 10% added); "
	  "after the last one the delivery is dead" },
	{ "timeout_s", SP_SETTING_INT, "30", 1, 300,
	  "Time limit of one delivery request in seconds (keep it below half [jobs] lease_s)" },
	{ "rotation_window_s", SP_SETTING_INT, "86400", 0, 2592000,
	  "Seconds the previous secret keeps signing after a rotation (two signatures)" },
	{ "concurrency", SP_SETTING_INT, "16", 1, 500,
	  "Requests under way per worker process; twice as many deliveries are held (read "
	  "at start)" },
	{ "max_endpoints", SP_SETTING_INT, "20", 1, 1000,
	  "Endpoints one organisation may register" },
	{ "retention_days", SP_SETTING_INT, "30", 1, 3650,
	  "Days an attempt stays in the deliveries log" },
	{ NULL, 0, NULL, 0, 0, NULL },
};

static bool env_allows_loopback(void)
{
	const char *v = getenv("SPEARHEAD_WEBHOOK_ALLOW_LOOPBACK");
	return v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0);
}

static long int_setting(const json_t *settings, const char *name, long def)
{
	json_t *v = json_object_get(settings, name);
	return json_is_integer(v) ? (long)json_integer_value(v) : def;
}

int wh_config_read(const json_t *s, struct wh_config *cfg, char *err, size_t errsize)
{
	struct wh_config c = { 0 };
	c.policy.allow_loopback =
	    json_is_true(json_object_get(s, "allow_loopback")) || env_allows_loopback();
	c.policy.allow_private = json_is_true(json_object_get(s, "allow_private"));
	c.timeout_s = int_setting(s, "timeout_s", 30);
	c.rotation_window_s = int_setting(s, "rotation_window_s", 86400);
	c.max_endpoints = int_setting(s, "max_endpoints", 20);
	c.retention_days = int_setting(s, "retention_days", 30);
	const char *sched = json_string_value(json_object_get(s, "retry_schedule"));
	c.nschedule = wh_schedule_parse(sched ? sched : DEFAULT_SCHEDULE, c.schedule, err, errsize);
	if (c.nschedule < 0)
		return -1;
	*cfg = c;
	return 0;
}

static void janitor_done(const struct sp_db_result *res, void *arg)
{
	struct wh *wh = arg;
	if (!wh->api->db_ok(res) && strcmp(wh->api->db_sqlstate(res), "SP503") != 0)
		wh->api->log(wh->plugin, SP_LOG_WARN, "cleaning the deliveries log failed (%s)",
		             wh->api->db_sqlstate(res));
}

/* Forgets attempts older than retention_days, a batch at a time. */
static void janitor(void *arg)
{
	struct wh *wh = arg;
	char days[24];
	snprintf(days, sizeof(days), "%ld", wh->cfg.retention_days);
	const char *params[] = { days };
	if (wh->api->db_query(wh->plugin,
	                      "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM "
	                      "webhook_deliveries WHERE created_at < now() - make_interval(days "
	                      "=> $1::int) LIMIT 10000)",
	                      1, params, janitor_done, wh) < 0)
		return;
}

static void log_policy(struct wh *wh)
{
	if (wh->cfg.policy.allow_loopback)
		wh->api->log(wh->plugin, SP_LOG_WARN,
		             "deliveries to loopback addresses are allowed (tests only)");
	if (wh->cfg.policy.allow_private)
		wh->api->log(wh->plugin, SP_LOG_WARN,
		             "deliveries to private network addresses are allowed");
}

static int webhook_init(const struct sp_api *api, struct sp_plugin *plugin, const json_t *settings,
                        void **state)
{
	struct wh *wh = calloc(1, sizeof(*wh));
	if (!wh)
		return -1;
	wh->api = api;
	wh->plugin = plugin;
	char err[160];
	if (wh_config_read(settings, &wh->cfg, err, sizeof(err)) < 0) {
		/* A bad stored value must not take webhooks down: use the default schedule. */
		api->log(plugin, SP_LOG_ERROR, "retry_schedule %s; using the default %s", err,
		         DEFAULT_SCHEDULE);
		json_t *fixed = json_deep_copy(settings);
		json_object_set_new(fixed, "retry_schedule", json_string(DEFAULT_SCHEDULE));
		int rc = wh_config_read(fixed, &wh->cfg, err, sizeof(err));
		json_decref(fixed);
		if (rc < 0) {
			free(wh);
			return -1;
		}
	}
	wh->m_delivered =
	    api->metric_counter(plugin, "delivered_total", "Webhook deliveries answered with 2xx");
	wh->m_failed = api->metric_counter(plugin, "failed_attempts_total",
	                                   "Webhook attempts that failed (no 2xx answer)");
	wh->m_refused = api->metric_counter(plugin, "refused_total",
	                                    "Webhook attempts refused before connecting "
	                                    "(private, loopback or link-local address)");
	wh->m_sending = api->metric_gauge(plugin, "in_flight", "Webhook requests under way");
	long concurrency = int_setting(settings, "concurrency", 16);
	if (wh_deliver_init(wh, (int)concurrency) < 0 || wh_routes_init(wh) < 0) {
		api->log(plugin, SP_LOG_ERROR, "cannot register the webhook channel and routes");
		free(wh);
		return -1;
	}
	wh->janitor = api->timer_add(plugin, JANITOR_MS, true, janitor, wh);
	log_policy(wh);
	*state = wh;
	return 0;
}

static int webhook_reload(void *state, const json_t *settings)
{
	struct wh *wh = state;
	struct wh_config cfg;
	char err[160];
	if (wh_config_read(settings, &cfg, err, sizeof(err)) < 0) {
		wh->api->log(wh->plugin, SP_LOG_ERROR,
		             "retry_schedule %s; keeping the previous "
		             "settings",
		             err);
		return -1;
	}
	wh->cfg = cfg;
	log_policy(wh);
	return 0;
}

static void webhook_shutdown(void *state)
{
	struct wh *wh = state;
	wh_deliver_shutdown(wh);
	if (wh->sending > 0) {
		/* The core ends transfers and queries before shutdown, so this does not
		 * happen; if it did, a late callback must still find the state. */
		wh->api->log(wh->plugin, SP_LOG_WARN,
		             "%d webhook delivery(ies) still under way at shutdown; their jobs "
		             "run again after their lease",
		             wh->sending);
		return;
	}
	free(wh);
}

SP_PLUGIN_DEFINE(webhook) = {
	SP_PLUGIN_DESC_HEADER,
	.name = "webhook",
	.version = WH_VERSION,
	.description = "Webhook notification channel: signed deliveries (Standard Webhooks) "
	               "to organisations' endpoints, with retries and a deliveries log",
	.settings = wh_settings,
	.migrations = wh_migrations,
	.init = webhook_init,
	.shutdown = webhook_shutdown,
	.reload = webhook_reload,
};
