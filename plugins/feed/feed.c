/* feed.c — the in-app notification feed: the "feed" delivery channel (each outbox row's
 * "deliver.feed" job puts it into the person's feed and announces it on the bus), the
 * list and read routes, and live Server-Sent Events streams that follow a person's feed
 * across instances and resume from Last-Event-ID.
 *
 * Streams never trust the bus alone: an announcement only makes a stream look in the
 * database for what follows the last item it sent ("catch-up"), and every heartbeat
 * also checks, in one query for all streams of the process, whether a person's feed
 * moved past what their streams sent. A lost NOTIFY delays an item by at most one
 * heartbeat; it is never skipped, because items become visible in seq order (see
 * sql/0001_feed.sql). */
#include "sse.h"

#include <spearhead/plugin.h>

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct sp_migration feed_migrations[]; /* generated from sql/ */

#define PAGE_DEFAULT        20
#define PAGE_MAX            100
#define STREAM_BATCH        100 /* items per catch-up query */
#define DELIVER_CONCURRENCY 16
#define STREAM_RETRY_MS     3000 /* the reconnection delay suggested to clients */

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
/* One item as the API shows it; f is feed_items (or a row of it), o its outbox row. */
#define ITEM_COLUMNS                                                                               \
	"o.id::text AS id, f.seq, o.type, o.title, o.body, o.data, " TS(                           \
	    "o.created_at") " AS created_at, " TS("f.read_at") " AS read_at"

struct stream;

struct feed {
	const struct sp_api *api; /* borrowed from the core until shutdown() */
	struct sp_plugin *plugin;
	long heartbeat_s, max_streams;
	struct sp_timer *tick;  /* owned by the core */
	struct stream *streams; /* open (or opening) streams of this process */
	long nstreams;
	bool polling; /* the heartbeat's query is in flight */
	struct sp_metric *m_delivered, *m_streams, *m_sent;
};

/* One client of GET /v1/notifications/stream. Freed when both the client is gone (req
 * NULL) and no query holds it (busy false). */
struct stream {
	struct feed *feed;
	struct sp_request *req; /* NULL once the client left or the server ended the answer */
	char user_id[40];
	long long last_seq; /* the last item sent, or where the stream started */
	bool resume;        /* the client gave Last-Event-ID: send what follows it */
	bool started;       /* status and headers sent */
	bool busy;          /* a query in flight has a pointer to this stream */
	bool again;         /* news came while busy: look again afterwards */
	bool linked;
	struct stream *next, *prev;
};

/* ---- small helpers ---- */

static const char *user_of(struct feed *f, struct sp_request *req)
{
	const struct sp_principal *me = f->api->req_principal(req);
	if (!me || !me->user_id) {
		f->api->reply_problem(req, 401, NULL, "sign in first", NULL);
		return NULL;
	}
	return me->user_id;
}

static void reply_unavailable(struct feed *f, struct sp_request *req)
{
	f->api->reply_problem(req, 503, NULL, "the database is unavailable", NULL);
}

/* A request and the plugin across one query. */
struct op {
	struct feed *feed;
	struct sp_request *req;
	int limit;
	long long up_to; /* read-all: the bound given, or -1 */
	char user_id[40];
	char id[40];
};

static struct op *op_new(struct feed *f, struct sp_request *req, const char *user_id)
{
	struct op *op = calloc(1, sizeof(*op));
	if (!op) {
		f->api->reply_problem(req, 500, NULL, "out of memory", NULL);
		return NULL;
	}
	op->feed = f;
	op->req = req;
	snprintf(op->user_id, sizeof(op->user_id), "%s", user_id);
	return op;
}

/* ---- the channel: deliver.feed jobs ---- */

struct delivery {
	struct feed *feed;
	struct sp_job *job;
};

