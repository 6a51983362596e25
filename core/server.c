/* server.c — the HTTP front on libevent's evhttp.
 *
 * evhttp 2.1 ships no connection cap, no deadline for a slow request head and no hook
 * before a request is dispatched, so this file adds them around the public API:
 * - every connection gets its bufferevent from our bevcb, where we count it and keep
 *   an extra reference so that we can tell, later, that evhttp has let go of it;
 * - a callback on the input buffer marks when a request starts arriving, and a
 *   one-second sweep shuts down sockets whose request is still incomplete after the
 *   deadline (evhttp then sees EOF and frees the connection itself);
 * - limits on headers and body are checked again at dispatch so that clients get an
 *   RFC 9457 problem document rather than evhttp's HTML error page (evhttp's own
 *   limits are set at twice ours, as a memory backstop).
 * A dispatched request is never freed by evhttp before we reply (read events are off
 * while we handle it), so a handler may answer after asynchronous work.
 */
#include "server.h"
#include "auth.h"
#include "config.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "loader.h"
#include "metrics.h"
#include "proxy.h"
#include "router.h"
#include "serve.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <search.h>
#include <sys/queue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

enum conn_state { CONN_IDLE, CONN_READING, CONN_DISPATCHED };

/* Our view of one client connection, keyed by its bufferevent. */
struct conn {
	struct bufferevent *bev; /* we hold one reference */
	struct sp_server *srv;
	enum conn_state state;
	uint64_t started_us; /* first byte of the current request */
	bool reject;         /* over the connection cap: answer 503 and close */
	bool killed;         /* deadline passed: socket shut down */
	struct conn *next, *prev;
};

struct sp_server {
	struct sp_core *core;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	struct event *sweep;
	struct conn *conns; /* list of live connections */
	void *by_bev;       /* tsearch tree: bev → conn */
	int nconns, inflight;
	int reserve_fd; /* spare fd released to answer 503 when out of descriptors */
	/* limits, refreshed on SIGHUP */
	long max_connections, max_body, max_header_bytes, max_headers, head_timeout_s,
	    json_max_depth;
	struct sp_proxies *proxies; /* owned; X-Forwarded-For from these names the client */
	/* draining */
	struct event *drain_timer;
	void (*drain_done)(void *);
	void *drain_arg;
	uint64_t drain_deadline_us;
	struct sp_request *streams; /* answers being streamed (SSE) */
	char rid_prefix[17];
	unsigned long long rid_counter;
};

struct sp_request {
	struct sp_server *srv;
	struct evhttp_request *ev;
	struct conn *conn;
	char rid[65];
	const char *method;
	char *path; /* decoded path, owned */
	struct sp_route_match match;
	struct evkeyvalq query;
	bool query_parsed;
	json_t *body; /* owned */
	bool body_done;
	uint64_t start_us;
	char peer[64];
	struct sp_principal *principal; /* owned; NULL when anonymous */
	/* streamed answers */
	bool streaming;
	sp_stream_closed_fn *on_close;
	void *close_arg;
	struct sp_request *next_stream, *prev_stream;
};

static int conn_cmp(const void *a, const void *b)
{
	const struct conn *x = a, *y = b;
	return x->bev < y->bev ? -1 : x->bev > y->bev;
}

static struct conn *conn_find(struct sp_server *srv, struct bufferevent *bev)
{
	struct conn key = { .bev = bev };
	struct conn **found = tfind(&key, &srv->by_bev, conn_cmp);
	return found ? *found : NULL;
}

static void conn_input_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct conn *c = arg;
	if (info->n_added > 0 && c->state == CONN_IDLE) {
		c->state = CONN_READING;
		c->started_us = sp_now_us();
	}
}

static void conn_free(struct sp_server *srv, struct conn *c)
{
	tdelete(c, &srv->by_bev, conn_cmp);
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->nconns--;
	bufferevent_decref(c->bev); /* evhttp already freed its side: this closes the fd */
	free(c);
}

