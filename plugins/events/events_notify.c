/* events_notify.c — hands the plugin's notices (events_notices, written in the same
 * transaction as each registration change) to the core's notification outbox, so that
 * attendees are told through their channels (feed, e-mail, webhooks). One transaction
 * claims a batch with FOR UPDATE SKIP LOCKED, writes the outbox rows with notify_tx and
 * marks the batch relayed: each notice reaches the outbox once, whichever process or
 * instance relays it, and the dedupe key makes a repeat harmless anyway. Runs after
 * each change (coalesced) and every few seconds for what another process left. */
#include "events.h"
#include "events_format.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RELAY_BATCH       200
#define RELAY_INTERVAL_MS 2000
#define RELAY_DELAY_MS    100 /* after a change, to batch bursts */

struct relay_run {
	struct ev_plugin *ev;
	struct sp_db_tx *tx;
	int claimed;
};

static void relay_start(struct ev_plugin *ev);

/* The person-facing words for a notice; NULL for notices nobody is told about. */
static const char *title_of(const char *type)
{
	if (strcmp(type, "registration.confirmed") == 0)
		return "Registration confirmed";
	if (strcmp(type, "registration.waitlisted") == 0)
		return "You are on the waiting list";
	if (strcmp(type, "registration.promoted") == 0)
		return "A seat is yours: you moved up from the waiting list";
	if (strcmp(type, "registration.cancelled") == 0)
		return "Registration cancelled";
	return NULL;
}

static void relay_claimed(const struct sp_db_result *res, void *arg)
{
	struct relay_run *run = arg;
	struct ev_plugin *ev = run->ev;
	const struct sp_api *api = ev->api;
	int n = api->db_ntuples(res);
	run->claimed = n;
	if (n == 0) {
		api->db_tx_commit(run->tx);
		return;
	}
	struct ev_buf ids = { 0 };
	ev_buf_puts(&ids, "{");
	for (int i = 0; i < n; i++) {
		const char *id = api->db_value(res, i, 0);
		const char *type = api->db_value(res, i, 1);
		const char *user = api->db_value(res, i, 2);
		const char *event_title = api->db_value(res, i, 4);
		const char *starts = api->db_value(res, i, 5);
		const char *tz = api->db_value(res, i, 6);
		ev_buf_puts(&ids, i ? "," : "");
		ev_buf_puts(&ids, id);
		const char *what = title_of(type);
		if (!what || !user)
			continue; /* nobody to tell: only marked as relayed */
		json_t *data = ev_json_value(api, res, i, 3);
		char title[300], body[600], key[64];
		snprintf(title, sizeof(title), "%s: %s", what,
		         event_title ? event_title : "an event");
		long long pos = json_integer_value(json_object_get(data, "waitlist_position"));
		if (strcmp(type, "registration.waitlisted") == 0 && pos > 0)
			snprintf(body, sizeof(body),
			         "%s starts at %s (%s). You are number %lld on the waiting list; "
			         "you will be told when a seat frees up.",
			         event_title ? event_title : "The event", starts ? starts : "?",
			         tz ? tz : "UTC", pos);
		else
			snprintf(body, sizeof(body), "%s starts at %s (%s).",
			         event_title ? event_title : "The event", starts ? starts : "?",
			         tz ? tz : "UTC");
		snprintf(key, sizeof(key), "events.notice.%s", id);
		struct sp_notification note = {
			.type = type,
			.user_id = user,
			.dedupe_key = key,
			.title = title,
			.body = body,
			.data = data,
		};
		int rc = api->notify_tx(run->tx, &note, NULL, NULL);
		json_decref(data);
		if (rc < 0) {
			api->log(ev->plugin, SP_LOG_WARN,
			         "cannot queue notification %s; retrying later", id);
			ev_buf_free(&ids);
			run->claimed = 0;
			api->db_tx_rollback(run->tx);
			return;
		}
	}
	ev_buf_puts(&ids, "}");
	char *list = ev_buf_take(&ids);
	const char *params[] = { list };
	if (!list ||
	    api->db_tx_query(
	        run->tx,
	        "UPDATE events_notices SET relayed_at = now() WHERE id = ANY($1::bigint[])", 1,
	        params, NULL, NULL) < 0) {
		run->claimed = 0;
		api->db_tx_rollback(run->tx);
	} else {
		api->db_tx_commit(run->tx);
	}
	free(list);
}

static void relay_body(struct sp_db_tx *tx, void *arg)
{
	struct relay_run *run = arg;
	const struct sp_api *api = run->ev->api;
	run->tx = tx;
	run->claimed = 0;
	char limit[16];
	snprintf(limit, sizeof(limit), "%d", RELAY_BATCH);
	const char *params[] = { limit };
	if (api->db_tx_query(
	        tx,
	        "SELECT n.id, n.type, n.user_id, n.data, e.title, events_ts(e.starts_at), "
	        "e.timezone FROM events_notices n LEFT JOIN events_events e "
	        "ON e.id = n.event_id WHERE n.relayed_at IS NULL ORDER BY n.id "
	        "LIMIT $1::int FOR UPDATE OF n SKIP LOCKED",
	        1, params, relay_claimed, run) < 0)
		api->db_tx_rollback(tx);
}

static void relay_done(const struct sp_db_result *err, void *arg)
{
	struct relay_run *run = arg;
	struct ev_plugin *ev = run->ev;
	bool more = !err && run->claimed == RELAY_BATCH;
	free(run);
	ev->relay_running = false;
	if (err && strcmp(ev->api->db_sqlstate(err), "SP503") != 0 &&
	    strcmp(ev->api->db_sqlstate(err), "SP000") != 0)
		ev->api->log(ev->plugin, SP_LOG_WARN,
		             "relaying notices failed (%s); retrying later",
		             ev->api->db_sqlstate(err));
	if (more || ev->relay_again) {
		ev->relay_again = false;
		relay_start(ev);
	}
}

static void relay_start(struct ev_plugin *ev)
{
	if (!ev->relay_enabled || ev->relay_running)
		return;
	struct relay_run *run = calloc(1, sizeof(*run));
	if (!run)
		return;
	run->ev = ev;
	ev->relay_running = true;
	if (ev->api->db_tx(ev->plugin, NULL, 3, relay_body, relay_done, run) < 0) {
		ev->relay_running = false;
		free(run);
	}
}

static void relay_delayed(void *arg)
{
	struct ev_plugin *ev = arg;
	ev->relay_pending = false;
	relay_start(ev);
}

void ev_relay_kick(struct ev_plugin *ev)
{
	if (!ev->relay_enabled)
		return;
	if (ev->relay_running) {
		ev->relay_again = true;
	} else if (!ev->relay_pending) {
		/* A moment later, so that a burst of registrations makes one batch. */
		ev->relay_pending = ev->api->timer_add(ev->plugin, RELAY_DELAY_MS, false,
		                                       relay_delayed, ev) != NULL;
	}
}

static void relay_tick(void *arg)
{
	relay_start(arg);
}

void ev_relay_init(struct ev_plugin *ev)
{
	const struct sp_api *api = ev->api;
	ev->relay_enabled =
	    api->size >= offsetof(struct sp_api, notify_tx) + sizeof(api->notify_tx) &&
	    api->notify_tx;
	if (!ev->relay_enabled) {
		api->log(ev->plugin, SP_LOG_WARN,
		         "this core has no notification outbox: registration changes are announced "
		         "on the bus only");
		return;
	}
	api->timer_add(ev->plugin, RELAY_INTERVAL_MS, true, relay_tick, ev);
}
