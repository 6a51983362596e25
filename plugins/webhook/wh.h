/* wh.h — shared state of the webhook plugin: the settings in force, the core services
 * and what the delivery (wh_deliver.c) and HTTP (wh_routes.c) halves offer each other. */
#ifndef SP_WEBHOOK_H
#define SP_WEBHOOK_H

#include <spearhead/plugin.h>

#include "wh_logic.h"

#define WH_VERSION "1.0.0"

/* SQL formatting a timestamptz as the core's answers do (UTC, seconds): "to_char(col
 * AT TIME ZONE 'UTC', " WH_TS_FMT ")". */
#define WH_TS_FMT "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'"

struct wh_config {
	struct wh_policy policy;
	unsigned schedule[WH_SCHEDULE_MAX];
	int nschedule;
	long timeout_s;         /* whole request */
	long rotation_window_s; /* the previous secret keeps signing this long */
	long max_endpoints;     /* per organisation */
	long retention_days;    /* of the deliveries log */
};

struct wh_send;
struct wh_delivery;

struct wh {
	const struct sp_api *api;
	struct sp_plugin *plugin;
	struct wh_config cfg;
	int sending; /* deliveries and pings under way, queued ones included */
	struct sp_metric *m_delivered, *m_failed, *m_refused, *m_sending;
	struct sp_timer *janitor;
	/* Jobs claimed together are loaded with one query, and attempts are logged a batch
	 * at a time: fewer database round trips per delivery. */
	struct wh_send *loading, *recording;
	struct wh_delivery *dloading; /* delivery jobs, loaded with their endpoints */
	int nloading, nrecording, ndloading;
	struct sp_timer *load_timer, *record_timer, *dload_timer;
	/* Requests under way are at most post_max (the concurrency setting); deliveries
	 * loaded meanwhile wait in order for one to end. Ping requests are not counted. */
	struct wh_send *waiting, *waiting_last;
	int posting, post_max;
	/* Transfer handles of ended requests (CURL *, at most post_max), used again: a new
	 * one per request costs allocations the size of curl's buffers. */
	void **idle_easy;
	int nidle;
	bool closing; /* shut down: handles are no longer kept */
};

/* Reads validated settings (borrowed) into cfg. Returns 0, or -1 with a message in
 * err when retry_schedule is not a schedule. */
int wh_config_read(const json_t *settings, struct wh_config *cfg, char *err, size_t errsize);

/* ---- wh_deliver.c ---- */

/* Registers the channel and the job handlers ("deliver.webhook" posts an outbox row to
 * every subscribed endpoint; "webhook.send" retries one endpoint). concurrency: requests
 * at a time per worker. */
int wh_deliver_init(struct wh *wh, int concurrency);
/* Frees what waits in the batches (at shutdown; their jobs are left to their lease). */
void wh_deliver_shutdown(struct wh *wh);
/* POST /v1/webhooks/{id}/test: one signed ping to the endpoint (org_filter: NULL for
 * admins, else the caller's organisation); answers with the attempt's outcome. */
void wh_deliver_ping(struct wh *wh, struct sp_request *req, const char *endpoint_id,
                     const char *org_filter);

/* ---- wh_routes.c ---- */

int wh_routes_init(struct wh *wh);

#endif