/* evhttp clears the callbacks when it frees a connection; our reference kept the
 * bufferevent itself alive, so this test is safe. */
static bool conn_orphaned(const struct conn *c)
{
	bufferevent_event_cb eventcb = NULL;
	bufferevent_data_cb writecb = NULL;
	bufferevent_getcb(c->bev, NULL, &writecb, &eventcb, NULL);
	return eventcb == NULL && writecb == NULL;
}

static void sweep_conns(struct sp_server *srv)
{
	uint64_t now = sp_now_us();
	struct conn *c = srv->conns;
	while (c) {
		struct conn *next = c->next;
		if (conn_orphaned(c)) {
			conn_free(srv, c);
		} else if (c->state == CONN_READING && !c->killed &&
		           now - c->started_us > (uint64_t)srv->head_timeout_s * 1000000u) {
			/* A request that has not fully arrived in time (slowloris). Shutting
			 * the socket down lets evhttp see EOF and clean up on its own. */
			evutil_socket_t fd = bufferevent_getfd(c->bev);
			if (fd >= 0) {
				sp_info("closing connection: request not received within %ld s",
				        srv->head_timeout_s);
				shutdown(fd, SHUT_RDWR);
			}
			c->killed = true;
		}
		c = next;
	}
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	sweep_conns(arg);
}

static struct bufferevent *bev_cb(struct event_base *base, void *arg)
{
	struct sp_server *srv = arg;
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!bev)
		return NULL;
	if (srv->nconns >= srv->max_connections)
		sweep_conns(srv); /* reclaim closed ones before refusing anybody */
	struct conn *c = sp_calloc(1, sizeof(*c));
	c->bev = bev;
	c->srv = srv;
	c->state = CONN_IDLE;
	c->reject = srv->nconns >= srv->max_connections || srv->core->draining;
	bufferevent_incref(bev);
	evbuffer_add_cb(bufferevent_get_input(bev), conn_input_cb, c);
	tsearch(c, &srv->by_bev, conn_cmp);
	c->next = srv->conns;
	if (c->next)
		c->next->prev = c;
	srv->conns = c;
	srv->nconns++;
	return bev;
}

/* Out of file descriptors: accept with the spare one, answer 503, close — so the
 * listener does not spin on a socket that stays readable. */
