/* pg_server.c — the "one row from PostgreSQL" ceiling: bare libevent evhttp plus a small
 * pool of non-blocking libpq connections driven by the same event loop. Every request
 * GET /items/{id} runs one parameterised SELECT that returns one row, and the row is
 * answered as a JSON object built with jansson. One process, one event loop; no routing
 * table, no logging, no metrics, no request ids.
 *
 *   pg_server [--prepared] [--auth] PORT_FILE CONNINFO POOL_SIZE
 *
 * Listens on 127.0.0.1 on a free port, writes the port number to PORT_FILE once every
 * pool connection is up, and runs until SIGTERM or SIGINT. The statement is sent with
 * PQsendQueryParams (an unnamed statement, what a plugin's db_query does); with
 * --prepared it is prepared once per connection and run with PQsendQueryPrepared.
 * A request waits in a FIFO queue while every connection is busy. Any database error
 * answers 500; a lost connection ends the process (this is a measuring tool).
 *
 * --auth is the ceiling of an authenticated one-row route (Spearhead's GET /v1/me): every
 * request (any path) must carry "Authorization: Bearer <token>"; the token's SHA-256
 * digest (libsodium) is looked up in bench_tokens joined to bench_items — a prepared
 * statement, as sp_auth_resolve does — and compared again in constant time (no such
 * token: 401); then, on the same connection, the one-row SELECT above reads the item the
 * token belongs to and answers it. Two dependent round trips per request, like a token
 * lookup followed by the handler's own query. bench/run creates the tables:
 *   bench_tokens (digest bytea PRIMARY KEY, item_id int REFERENCES bench_items,
 *                 revoked_at timestamptz, expires_at timestamptz)
 */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <sodium.h>

#define SQL       "SELECT id, label FROM bench_items WHERE id = $1"
#define STMT_NAME "bench_item"
#define SQL_AUTH                                                                                   \
	"SELECT encode(t.digest, 'hex'), i.id FROM bench_tokens t "                                \
	"JOIN bench_items i ON i.id = t.item_id "                                                  \
	"WHERE t.digest = decode($1, 'hex') AND t.revoked_at IS NULL "                             \
	"AND (t.expires_at IS NULL OR t.expires_at > now())"
#define STMT_AUTH  "bench_token"
#define DIGEST_HEX (2 * crypto_hash_sha256_BYTES + 1)
#define MAX_POOL   64

enum { OID_INT2 = 21, OID_INT4 = 23, OID_INT8 = 20 };

struct job {
	struct job *next;
	struct evhttp_request *req;
	char id[24];
	char digest[DIGEST_HEX]; /* --auth: the token's digest, while looking it up */
	int looking_up;          /* --auth: the first of the two queries is in flight */
};

struct conn {
	PGconn *pg;
	struct event *rd, *wr;
	struct job *job; /* in flight, NULL when idle */
	PGresult *res;
};

static struct {
	struct event_base *base;
	struct conn conns[MAX_POOL];
	int nconns;
	int prepared;
	int auth;
	struct job *head, *tail; /* waiting for a connection */
} g;

static void die_conn(struct conn *c, const char *what)
{
	fprintf(stderr, "pg_server: %s: %s", what, PQerrorMessage(c->pg));
	exit(1);
}

static void reply_text(struct evhttp_request *req, int status, const char *reason, const char *text)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	evbuffer_add(out, text, strlen(text));
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  "application/json");
	evhttp_send_reply(req, status, reason, NULL);
}

/* The one row as a JSON object: integer columns as numbers, the rest as strings. */
static json_t *row_json(const PGresult *r)
{
	json_t *obj = json_object();
	for (int i = 0; i < PQnfields(r); i++) {
		json_t *v;
		Oid t = PQftype(r, i);
		if (PQgetisnull(r, 0, i))
			v = json_null();
		else if (t == OID_INT2 || t == OID_INT4 || t == OID_INT8)
			v = json_integer(strtoll(PQgetvalue(r, 0, i), NULL, 10));
		else
			v = json_string(PQgetvalue(r, 0, i));
		json_object_set_new(obj, PQfname(r, i), v);
	}
	return obj;
}

static void answer(struct job *job, PGresult *r)
{
	if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
		reply_text(job->req, 500, "Internal Server Error", "{\"status\":500}");
	} else if (PQntuples(r) != 1) {
		reply_text(job->req, 404, "Not Found", "{\"status\":404}");
	} else {
		json_t *obj = row_json(r);
		char *text = json_dumps(obj, JSON_COMPACT);
		json_decref(obj);
		reply_text(job->req, 200, "OK", text ? text : "null");
		free(text);
	}
}