static void delivered(const struct sp_db_result *res, void *arg)
{
	struct delivery *d = arg;
	struct feed *f = d->feed;
	const struct sp_api *api = f->api;
	struct sp_job *job = d->job;
	free(d);
	if (!api->db_ok(res)) {
		api->job_finish(job, SP_JOB_RETRY, 0, "could not write the feed item");
		return;
	}
	/* No row: already delivered (a job run again after its lease) or the outbox row is
	 * gone (its person was deleted). Both are done. */
	if (api->db_ntuples(res) == 1) {
		json_t *ev = json_pack("{s:s, s:s, s:I}", "user_id", api->db_value(res, 0, 0), "id",
		                       api->db_value(res, 0, 1), "seq",
		                       (json_int_t)strtoll(api->db_value(res, 0, 2), NULL, 10));
		api->bus_emit(f->plugin, "feed.new", ev);
		json_decref(ev);
		api->metric_add(f->m_delivered, 1);
	}
	api->job_finish(job, SP_JOB_DONE, 0, NULL);
}

static void deliver(struct sp_job *job, const json_t *payload, void *arg)
{
	struct feed *f = arg;
	const struct sp_api *api = f->api;
	const char *id = json_string_value(json_object_get(payload, "outbox_id"));
	if (!feed_valid_uuid(id)) {
		api->job_finish(job, SP_JOB_FAIL, 0, "payload without a valid outbox_id");
		return;
	}
	struct delivery *d = calloc(1, sizeof(*d));
	if (!d) {
		api->job_finish(job, SP_JOB_RETRY, 0, "out of memory");
		return;
	}
	d->feed = f;
	d->job = job;
	const char *params[] = { id };
	/* One statement: the person's counter row is locked until commit, so deliveries to
	 * one person commit in seq order. */
	if (api->db_query_prepared(
	        f->plugin, "feed_deliver",
	        "WITH o AS (SELECT id, user_id FROM sp_outbox WHERE id = $1::uuid AND channel = "
	        "'feed' AND user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM feed_items WHERE "
	        "outbox_id = $1::uuid)), "
	        "c AS (INSERT INTO feed_users (user_id, last_seq) SELECT user_id, 1 FROM o "
	        "ON CONFLICT (user_id) DO UPDATE SET last_seq = feed_users.last_seq + 1 "
	        "RETURNING user_id, last_seq) "
	        "INSERT INTO feed_items (outbox_id, user_id, seq) SELECT $1::uuid, c.user_id, "
	        "c.last_seq FROM c ON CONFLICT (outbox_id) DO NOTHING "
	        "RETURNING user_id::text, outbox_id::text, seq",
	        1, params, delivered, d) < 0) {
		free(d);
		api->job_finish(job, SP_JOB_RETRY, 0, "the database is unavailable");
	}
}

/* ---- GET /v1/notifications ---- */

static void listed(const struct sp_db_result *res, void *arg)
{
	struct op *op = arg;
	struct feed *f = op->feed;
	const struct sp_api *api = f->api;
	if (!api->db_ok(res)) {
		api->reply_db_error(op->req, res);
		free(op);
		return;
	}
	json_t *items = api->db_rows_json(res);
	json_t *next = json_null();
	if (json_array_size(items) > (size_t)op->limit) {
		json_array_remove(items, (size_t)op->limit);
		json_t *last = json_array_get(items, (size_t)op->limit - 1);
		char *c = feed_cursor_encode(json_integer_value(json_object_get(last, "seq")));
		if (c) {
			next = json_string(c);
			free(c);
		}
	}
	api->reply_json(op->req, 200, json_pack("{s:o, s:o}", "items", items, "next_cursor", next));
	free(op);
}