static void listener_error_cb(struct evconnlistener *lev, void *arg)
{
	struct sp_server *srv = arg;
	int err = EVUTIL_SOCKET_ERROR();
	if (err != EMFILE && err != ENFILE) {
		sp_warn("accept failed: %s", evutil_socket_error_to_string(err));
		return;
	}
	sp_warn("out of file descriptors; refusing a connection with 503");
	if (srv->reserve_fd >= 0) {
		close(srv->reserve_fd);
		srv->reserve_fd = -1;
	}
	int fd = accept(evconnlistener_get_fd(lev), NULL, NULL);
	if (fd >= 0) {
		static const char msg[] =
		    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
		    "application/problem+json\r\nConnection: close\r\nRetry-After: 1\r\n"
		    "Content-Length: 100\r\n\r\n"
		    "{\"type\":\"urn:spearhead:problem:unavailable\",\"title\":\"Service "
		    "Unavailable\",\"status\":503}     ";
		ssize_t ignored = send(fd, msg, sizeof(msg) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		(void)ignored;
		close(fd);
	}
	srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* ---- replies ---- */

static void request_free(struct sp_request *req)
{
	sp_route_match_clear(&req->match);
	if (req->query_parsed)
		evhttp_clear_headers(&req->query);
	json_decref(req->body);
	sp_principal_free(req->principal);
	free(req->path);
	free(req);
}

static void finish(struct sp_request *req, int status, struct evbuffer *body)
{
	struct sp_server *srv = req->srv;
	struct evkeyvalq *out = evhttp_request_get_output_headers(req->ev);
	evhttp_add_header(out, "X-Request-Id", req->rid);
	if (srv->core->draining || (req->conn && req->conn->reject))
		evhttp_add_header(out, "Connection", "close");
	bool head = evhttp_request_get_command(req->ev) == EVHTTP_REQ_HEAD;
	if (head && body) {
		/* evhttp does not strip bodies from HEAD responses: send the length only. */
		char len[32];
		snprintf(len, sizeof(len), "%zu", evbuffer_get_length(body));
		evhttp_add_header(out, "Content-Length", len);
		evbuffer_drain(body, evbuffer_get_length(body));
	}
	double secs = (double)(sp_now_us() - req->start_us) / 1e6;
	const char *route = req->match.entry ? req->match.entry->route.pattern : "unmatched";
	sp_metrics_observe_request(srv->core->metrics, req->method, route, status, secs);
	sp_log_access(req->method, req->path ? req->path : "-", status, secs * 1000.0, req->rid,
	              req->peer);
	if (req->conn)
		req->conn->state = CONN_IDLE;
	evhttp_send_reply(req->ev, status, sp_status_phrase(status), body);
	/* From here evhttp owns and frees req->ev. */
	srv->inflight--;
	request_free(req);
}

/* ---- streamed answers ---- */

static void stream_unlink(struct sp_request *req)
{
	struct sp_server *srv = req->srv;
	if (req->prev_stream)
		req->prev_stream->next_stream = req->next_stream;
	else
		srv->streams = req->next_stream;
	if (req->next_stream)
		req->next_stream->prev_stream = req->prev_stream;
	srv->inflight--;
}

/* evhttp is freeing the connection (the client left): the request goes with it. */
static void stream_conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct sp_request *req = arg;
	stream_unlink(req);
	if (req->conn)
		req->conn->state = CONN_IDLE;
	if (req->on_close) {
		sp_log_set_context(req->rid, NULL);
		req->on_close(req, req->close_arg);
		sp_log_set_context(NULL, NULL);
	}
	/* An unfinished answer whose client failed is detached from the connection and
	 * left to us (libevent frees only the requests still attached). */
	if (!evhttp_request_get_connection(req->ev))
		evhttp_request_free(req->ev);
	request_free(req);
}

void sp_request_stream_start(struct sp_request *req, int status, const char *content_type,
                             sp_stream_closed_fn *on_close, void *arg)
{
	struct sp_server *srv = req->srv;
	struct evkeyvalq *out = evhttp_request_get_output_headers(req->ev);
	evhttp_add_header(out, "X-Request-Id", req->rid);
	evhttp_add_header(out, "Content-Type", content_type ? content_type : "text/event-stream");
	evhttp_add_header(out, "Cache-Control", "no-cache");
	evhttp_add_header(out, "X-Accel-Buffering", "no"); /* nginx: do not buffer */
	double secs = (double)(sp_now_us() - req->start_us) / 1e6;
	const char *route = req->match.entry ? req->match.entry->route.pattern : "unmatched";
	sp_metrics_observe_request(srv->core->metrics, req->method, route, status, secs);
	sp_log_access(req->method, req->path ? req->path : "-", status, secs * 1000.0, req->rid,
	              req->peer);
	req->streaming = true;
	req->on_close = on_close;
	req->close_arg = arg;
	req->next_stream = srv->streams;
	if (req->next_stream)
		req->next_stream->prev_stream = req;
	srv->streams = req;
	/* A stream is long and quiet on the client's side: no idle timeout, and the
	 * connection is not reused afterwards. */
	evhttp_add_header(out, "Connection", "close");
	evhttp_send_reply_start(req->ev, status, sp_status_phrase(status));
	struct evhttp_connection *evcon = evhttp_request_get_connection(req->ev);
	bufferevent_set_timeouts(evhttp_connection_get_bufferevent(evcon), NULL, NULL);
	evhttp_connection_set_closecb(evcon, stream_conn_closed, req);
}

int sp_request_stream_send(struct sp_request *req, const void *data, size_t len)
{
	if (!req || !req->streaming)
		return -1;
	struct evbuffer *buf = evbuffer_new();
	evbuffer_add(buf, data, len);
	evhttp_send_reply_chunk(req->ev, buf);
	evbuffer_free(buf);
	return 0;
}

void sp_request_stream_end(struct sp_request *req)
{
	if (!req || !req->streaming)
		return;
	evhttp_connection_set_closecb(evhttp_request_get_connection(req->ev), NULL, NULL);
	stream_unlink(req);
	if (req->conn)
		req->conn->state = CONN_IDLE;
	evhttp_send_reply_end(req->ev);
	request_free(req);
}

/* At shutdown every stream ends; its owner hears about it through on_close. */
void sp_server_end_streams(struct sp_server *srv)
{
	while (srv->streams) {
		struct sp_request *req = srv->streams;
		sp_stream_closed_fn *cb = req->on_close;
		void *arg = req->close_arg;
		req->on_close = NULL;
		if (cb)
			cb(req, arg);
		sp_request_stream_end(req);
	}
}

void sp_request_reply_raw(struct sp_request *req, int status, const char *content_type,
                          const void *body, size_t len)
{
	struct evbuffer *buf = evbuffer_new();
	if (len)
		evbuffer_add(buf, body, len);
	if (content_type)
		evhttp_add_header(evhttp_request_get_output_headers(req->ev), "Content-Type",
		                  content_type);
	finish(req, status, buf);
	evbuffer_free(buf);
}

static void reply_json_typed(struct sp_request *req, int status, json_t *body, const char *ctype)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!text && status != 204) {
		sp_error("response could not be serialised");
		text = sp_strdup("{\"type\":\"urn:spearhead:problem:internal\",\"title\":"
		                 "\"Internal Server Error\",\"status\":500}");
		status = 500;
		ctype = SP_PROBLEM_CONTENT_TYPE;
	}
	if (status == 204)
		sp_request_reply_raw(req, status, NULL, NULL, 0);
	else
		sp_request_reply_raw(req, status, ctype, text, strlen(text));
	free(text);
}