/* --auth: the outcome of the token lookup: 0 when the token is known (job->id is then the
 * item it belongs to), 401 when it is not, 500 when the query failed. */
static int token_status(struct job *job, const PGresult *r)
{
	if (!r || PQresultStatus(r) != PGRES_TUPLES_OK)
		return 500;
	if (PQntuples(r) != 1 || PQgetlength(r, 0, 0) != DIGEST_HEX - 1 ||
	    sodium_memcmp(PQgetvalue(r, 0, 0), job->digest, DIGEST_HEX - 1) != 0)
		return 401;
	snprintf(job->id, sizeof(job->id), "%s", PQgetvalue(r, 0, 1));
	return 0;
}

static void flush(struct conn *c)
{
	int r = PQflush(c->pg);
	if (r < 0)
		die_conn(c, "flush");
	if (r == 1)
		event_add(c->wr, NULL);
}

static void send_job(struct conn *c, struct job *job)
{
	const char *params[1] = { job->id };
	int ok;
	c->job = job;
	if (job->looking_up) {
		params[0] = job->digest;
		ok = PQsendQueryPrepared(c->pg, STMT_AUTH, 1, params, NULL, NULL, 0);
	} else if (g.prepared)
		ok = PQsendQueryPrepared(c->pg, STMT_NAME, 1, params, NULL, NULL, 0);
	else
		ok = PQsendQueryParams(c->pg, SQL, 1, NULL, params, NULL, NULL, 0);
	if (!ok)
		die_conn(c, "send");
	flush(c);
}

/* Gives idle connections the jobs waiting in the queue. */
static void pump(void)
{
	for (int i = 0; i < g.nconns && g.head; i++) {
		struct conn *c = &g.conns[i];
		if (c->job)
			continue;
		struct job *job = g.head;
		g.head = job->next;
		if (!g.head)
			g.tail = NULL;
		send_job(c, job);
	}
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	if (!PQconsumeInput(c->pg))
		die_conn(c, "read");
	if (!c->job)
		return; /* nothing in flight: a notice or a parameter status */
	while (!PQisBusy(c->pg)) {
		PGresult *r = PQgetResult(c->pg);
		if (!r) {
			struct job *job = c->job;
			int status = job->looking_up ? token_status(job, c->res) : 200;
			if (status == 0) {
				/* The token is known: the second round trip, on the same
				 * connection. */
				PQclear(c->res);
				c->res = NULL;
				job->looking_up = 0;
				send_job(c, job);
				return;
			}
			c->job = NULL;
			if (status == 401)
				reply_text(job->req, 401, "Unauthorized", "{\"status\":401}");
			else
				answer(job, c->res); /* a failed lookup answers 500 here */
			PQclear(c->res);
			c->res = NULL;
			free(job);
			if (g.head) {
				struct job *next = g.head;
				g.head = next->next;
				if (!g.head)
					g.tail = NULL;
				send_job(c, next);
			}
			return;
		}
		if (c->res)
			PQclear(c->res);
		c->res = r;
	}
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	flush(arg);
}

/* Queues a request for the next idle connection. */
static void enqueue(struct evhttp_request *req, const char *id, const char *digest)
{
	struct job *job = calloc(1, sizeof(*job));
	if (!job) {
		reply_text(req, 503, "Service Unavailable", "{\"status\":503}");
		return;
	}
	job->req = req;
	if (id)
		snprintf(job->id, sizeof(job->id), "%s", id);
	if (digest) {
		memcpy(job->digest, digest, DIGEST_HEX);
		job->looking_up = 1;
	}
	if (g.tail)
		g.tail->next = job;
	else
		g.head = job;
	g.tail = job;
	pump();
}

static void items_cb(struct evhttp_request *req, void *arg)
{
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	static const char prefix[] = "/items/";
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET || !path ||
	    strncmp(path, prefix, sizeof(prefix) - 1) != 0) {
		reply_text(req, 404, "Not Found", "{\"status\":404}");
		return;
	}
	const char *id = path + sizeof(prefix) - 1;
	size_t n = strlen(id);
	if (n == 0 || n > 18 || strspn(id, "0123456789") != n) {
		reply_text(req, 400, "Bad Request", "{\"status\":400}");
		return;
	}
	enqueue(req, id, NULL);
}