static void list_route(struct sp_request *req, void *state)
{
	struct feed *f = state;
	const struct sp_api *api = f->api;
	const char *me = user_of(f, req);
	if (!me)
		return;
	const char *limit_s = api->req_query(req, "limit");
	const char *cursor = api->req_query(req, "cursor");
	const char *unread = api->req_query(req, "unread");
	long long limit = PAGE_DEFAULT, before = 0;
	json_t *errors = json_object();
	if (limit_s && (feed_parse_seq(limit_s, &limit) < 0 || limit < 1 || limit > PAGE_MAX))
		json_object_set_new(errors, "limit", json_string("an integer between 1 and 100"));
	if (cursor && *cursor && feed_cursor_decode(cursor, &before) < 0)
		json_object_set_new(errors, "cursor",
		                    json_string("not valid; use next_cursor from a previous page"));
	if (unread && strcmp(unread, "true") != 0 && strcmp(unread, "false") != 0)
		json_object_set_new(errors, "unread", json_string("true or false"));
	if (json_object_size(errors)) {
		api->reply_problem(req, 400, "Bad query parameter",
		                   "some query parameters are invalid", errors);
		return;
	}
	json_decref(errors);
	struct op *op = op_new(f, req, me);
	if (!op)
		return;
	op->limit = (int)limit;
	char lim[24], pos[24];
	snprintf(lim, sizeof(lim), "%lld", limit + 1);
	snprintf(pos, sizeof(pos), "%lld", before);
	const char *params[] = { me, cursor && *cursor ? pos : NULL, lim };
	bool only_unread = unread && strcmp(unread, "true") == 0;
	/* Two statements so that the unread one can use its partial index. */
	int rc = only_unread
	             ? api->db_query_prepared(
	                   f->plugin, "feed_list_unread",
	                   "SELECT " ITEM_COLUMNS " FROM feed_items f JOIN sp_outbox o ON o.id = "
	                   "f.outbox_id WHERE f.user_id = $1::uuid AND f.read_at IS NULL AND "
	                   "($2::bigint IS NULL OR f.seq < $2::bigint) ORDER BY f.seq DESC "
	                   "LIMIT $3::int",
	                   3, params, listed, op)
	             : api->db_query_prepared(
	                   f->plugin, "feed_list",
	                   "SELECT " ITEM_COLUMNS " FROM feed_items f JOIN sp_outbox o ON o.id = "
	                   "f.outbox_id WHERE f.user_id = $1::uuid AND ($2::bigint IS NULL OR "
	                   "f.seq < $2::bigint) ORDER BY f.seq DESC LIMIT $3::int",
	                   3, params, listed, op);
	if (rc < 0) {
		free(op);
		reply_unavailable(f, req);
	}
}

/* ---- POST /v1/notifications/{id}/read ---- */

static void emit_read(struct feed *f, const char *user_id, const char *id, long long up_to)
{
	json_t *ev = json_pack("{s:s}", "user_id", user_id);
	if (!ev)
		return;
	if (id)
		json_object_set_new(ev, "id", json_string(id));
	else
		json_object_set_new(ev, "all", json_true());
	if (!id && up_to >= 0)
		json_object_set_new(ev, "up_to", json_integer(up_to));
	f->api->bus_emit(f->plugin, "feed.read", ev);
	json_decref(ev);
}

static void marked_one(const struct sp_db_result *res, void *arg)
{
	struct op *op = arg;
	struct feed *f = op->feed;
	const struct sp_api *api = f->api;
	if (!api->db_ok(res)) {
		api->reply_db_error(op->req, res);
	} else if (api->db_ntuples(res) == 0) {
		api->reply_problem(op->req, 404, NULL, "no such notification", NULL);
	} else {
		emit_read(f, op->user_id, op->id, -1);
		api->reply_json(op->req, 200, api->db_row_json(res, 0));
	}
	free(op);
}

static void read_route(struct sp_request *req, void *state)
{
	struct feed *f = state;
	const struct sp_api *api = f->api;
	const char *me = user_of(f, req);
	if (!me)
		return;
	const char *id = api->req_param(req, "id");
	/* Somebody else's notification and one that does not exist look the same. */
	if (!feed_valid_uuid(id)) {
		api->reply_problem(req, 404, NULL, "no such notification", NULL);
		return;
	}
	struct op *op = op_new(f, req, me);
	if (!op)
		return;
	snprintf(op->id, sizeof(op->id), "%s", id);
	const char *params[] = { id, me };
	if (api->db_query_prepared(
	        f->plugin, "feed_read",
	        "WITH f AS (UPDATE feed_items SET read_at = coalesce(read_at, now()) WHERE "
	        "outbox_id = $1::uuid AND user_id = $2::uuid RETURNING outbox_id, seq, read_at) "
	        "SELECT " ITEM_COLUMNS " FROM f JOIN sp_outbox o ON o.id = f.outbox_id",
	        2, params, marked_one, op) < 0) {
		free(op);
		reply_unavailable(f, req);
	}
}

/* ---- POST /v1/notifications/read-all ---- */

static void marked_all(const struct sp_db_result *res, void *arg)
{
	struct op *op = arg;
	struct feed *f = op->feed;
	const struct sp_api *api = f->api;
	if (!api->db_ok(res)) {
		api->reply_db_error(op->req, res);
	} else {
		long long n = strtoll(api->db_value(res, 0, 0), NULL, 10);
		if (n > 0)
			emit_read(f, op->user_id, NULL, op->up_to);
		api->reply_json(op->req, 200, json_pack("{s:I}", "marked", (json_int_t)n));
	}
	free(op);
}