void sp_request_reply_json(struct sp_request *req, int status, json_t *body)
{
	reply_json_typed(req, status, body, "application/json");
}

void sp_request_reply_problem(struct sp_request *req, int status, const char *title,
                              const char *detail, json_t *errors)
{
	json_t *p = sp_problem_new(status, title, detail, errors);
	char instance[96];
	snprintf(instance, sizeof(instance), "urn:spearhead:request:%s", req->rid);
	json_object_set_new(p, "instance", json_string(instance));
	json_object_set_new(p, "request_id", json_string(req->rid));
	if (status >= 500)
		sp_warn("%d %s: %s", status, title ? title : sp_status_phrase(status),
		        detail ? detail : "");
	reply_json_typed(req, status, p, SP_PROBLEM_CONTENT_TYPE);
}

/* The one place that maps database failures to HTTP: unavailable or busy → 503
 * (retry), unique violation → 409, rejected value → 422, anything else → 500 with
 * the detail in the log only. */
void sp_request_reply_db_error(struct sp_request *req, const struct sp_db_result *res)
{
	const char *state = sp_db_result_sqlstate(res);
	if (strcmp(state, SP_DB_STATE_UNAVAILABLE) == 0 || strcmp(state, "55P03") == 0 ||
	    strcmp(state, "57014") == 0 || strcmp(state, "57P01") == 0 ||
	    strncmp(state, "08", 2) == 0 || strcmp(state, "40001") == 0 ||
	    strcmp(state, "40P01") == 0) {
		sp_request_add_header(req, "Retry-After", "1");
		sp_request_reply_problem(
		    req, 503, NULL, "the database is busy or unavailable; retry shortly", NULL);
		return;
	}
	if (strcmp(state, "23505") == 0) {
		sp_request_reply_problem(req, 409, NULL, "this already exists", NULL);
		return;
	}
	if (strcmp(state, "23514") == 0 || strcmp(state, "22001") == 0 ||
	    strcmp(state, "22P02") == 0) {
		sp_request_reply_problem(req, 422, NULL, "a value is not acceptable", NULL);
		return;
	}
	sp_error("query failed (%s): %s", state, sp_db_result_error(res));
	sp_request_reply_problem(req, 500, NULL, "an internal error occurred; it has been logged",
	                         NULL);
}