/* --auth: any GET with a bearer token; the row is the one the token belongs to. */
static void auth_cb(struct evhttp_request *req, void *arg)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		reply_text(req, 405, "Method Not Allowed", "{\"status\":405}");
		return;
	}
	if (!h || strncasecmp(h, "Bearer ", 7) != 0 || !h[7]) {
		reply_text(req, 401, "Unauthorized", "{\"status\":401}");
		return;
	}
	unsigned char d[crypto_hash_sha256_BYTES];
	char digest[DIGEST_HEX];
	crypto_hash_sha256(d, (const unsigned char *)h + 7, strlen(h + 7));
	sodium_bin2hex(digest, sizeof(digest), d, sizeof(d));
	enqueue(req, NULL, digest);
}

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopexit(arg, NULL);
}

static int write_port(const char *path, evutil_socket_t fd)
{
	struct sockaddr_storage ss;
	ev_socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	unsigned port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -1;
	int ok = fprintf(f, "%u\n", port) > 0;
	ok = fclose(f) == 0 && ok;
	return ok && rename(tmp, path) == 0 ? 0 : -1;
}

/* Prepares a one-parameter statement on a connection still in blocking mode. */
static void prepare(struct conn *c, const char *name, const char *sql)
{
	PGresult *r = PQprepare(c->pg, name, sql, 1, NULL);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		die_conn(c, "prepare");
	PQclear(r);
}

int main(int argc, char **argv)
{
	int a = 1;
	for (; a < argc && strncmp(argv[a], "--", 2) == 0; a++) {
		if (strcmp(argv[a], "--prepared") == 0)
			g.prepared = 1;
		else if (strcmp(argv[a], "--auth") == 0)
			g.auth = 1;
		else
			break;
	}
	if (argc - a != 3) {
		fprintf(stderr, "usage: %s [--prepared] [--auth] PORT_FILE CONNINFO POOL_SIZE\n",
		        argv[0]);
		return 2;
	}
	const char *port_file = argv[a], *conninfo = argv[a + 1];
	g.nconns = atoi(argv[a + 2]);
	if (g.nconns < 1 || g.nconns > MAX_POOL) {
		fprintf(stderr, "pg_server: POOL_SIZE must be 1..%d\n", MAX_POOL);
		return 2;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "pg_server: cannot initialise libsodium\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	g.base = event_base_new();
	struct evhttp *http = g.base ? evhttp_new(g.base) : NULL;
	if (!http) {
		fprintf(stderr, "pg_server: cannot create the event loop\n");
		return 1;
	}
	/* The pool: connected (blocking, once, at start), then switched to non-blocking. */
	for (int i = 0; i < g.nconns; i++) {
		struct conn *c = &g.conns[i];
		c->pg = PQconnectdb(conninfo);
		if (PQstatus(c->pg) != CONNECTION_OK)
			die_conn(c, "connect");
		if (g.prepared)
			prepare(c, STMT_NAME, SQL);
		if (g.auth)
			prepare(c, STMT_AUTH, SQL_AUTH);
		if (PQsetnonblocking(c->pg, 1) != 0)
			die_conn(c, "non-blocking mode");
		c->rd = event_new(g.base, PQsocket(c->pg), EV_READ | EV_PERSIST, conn_read_cb, c);
		c->wr = event_new(g.base, PQsocket(c->pg), EV_WRITE, conn_write_cb, c);
		event_add(c->rd, NULL);
	}
	evhttp_set_gencb(http, g.auth ? auth_cb : items_cb, NULL);
	struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
	if (!bound) {
		fprintf(stderr, "pg_server: cannot listen on 127.0.0.1\n");
		return 1;
	}
	if (write_port(port_file, evhttp_bound_socket_get_fd(bound)) < 0) {
		perror("pg_server: port file");
		return 1;
	}
	struct event *term = evsignal_new(g.base, SIGTERM, stop_cb, g.base);
	struct event *intr = evsignal_new(g.base, SIGINT, stop_cb, g.base);
	event_add(term, NULL);
	event_add(intr, NULL);
	event_base_dispatch(g.base);
	event_free(term);
	event_free(intr);
	evhttp_free(http);
	for (int i = 0; i < g.nconns; i++) {
		event_free(g.conns[i].rd);
		event_free(g.conns[i].wr);
		PQclear(g.conns[i].res);
		PQfinish(g.conns[i].pg);
	}
	event_base_free(g.base);
	return 0;
}