static void read_all_route(struct sp_request *req, void *state)
{
	struct feed *f = state;
	const struct sp_api *api = f->api;
	const char *me = user_of(f, req);
	if (!me)
		return;
	/* The body is optional: {"up_to": seq} marks only the items up to seq (those the
	 * client has shown), so one that arrives meanwhile stays unread. */
	long long up_to = -1;
	const char *len = api->req_header(req, "Content-Length");
	if ((len && strcmp(len, "0") != 0) || api->req_header(req, "Transfer-Encoding")) {
		json_t *body = api->req_json(req);
		if (!body)
			return; /* answered by the core */
		json_t *errors = json_object();
		const char *key;
		json_t *v;
		if (!json_is_object(body)) {
			json_object_set_new(errors, "body", json_string("must be an object"));
		} else {
			json_object_foreach(body, key, v)
			{
				if (strcmp(key, "up_to") != 0)
					json_object_set_new(errors, key,
					                    json_string("unknown field"));
				else if (!json_is_integer(v) || json_integer_value(v) < 0)
					json_object_set_new(
					    errors, key,
					    json_string("a non-negative integer (a seq)"));
				else
					up_to = json_integer_value(v);
			}
		}
		if (json_object_size(errors)) {
			api->reply_problem(req, 422, "Invalid body",
			                   "the body does not match the request schema", errors);
			return;
		}
		json_decref(errors);
	}
	struct op *op = op_new(f, req, me);
	if (!op)
		return;
	op->up_to = up_to;
	char bound[24];
	snprintf(bound, sizeof(bound), "%lld", up_to);
	const char *params[] = { me, up_to >= 0 ? bound : NULL };
	if (api->db_query_prepared(
	        f->plugin, "feed_read_all",
	        "WITH f AS (UPDATE feed_items SET read_at = now() WHERE user_id = $1::uuid AND "
	        "read_at IS NULL AND ($2::bigint IS NULL OR seq <= $2::bigint) RETURNING 1) "
	        "SELECT count(*) FROM f",
	        2, params, marked_all, op) < 0) {
		free(op);
		reply_unavailable(f, req);
	}
}

/* ---- GET /v1/notifications/stream ---- */

static void stream_query(struct stream *s);

static void stream_link(struct stream *s)
{
	struct feed *f = s->feed;
	s->next = f->streams;
	if (s->next)
		s->next->prev = s;
	f->streams = s;
	s->linked = true;
	f->nstreams++;
	f->api->metric_set(f->m_streams, (double)f->nstreams);
}

static void stream_unlink(struct stream *s)
{
	struct feed *f = s->feed;
	if (!s->linked)
		return;
	if (s->prev)
		s->prev->next = s->next;
	else
		f->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->linked = false;
	s->next = s->prev = NULL;
	f->nstreams--;
	f->api->metric_set(f->m_streams, (double)f->nstreams);
}

static void stream_send(struct stream *s, char *text)
{
	if (text && s->req)
		s->feed->api->stream_send(s->req, text, strlen(text));
	free(text);
}

/* The client left, or the server ends every stream at shutdown (the core ends the
 * answer itself after this callback). */
static void stream_closed(struct sp_request *req, void *arg)
{
	struct stream *s = arg;
	(void)req;
	s->req = NULL;
	stream_unlink(s);
	if (!s->busy)
		free(s);
}

static void stream_start(struct stream *s)
{
	const struct sp_api *api = s->feed->api;
	api->reply_stream_start(s->req, 200, "text/event-stream", stream_closed, s);
	s->started = true;
	char hello[64];
	snprintf(hello, sizeof(hello), "retry: %d\n: notifications\n\n", STREAM_RETRY_MS);
	api->stream_send(s->req, hello, strlen(hello));
}

/* A stream that could not start: answer the request with the error and forget it. */
static void stream_fail(struct stream *s, const struct sp_db_result *res)
{
	if (res)
		s->feed->api->reply_db_error(s->req, res);
	else
		reply_unavailable(s->feed, s->req);
	stream_unlink(s);
	free(s);
}