void sp_request_add_header(struct sp_request *req, const char *name, const char *value)
{
	evhttp_add_header(evhttp_request_get_output_headers(req->ev), name, value);
}

/* ---- accessors ---- */

const char *sp_request_param(struct sp_request *req, const char *name)
{
	return sp_route_match_param(&req->match, name);
}

const char *sp_request_query(struct sp_request *req, const char *name)
{
	if (!req->query_parsed) {
		TAILQ_INIT(&req->query);
		const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req->ev));
		if (q && evhttp_parse_query_str(q, &req->query) < 0)
			evhttp_clear_headers(&req->query);
		req->query_parsed = true;
	}
	return evhttp_find_header(&req->query, name);
}

const char *sp_request_header(struct sp_request *req, const char *name)
{
	return evhttp_find_header(evhttp_request_get_input_headers(req->ev), name);
}

const char *sp_request_id(struct sp_request *req)
{
	return req->rid;
}

const char *sp_request_method(struct sp_request *req)
{
	return req->method;
}

const char *sp_request_path(struct sp_request *req)
{
	return req->path;
}

struct sp_core *sp_request_core(struct sp_request *req)
{
	return req->srv->core;
}

json_t *sp_request_json(struct sp_request *req)
{
	if (req->body_done)
		return req->body;
	req->body_done = true;
	struct evbuffer *in = evhttp_request_get_input_buffer(req->ev);
	size_t len = evbuffer_get_length(in);
	if (len == 0) {
		sp_request_reply_problem(req, 400, "Body required",
		                         "this request needs a JSON body", NULL);
		return NULL;
	}
	if (!sp_content_type_is_json(sp_request_header(req, "Content-Type"))) {
		sp_request_reply_problem(
		    req, 415, NULL, "the body must be JSON (Content-Type: application/json)", NULL);
		return NULL;
	}
	char err[256];
	const char *data = (const char *)evbuffer_pullup(in, -1);
	req->body = sp_json_parse_body(data, len, (int)req->srv->json_max_depth, err, sizeof(err));
	if (!req->body) {
		sp_request_reply_problem(req, 400, "Malformed JSON", err, NULL);
		return NULL;
	}
	return req->body;
}

/* ---- dispatch ---- */

static const char *method_name(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	case EVHTTP_REQ_TRACE:
		return "TRACE";
	case EVHTTP_REQ_CONNECT:
		return "CONNECT";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	}
	return "UNKNOWN";
}

/* Request ids need to be unique, not secret: a random prefix per process and a counter
 * (no random-number syscall per request). */
static void next_request_id(struct sp_server *srv, char *out)
{
	if (!srv->rid_prefix[0])
		sp_random_hex(srv->rid_prefix, 8);
	static const char hex[] = "0123456789abcdef";
	unsigned long long n = ++srv->rid_counter;
	memcpy(out, srv->rid_prefix, 16);
	for (int i = 31; i >= 16; i--, n >>= 4)
		out[i] = hex[n & 15];
	out[32] = '\0';
}

static bool valid_request_id(const char *s)
{
	if (!s)
		return false;
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
			return false;
	return true;
}