static void stream_got(const struct sp_db_result *res, void *arg)
{
	struct stream *s = arg;
	const struct sp_api *api = s->feed->api;
	s->busy = false;
	if (!s->req) {
		free(s); /* closed meanwhile */
		return;
	}
	if (!api->db_ok(res)) {
		if (!s->started)
			stream_fail(s, res);
		/* else: the next heartbeat looks again */
		return;
	}
	int n = api->db_ntuples(res);
	if (!s->started && !s->resume) {
		/* The start position: where the person's feed is now. */
		s->last_seq = n ? strtoll(api->db_value(res, 0, 0), NULL, 10) : 0;
		s->resume = true;
		stream_start(s);
		if (s->again) {
			s->again = false;
			stream_query(s);
		}
		return;
	}
	if (!s->started)
		stream_start(s);
	for (int i = 0; i < n && s->req; i++) {
		json_t *item = api->db_row_json(res, i);
		long long seq = json_integer_value(json_object_get(item, "seq"));
		char *data = json_dumps(item, JSON_COMPACT);
		json_decref(item);
		if (!data)
			break;
		char id[24];
		snprintf(id, sizeof(id), "%lld", seq);
		stream_send(s, feed_sse_event(id, "notification", data));
		free(data);
		s->last_seq = seq;
		api->metric_add(s->feed->m_sent, 1);
	}
	if (s->req && (n == STREAM_BATCH || s->again)) {
		s->again = false;
		stream_query(s);
	}
}

/* Queries what the stream needs next: its start position, or the items after the last
 * one it sent. */
static void stream_query(struct stream *s)
{
	struct feed *f = s->feed;
	const struct sp_api *api = f->api;
	char after[24], lim[16];
	snprintf(after, sizeof(after), "%lld", s->last_seq);
	snprintf(lim, sizeof(lim), "%d", STREAM_BATCH);
	int rc;
	s->busy = true;
	if (!s->started && !s->resume) {
		const char *params[] = { s->user_id };
		rc = api->db_query_prepared(
		    f->plugin, "feed_position",
		    "SELECT last_seq FROM feed_users WHERE user_id = $1::uuid", 1, params,
		    stream_got, s);
	} else {
		const char *params[] = { s->user_id, after, lim };
		rc = api->db_query_prepared(
		    f->plugin, "feed_after",
		    "SELECT " ITEM_COLUMNS " FROM feed_items f JOIN sp_outbox o ON o.id = "
		    "f.outbox_id WHERE f.user_id = $1::uuid AND f.seq > $2::bigint ORDER BY f.seq "
		    "LIMIT $3::int",
		    3, params, stream_got, s);
	}
	if (rc < 0) {
		s->busy = false;
		if (!s->started)
			stream_fail(s, NULL);
		/* else: the next heartbeat looks again */
	}
}

/* Something new may be in the person's feed. */
static void stream_kick(struct stream *s)
{
	if (s->busy || !s->started)
		s->again = true;
	else
		stream_query(s);
}

static void stream_route(struct sp_request *req, void *state)
{
	struct feed *f = state;
	const struct sp_api *api = f->api;
	const char *me = user_of(f, req);
	if (!me)
		return;
	/* Browsers send Last-Event-ID when they reconnect; the query parameter serves
	 * clients that cannot set headers for the first connection. */
	const char *last = api->req_header(req, "Last-Event-ID");
	if (!last || !*last)
		last = api->req_query(req, "last_event_id");
	long long seq = 0;
	if (last && *last && feed_parse_seq(last, &seq) < 0) {
		api->reply_problem(req, 400, "Bad Last-Event-ID",
		                   "Last-Event-ID is the id of an event of this stream (a seq)",
		                   NULL);
		return;
	}
	if (f->nstreams >= f->max_streams) {
		api->reply_problem(req, 503, NULL, "too many open streams; try again later", NULL);
		return;
	}
	struct stream *s = calloc(1, sizeof(*s));
	if (!s) {
		api->reply_problem(req, 500, NULL, "out of memory", NULL);
		return;
	}
	s->feed = f;
	s->req = req;
	snprintf(s->user_id, sizeof(s->user_id), "%s", me);
	s->resume = last && *last;
	s->last_seq = seq;
	stream_link(s); /* from now on announcements set s->again */
	stream_query(s);
}