/* Checks limits evhttp does not enforce the way we want. Returns true if answered. */
static bool check_limits(struct sp_request *req)
{
	struct sp_server *srv = req->srv;
	struct evkeyvalq *in = evhttp_request_get_input_headers(req->ev);
	long count = 0, bytes = 0;
	for (struct evkeyval *kv = in->tqh_first; kv; kv = kv->next.tqe_next) {
		count++;
		bytes += (long)(strlen(kv->key) + strlen(kv->value) + 4);
	}
	if (count > srv->max_headers || bytes > srv->max_header_bytes) {
		char detail[160];
		snprintf(detail, sizeof(detail),
		         "%ld header fields (%ld bytes); the limits are %ld fields and %ld bytes",
		         count, bytes, srv->max_headers, srv->max_header_bytes);
		sp_request_add_header(req, "Connection", "close");
		sp_request_reply_problem(req, 431, NULL, detail, NULL);
		return true;
	}
	size_t body = evbuffer_get_length(evhttp_request_get_input_buffer(req->ev));
	if ((long)body > srv->max_body) {
		char detail[160];
		snprintf(detail, sizeof(detail), "the body has %zu bytes; the limit is %ld", body,
		         srv->max_body);
		sp_request_add_header(req, "Connection", "close");
		sp_request_reply_problem(req, 413, NULL, detail, NULL);
		return true;
	}
	return false;
}

static void dispatch(struct sp_request *req)
{
	const struct sp_route_entry *e = req->match.entry;
	if (e->route.access != SP_ACCESS_PUBLIC && !req->principal) {
		sp_request_add_header(req, "WWW-Authenticate", "Bearer");
		sp_request_reply_problem(req, 401, NULL, "this route needs a bearer token", NULL);
		return;
	}
	if (e->route.access == SP_ACCESS_ADMIN && !req->principal->is_admin) {
		sp_request_reply_problem(req, 403, NULL, "this route is for cluster staff (admins)",
		                         NULL);
		return;
	}
	const char *plugin = NULL;
	if (e->owner)
		plugin = sp_plugin_name(e->owner);
	sp_log_set_context(req->rid, plugin);
	e->route.handler(req, e->owner ? sp_plugin_state(e->owner) : e->arg);
	sp_log_set_context(NULL, NULL);
}

static void auth_done(struct sp_principal *principal, int status, void *arg)
{
	struct sp_request *req = arg;
	if (status == 503) {
		sp_request_add_header(req, "Retry-After", "1");
		sp_request_reply_problem(
		    req, 503, NULL, "credentials cannot be checked: the database is unavailable",
		    NULL);
		return;
	}
	if (status != 0) {
		sp_request_add_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
		sp_request_reply_problem(req, 401, NULL,
		                         "the bearer token is unknown, expired or revoked", NULL);
		return;
	}
	req->principal = principal;
	dispatch(req);
}

const char *sp_request_peer(struct sp_request *req)
{
	return req->peer;
}

const struct sp_principal *sp_request_principal(struct sp_request *req)
{
	return req->principal;
}

static void gen_cb(struct evhttp_request *ev, void *arg)
{
	struct sp_server *srv = arg;
	struct sp_request *req = sp_calloc(1, sizeof(*req));
	req->srv = srv;
	req->ev = ev;
	req->start_us = sp_now_us();
	req->method = method_name(evhttp_request_get_command(ev));
	srv->inflight++;

	struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
	if (evcon) {
		req->conn = conn_find(srv, evhttp_connection_get_bufferevent(evcon));
		if (req->conn)
			req->conn->state = CONN_DISPATCHED;
		char *addr = NULL;
		ev_uint16_t port = 0;
		evhttp_connection_get_peer(evcon, &addr, &port);
		sp_strlcpy(req->peer, addr ? addr : "-", sizeof(req->peer));
		if (!sp_proxies_empty(srv->proxies))
			sp_proxies_client(srv->proxies, addr ? addr : "-",
			                  sp_request_header(req, "X-Forwarded-For"), req->peer,
			                  sizeof(req->peer));
	}
	const char *rid = sp_request_header(req, "X-Request-Id");
	if (valid_request_id(rid))
		sp_strlcpy(req->rid, rid, sizeof(req->rid));
	else
		next_request_id(srv, req->rid);

	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
	const char *raw_path = uri ? evhttp_uri_get_path(uri) : NULL;
	req->path = sp_strdup(raw_path && *raw_path ? raw_path : "/");

	if (req->conn && req->conn->reject) {
		sp_request_add_header(req, "Retry-After", "1");
		sp_request_reply_problem(
		    req, 503, NULL, "the server is at its connection limit; retry shortly", NULL);
		return;
	}
	if (check_limits(req))
		return;

	enum sp_match_status st = sp_router_match(
	    srv->core->router, strcmp(req->method, "OPTIONS") == 0 ? "OPTIONS" : req->method,
	    req->path, &req->match);
	if (st == SP_MATCH_NOT_FOUND) {
		sp_request_reply_problem(req, 404, NULL, "no such resource", NULL);
		return;
	}
	if (st == SP_MATCH_BAD_METHOD) {
		sp_request_add_header(req, "Allow", req->match.allow);
		if (strcmp(req->method, "OPTIONS") == 0) {
			sp_request_reply_raw(req, 204, NULL, NULL, 0);
			return;
		}
		char detail[160];
		snprintf(detail, sizeof(detail), "%s is not allowed here; allowed: %s", req->method,
		         req->match.allow);
		sp_request_reply_problem(req, 405, NULL, detail, NULL);
		return;
	}
	/* Credentials, when given, are checked on every route (a bad token is an error
	 * even where none is needed); the route's access level is checked after. */
	const char *authz = sp_request_header(req, "Authorization");
	if (!authz) {
		dispatch(req);
		return;
	}
	const char *token = sp_auth_bearer(authz);
	if (!token) {
		sp_request_add_header(req, "WWW-Authenticate", "Bearer");
		sp_request_reply_problem(req, 401, NULL,
		                         "the Authorization header must be 'Bearer <token>'", NULL);
		return;
	}
	if (sp_auth_resolve(srv->core->db, token, auth_done, req) < 0)
		auth_done(NULL, 503, req);
}

/* ---- listening ---- */

evutil_socket_t sp_listen_socket(const char *address, unsigned *port, char *err, size_t errlen)
{
	char host[256];
	unsigned want;
	if (sp_parse_listen(address, host, sizeof(host), &want) < 0) {
		snprintf(err, errlen, "bad listen address '%s' (expected HOST:PORT)", address);
		return -1;
	}
	struct evutil_addrinfo hints = { 0 }, *ai = NULL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG;
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%u", want);
	int rc = evutil_getaddrinfo(host, portstr, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve listen address '%s': %s", host,
		         evutil_gai_strerror(rc));
		return -1;
	}
	evutil_socket_t fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		evutil_freeaddrinfo(ai);
		return -1;
	}
	evutil_make_listen_socket_reuseable(fd);
	if (bind(fd, ai->ai_addr, (socklen_t)ai->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", address, strerror(errno));
		evutil_freeaddrinfo(ai);
		close(fd);
		return -1;
	}
	evutil_freeaddrinfo(ai);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	*port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
	                                 : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

void sp_server_apply_limits(struct sp_server *srv, const struct sp_config *cfg)
{
	srv->max_connections = cfg->max_connections;
	srv->max_body = cfg->max_body_bytes;
	srv->max_header_bytes = cfg->max_header_bytes;
	srv->max_headers = cfg->max_headers;
	srv->head_timeout_s = cfg->header_timeout_s;
	srv->json_max_depth = cfg->json_max_depth;
	/* Validated with the configuration: a list that does not parse never gets here. */
	char err[160];
	struct sp_proxies *proxies = sp_proxies_parse(cfg->trusted_proxies, err, sizeof(err));
	if (proxies) {
		sp_proxies_free(srv->proxies);
		srv->proxies = proxies;
	}
	/* evhttp's limits are a memory backstop at twice ours (it answers with HTML). */
	evhttp_set_max_body_size(srv->http, (ev_ssize_t)cfg->max_body_bytes * 2);
	evhttp_set_max_headers_size(srv->http, (ev_ssize_t)cfg->max_header_bytes * 2);
	evhttp_set_timeout(srv->http, (int)cfg->idle_timeout_s);
}

struct sp_server *sp_server_new(struct sp_core *core, evutil_socket_t listen_fd)
{
	struct sp_server *srv = sp_calloc(1, sizeof(*srv));
	srv->core = core;
	srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	srv->http = evhttp_new(core->base);
	if (!srv->http)
		goto fail;
	/* Every method reaches our router, which answers 405 with Allow (evhttp would
	 * answer 501 for methods outside this set). */
	evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
	                                          EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	                                          EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH |
	                                          EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT);
	evhttp_set_flags(srv->http, EVHTTP_SERVER_LINGERING_CLOSE);
	evhttp_set_default_content_type(srv->http, "application/json");
	evhttp_set_bevcb(srv->http, bev_cb, srv);
	evhttp_set_gencb(srv->http, gen_cb, srv);
	sp_server_apply_limits(srv, core->cfg);
	srv->bound = evhttp_accept_socket_with_handle(srv->http, listen_fd);
	if (!srv->bound)
		goto fail;
	struct evconnlistener *lev = evhttp_bound_socket_get_listener(srv->bound);
	evconnlistener_set_error_cb(lev, listener_error_cb);
	srv->sweep = event_new(core->base, -1, EV_PERSIST, sweep_cb, srv);
	struct timeval one = { 1, 0 };
	event_add(srv->sweep, &one);
	return srv;
fail:
	sp_error("cannot start the HTTP server");
	sp_server_free(srv);
	return NULL;
}