/* ---- announcements and heartbeats ---- */

static void on_bus(const char *type, json_t *data, void *arg)
{
	struct feed *f = arg;
	const char *user = json_string_value(json_object_get(data, "user_id"));
	if (!user)
		return;
	if (strcmp(type, "feed.new") == 0) {
		long long seq = json_integer_value(json_object_get(data, "seq"));
		for (struct stream *s = f->streams; s; s = s->next)
			if (strcmp(s->user_id, user) == 0 && (!s->started || seq > s->last_seq))
				stream_kick(s);
	} else if (strcmp(type, "feed.read") == 0) {
		json_t *copy = json_deep_copy(data);
		json_object_del(copy, "user_id");
		char *text = json_dumps(copy, JSON_COMPACT);
		json_decref(copy);
		for (struct stream *s = f->streams; s && text; s = s->next)
			if (s->started && s->req && strcmp(s->user_id, user) == 0)
				stream_send(s, feed_sse_event(NULL, "read", text));
		free(text);
	}
}

static void polled(const struct sp_db_result *res, void *arg)
{
	struct feed *f = arg;
	const struct sp_api *api = f->api;
	f->polling = false;
	if (!api->db_ok(res))
		return;
	int n = api->db_ntuples(res);
	for (int i = 0; i < n; i++) {
		const char *user = api->db_value(res, i, 0);
		long long seq = strtoll(api->db_value(res, i, 1), NULL, 10);
		for (struct stream *s = f->streams; s; s = s->next)
			if (s->started && seq > s->last_seq && strcmp(s->user_id, user) == 0)
				stream_kick(s);
	}
}

static void heartbeat(void *arg)
{
	struct feed *f = arg;
	const struct sp_api *api = f->api;
	static const char ping[] = ": ping\n\n";
	size_t cap = 3, n = 0;
	for (struct stream *s = f->streams; s; s = s->next) {
		if (s->started && s->req)
			api->stream_send(s->req, ping, sizeof(ping) - 1);
		cap += 37;
		n++;
	}
	if (n == 0 || f->polling)
		return;
	/* Have the feeds of our streams' people moved past what we sent? (A NOTIFY lost
	 * while a listener reconnected would leave a stream behind until now.) */
	char *users = malloc(cap);
	if (!users)
		return;
	size_t len = 0;
	users[len++] = '{';
	for (struct stream *s = f->streams; s; s = s->next) {
		if (len > 1)
			users[len++] = ',';
		memcpy(users + len, s->user_id, strlen(s->user_id));
		len += strlen(s->user_id);
	}
	users[len++] = '}';
	users[len] = '\0';
	const char *params[] = { users };
	f->polling = true;
	if (api->db_query_prepared(f->plugin, "feed_poll",
	                           "SELECT user_id::text, last_seq FROM feed_users WHERE user_id "
	                           "= ANY($1::uuid[])",
	                           1, params, polled, f) < 0)
		f->polling = false;
	free(users);
}

/* ---- lifecycle ---- */

static void apply_settings(struct feed *f, const json_t *settings)
{
	long hb = (long)json_integer_value(json_object_get(settings, "heartbeat_s"));
	f->max_streams = (long)json_integer_value(json_object_get(settings, "max_streams"));
	if (hb != f->heartbeat_s || !f->tick) {
		if (f->tick)
			f->api->timer_cancel(f->tick);
		f->heartbeat_s = hb;
		f->tick = f->api->timer_add(f->plugin, (unsigned)hb * 1000u, true, heartbeat, f);
	}
}

#define ITEM_SCHEMA                                                                                \
	"{\"type\":\"object\",\"required\":[\"id\",\"seq\",\"type\",\"title\",\"body\",\"data\","  \
	"\"created_at\",\"read_at\"],\"properties\":{\"id\":{\"type\":\"string\",\"format\":"      \
	"\"uuid\"},\"seq\":{\"type\":\"integer\"},\"type\":{\"type\":\"string\"},\"title\":{"      \
	"\"type\":\"string\"},\"body\":{\"type\":\"string\"},\"data\":{\"type\":\"object\"},"      \
	"\"created_at\":{\"type\":\"string\",\"format\":\"date-time\"},\"read_at\":{\"type\":["    \
	"\"string\",\"null\"],\"format\":\"date-time\"}}}"

static int feed_init(const struct sp_api *api, struct sp_plugin *plugin, const json_t *settings,
                     void **state)
{
	if (api->size < offsetof(struct sp_api, stream_end) + sizeof(api->stream_end)) {
		api->log(plugin, SP_LOG_ERROR,
		         "this core lacks durable jobs, channels or streamed answers");
		return -1;
	}
	struct feed *f = calloc(1, sizeof(*f));
	if (!f) {
		api->log(plugin, SP_LOG_ERROR, "out of memory");
		return -1;
	}
	f->api = api;
	f->plugin = plugin;
	const struct sp_route routes[] = {
		{ "GET", "/v1/notifications", SP_ACCESS_USER, list_route,
		  "The caller's notifications, newest first (unread=true, limit, cursor)", NULL,
		  "{\"type\":\"object\",\"properties\":{\"items\":{\"type\":\"array\","
		  "\"items\":" ITEM_SCHEMA "},\"next_cursor\":{\"type\":[\"string\",\"null\"]}}}" },
		{ "POST", "/v1/notifications/{id}/read", SP_ACCESS_USER, read_route,
		  "Mark one of the caller's notifications read", NULL, ITEM_SCHEMA },
		{ "POST", "/v1/notifications/read-all", SP_ACCESS_USER, read_all_route,
		  "Mark the caller's notifications read (all, or up to a seq)",
		  "{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{\"up_to\":{"
		  "\"type\":\"integer\",\"minimum\":0}}}",
		  "{\"type\":\"object\",\"properties\":{\"marked\":{\"type\":\"integer\"}}}" },
		{ "GET", "/v1/notifications/stream", SP_ACCESS_USER, stream_route,
		  "Server-Sent Events: the caller's new notifications, live (Last-Event-ID "
		  "resumes)",
		  NULL, NULL },
	};
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (api->route_add(plugin, &routes[i]) < 0)
			goto fail;
	f->m_delivered = api->metric_counter(plugin, "delivered_total",
	                                     "Notifications put into feeds by this process");
	f->m_sent = api->metric_counter(plugin, "stream_events_total",
	                                "Notifications sent on live streams");
	f->m_streams = api->metric_gauge(plugin, "streams", "Live streams open in this process");
	if (api->channel_register(plugin, "feed", SP_CHANNEL_USER) < 0 ||
	    api->job_handle(plugin, "deliver.feed", DELIVER_CONCURRENCY, deliver, f) < 0 ||
	    api->bus_subscribe(plugin, "feed.*", on_bus, f) < 0) {
		api->log(plugin, SP_LOG_ERROR, "cannot register the feed channel");
		goto fail;
	}
	apply_settings(f, settings);
	*state = f;
	return 0;
fail:
	free(f); /* the core removes what was registered */
	return -1;
}

static int feed_reload(void *state, const json_t *settings)
{
	apply_settings(state, settings);
	return 0;
}

static void feed_shutdown(void *state)
{
	struct feed *f = state;
	/* The server ends streams before plugins stop (their on_close ran) and the pool
	 * has answered every query; anything left is ended here. */
	while (f->streams) {
		struct stream *s = f->streams;
		stream_unlink(s);
		if (s->req && s->started)
			f->api->stream_end(s->req);
		free(s);
	}
	if (f->tick)
		f->api->timer_cancel(f->tick);
	free(f);
}

static const struct sp_setting feed_settings[] = {
	{ "heartbeat_s", SP_SETTING_INT, "15", 1, 300,
	  "Seconds between heartbeat comments on live streams; each heartbeat also looks for "
	  "notifications a stream missed" },
	{ "max_streams", SP_SETTING_INT, "10000", 1, 1000000,
	  "Live streams one worker process serves at most; more are answered 503" },
	{ NULL, 0, NULL, 0, 0, NULL },
};

SP_PLUGIN_DEFINE(feed) = {
	SP_PLUGIN_DESC_HEADER,
	.name = "feed",
	.version = "1.0.0",
	.description = "In-app notification feed with a live Server-Sent Events stream",
	.settings = feed_settings,
	.migrations = feed_migrations,
	.init = feed_init,
	.shutdown = feed_shutdown,
	.reload = feed_reload,
};