/* Responses still queued for writing: evhttp writes asynchronously after send_reply. */
static bool output_pending(struct sp_server *srv)
{
	for (struct conn *c = srv->conns; c; c = c->next)
		if (!conn_orphaned(c) && evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
			return true;
	return false;
}

static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sp_server *srv = arg;
	bool expired = sp_now_us() >= srv->drain_deadline_us;
	if (!expired && (srv->inflight > 0 || output_pending(srv))) {
		struct timeval tick = { 0, 20000 };
		event_add(srv->drain_timer, &tick);
		return;
	}
	if (srv->inflight > 0)
		sp_warn("shutdown timeout: %d request(s) still in flight are dropped",
		        srv->inflight);
	void (*done)(void *) = srv->drain_done;
	srv->drain_done = NULL;
	if (done)
		done(srv->drain_arg);
}

void sp_server_drain(struct sp_server *srv, int timeout_s, void (*done)(void *), void *arg)
{
	if (srv->bound) {
		/* Stop accepting; the socket stays open in the other workers. */
		evconnlistener_disable(evhttp_bound_socket_get_listener(srv->bound));
	}
	sp_server_end_streams(srv);
	srv->drain_done = done;
	srv->drain_arg = arg;
	srv->drain_deadline_us = sp_now_us() + (uint64_t)timeout_s * 1000000u;
	srv->drain_timer = event_new(srv->core->base, -1, 0, drain_cb, srv);
	event_active(srv->drain_timer, EV_TIMEOUT, 0);
}

void sp_server_free(struct sp_server *srv)
{
	if (!srv)
		return;
	if (srv->sweep)
		event_free(srv->sweep);
	if (srv->drain_timer)
		event_free(srv->drain_timer);
	sp_server_end_streams(srv);
	if (srv->http)
		evhttp_free(srv->http); /* frees every connection: all are orphaned now */
	while (srv->conns)
		conn_free(srv, srv->conns);
	if (srv->reserve_fd >= 0)
		close(srv->reserve_fd);
	sp_proxies_free(srv->proxies);
	free(srv);
}

int sp_server_inflight(const struct sp_server *srv)
{
	return srv->inflight;
}

int sp_server_connections(const struct sp_server *srv)
{
	return srv->nconns;
}
