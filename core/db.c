/* db.c — non-blocking PostgreSQL pool: libpq in non-blocking mode driven by libevent. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif

#include "db.h"
#include "log.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <libpq-fe.h>

#define DB_DEFAULT_POOL_SIZE        4
#define DB_DEFAULT_QUEUE_TIMEOUT_MS 5000
#define DB_BACKOFF_MIN_MS           100
#define DB_BACKOFF_MAX_MS           5000
/* libpq ignores connect_timeout with PQconnectPoll: we time the attempt ourselves. */
#define DB_CONNECT_TIMEOUT_MS 10000
/* NAMEDATALEN - 1: the server silently truncates longer identifiers. */
#define DB_NAME_MAX   63
#define DB_MAX_PARAMS 65535

/* Type OIDs from pg_type.dat; fixed across server versions. */
enum {
	OID_BOOL = 16,
	OID_INT8 = 20,
	OID_INT2 = 21,
	OID_INT4 = 23,
	OID_JSON = 114,
	OID_FLOAT4 = 700,
	OID_FLOAT8 = 701,
	OID_NUMERIC = 1700,
	OID_JSONB = 3802,
};

struct sp_db_result {
	const PGresult *pg; /* NULL: an error reported by the pool itself */
	const char *sqlstate;
	const char *error;
};

enum op_kind { OP_QUERY, OP_PREPARED, OP_TX_START };

/* A statement waiting for or running on a connection, or a transaction waiting for one. */
struct db_op {
	struct db_op *next;
	enum op_kind kind;
	struct sp_db_tx *tx; /* OP_TX_START, or the transaction a query belongs to */
	char *sql;
	char *name; /* OP_PREPARED */
	int nparams;
	char **params;
	sp_db_result_fn *cb;
	void *arg;
	int64_t deadline_ms; /* queue timeout, monotonic clock */
};

struct op_queue {
	struct db_op *head, *tail;
	int len;
};

enum conn_state { CONN_WAIT, CONN_CONNECTING, CONN_SETUP, CONN_READY };
/* What the statement in flight is for. */
enum conn_busy {
	BUSY_NONE,
	BUSY_SETUP,
	BUSY_PREPARE,
	BUSY_OP,
	BUSY_TXCTL,
	BUSY_LISTEN,
	BUSY_CLEANUP
};

struct db_chan;

struct db_conn {
	struct sp_db *db;
	bool listener;
	bool failing; /* listener only: outage already logged */
	enum conn_state state;
	enum conn_busy busy;
	PGconn *pg;
	struct event *ev; /* socket watch, recreated when the socket or the interest changes */
	evutil_socket_t ev_fd;
	short ev_what;
	bool flushing;       /* PQflush returned 1: wait for writability too */
	struct event *timer; /* reconnect backoff, or connect timeout */
	int backoff_ms;
	struct db_op *op;     /* BUSY_PREPARE, BUSY_OP */
	struct sp_db_tx *tx;  /* reserved by a transaction */
	struct db_chan *chan; /* BUSY_LISTEN */
	PGresult *res;        /* result kept for the statement in flight */
	char **prepared;      /* statement names prepared on this session */
	size_t nprepared, prepared_cap;
};

enum tx_ctl { CTL_BEGIN, CTL_COMMIT, CTL_ROLLBACK };
enum tx_finish { FIN_NONE, FIN_COMMIT, FIN_ROLLBACK };

struct sp_db_tx {
	struct sp_db *db;
	struct db_conn *conn; /* NULL while waiting in the pool queue */
	const char *begin_sql;
	int retries_left;
	sp_db_tx_fn *body;
	sp_db_tx_done_fn *done;
	void *arg;
	struct op_queue ops;   /* queries issued by the body, run in order */
	enum tx_finish finish; /* requested by the body, runs after ops */
	enum tx_ctl ctl;       /* BEGIN/COMMIT/ROLLBACK in flight */
	bool aborting;         /* an error is being rolled back */
	bool idle_rollback;    /* rolled back because the body left it idle */
	PGresult *err;         /* the failure being rolled back */
};

struct db_chan {
	struct db_chan *next;
	char *name;
	sp_db_notify_fn *cb;
	void *arg;
	bool subscribed; /* LISTEN done on the current listener session */
};

/* A NOTIFY waiting for the end of the loop pass. */
struct db_note {
	char *channel, *payload;
	struct db_note *next;
};

struct sp_db {
	struct event_base *base;
	char *url;
	char *app_name;
	int pool_size, queue_timeout_ms, statement_timeout_ms, lock_timeout_ms;
	struct db_conn *conns; /* pool_size */
	struct db_conn *listener;
	struct db_chan *chans, *chans_tail;
	struct op_queue queue;
	struct event *kick;        /* deferred work: dispatch, fail fast */
	struct event *queue_timer; /* fires when the queue head times out */
	struct event *notes_flush; /* sends the NOTIFYs asked for during this loop pass */
	struct db_note *notes, *notes_tail;
	bool connect_failed; /* the last pool connect attempt failed */
	bool closing, free_pending;
	int depth; /* nesting of our event callbacks: sp_db_free waits for 0 */
	unsigned long long queries, errors;
};

static void conn_start(struct db_conn *c);
static void conn_pump(struct db_conn *c);
static void conn_lost(struct db_conn *c, const char *msg);
static void tx_rolled_back(struct sp_db_tx *tx);
static void notes_flush_cb(evutil_socket_t fd, short what, void *arg);

/* The one logging hook of this file, to be swapped for the core logger. */
static void db_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void db_log(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	/* One line per message: libpq messages span several. */
	for (char *p = buf; *p; p++)
		if (*p == '\n' || *p == '\t' || *p == '\r')
			*p = ' ';
	sp_log(SP_LOG_WARN, "database: %s", buf);
}

/* libpq messages end with a newline; log them without it. */
static int msg_len(const char *msg)
{
	size_t n = msg ? strlen(msg) : 0;

	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		n--;
	return n > 1000 ? 1000 : (int)n;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timeval ms_tv(int64_t ms)
{
	struct timeval tv;

	if (ms < 0)
		ms = 0;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (long)(ms % 1000) * 1000;
	return tv;
}

static char *db_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = malloc(n);

	if (p)
		memcpy(p, s, n);
	return p;
}

/* Every entry from libevent goes through here so that sp_db_free called from a user
 * callback only takes effect once our stack has unwound. */
static void db_destroy(struct sp_db *db);

static void db_leave(struct sp_db *db)
{
	if (--db->depth == 0 && db->free_pending)
		db_destroy(db);
}

static void db_kick(struct sp_db *db)
{
	event_active(db->kick, EV_TIMEOUT, 0);
}

/* ---- results ---- */

static bool pg_ok(const PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);

	return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

static bool pg_retryable(const PGresult *r)
{
	const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);

	return st && (!strcmp(st, "40001") || !strcmp(st, "40P01"));
}

/* A NULL result is the success of sp_db_tx_done_fn: OK and empty. */
bool sp_db_result_ok(const struct sp_db_result *res)
{
	if (!res)
		return true;
	return res->pg && pg_ok(res->pg);
}

const char *sp_db_result_sqlstate(const struct sp_db_result *res)
{
	const char *st;

	if (!res)
		return "";
	if (!res->pg)
		return res->sqlstate;
	if (pg_ok(res->pg))
		return "";
	st = PQresultErrorField(res->pg, PG_DIAG_SQLSTATE);
	return st ? st : "";
}

const char *sp_db_result_error(const struct sp_db_result *res)
{
	const char *msg;

	if (!res)
		return "";
	if (!res->pg)
		return res->error;
	if (pg_ok(res->pg))
		return "";
	if (PQresultStatus(res->pg) == PGRES_EMPTY_QUERY)
		return "empty query";
	/* The primary message has no "ERROR:" prefix or trailing newline. */
	msg = PQresultErrorField(res->pg, PG_DIAG_MESSAGE_PRIMARY);
	if (!msg || !*msg)
		msg = PQresultErrorMessage(res->pg);
	return *msg ? msg : "unknown error";
}

int sp_db_result_ntuples(const struct sp_db_result *res)
{
	return res && res->pg ? PQntuples(res->pg) : 0;
}

int sp_db_result_nfields(const struct sp_db_result *res)
{
	return res && res->pg ? PQnfields(res->pg) : 0;
}

const char *sp_db_result_fname(const struct sp_db_result *res, int col)
{
	if (col < 0 || col >= sp_db_result_nfields(res))
		return NULL;
	return PQfname(res->pg, col);
}

/* Exact match: PQfnumber would fold unquoted names to lower case. */
int sp_db_result_fnumber(const struct sp_db_result *res, const char *name)
{
	int n = sp_db_result_nfields(res);

	if (!name)
		return -1;
	for (int i = 0; i < n; i++)
		if (!strcmp(PQfname(res->pg, i), name))
			return i;
	return -1;
}

static bool in_range(const struct sp_db_result *res, int row, int col)
{
	return row >= 0 && col >= 0 && row < sp_db_result_ntuples(res) &&
	       col < sp_db_result_nfields(res);
}

const char *sp_db_result_value(const struct sp_db_result *res, int row, int col)
{
	if (!in_range(res, row, col) || PQgetisnull(res->pg, row, col))
		return NULL;
	return PQgetvalue(res->pg, row, col);
}

bool sp_db_result_isnull(const struct sp_db_result *res, int row, int col)
{
	return !in_range(res, row, col) || PQgetisnull(res->pg, row, col);
}

const char *sp_db_result_cmd_tuples(const struct sp_db_result *res)
{
	/* PQcmdTuples takes a non-const result but does not modify it. */
	return res && res->pg ? PQcmdTuples((PGresult *)res->pg) : "";
}

/* Timestamps stay as the text the server prints; every session runs with
 * TimeZone UTC and DateStyle ISO (see setup_sql) so that text is stable. */
static json_t *value_json(const PGresult *r, int row, int col)
{
	const char *v;
	char *end;
	json_t *j;

	if (PQgetisnull(r, row, col))
		return json_null();
	v = PQgetvalue(r, row, col);
	switch (PQftype(r, col)) {
	case OID_BOOL:
		return json_boolean(v[0] == 't');
	case OID_INT2:
	case OID_INT4:
	case OID_INT8: {
		long long n;

		errno = 0;
		n = strtoll(v, &end, 10);
		if (errno == 0 && end != v && *end == '\0')
			return json_integer(n);
		break;
	}
	case OID_FLOAT4:
	case OID_FLOAT8:
	case OID_NUMERIC: {
		/* NaN and Infinity have no JSON number: they fall through to a string. */
		double d = strtod(v, &end);

		if (end != v && *end == '\0' && isfinite(d))
			return json_real(d);
		break;
	}
	case OID_JSON:
	case OID_JSONB:
		j = json_loads(v, JSON_DECODE_ANY, NULL);
		if (j)
			return j;
		break;
	default:
		break;
	}
	j = json_stringn(v, (size_t)PQgetlength(r, row, col));
	/* Only invalid UTF-8 (a SQL_ASCII database) gets here with NULL. */
	return j ? j : json_null();
}

json_t *sp_db_result_row_json(const struct sp_db_result *res, int row)
{
	json_t *obj;
	int n = sp_db_result_nfields(res);

	if (row < 0 || row >= sp_db_result_ntuples(res))
		return NULL;
	obj = json_object();
	if (!obj)
		return NULL;
	for (int i = 0; i < n; i++) {
		if (json_object_set_new(obj, PQfname(res->pg, i), value_json(res->pg, row, i)) <
		    0) {
			json_decref(obj);
			return NULL;
		}
	}
	return obj;
}

json_t *sp_db_result_rows_json(const struct sp_db_result *res)
{
	json_t *arr = json_array();
	int n = sp_db_result_ntuples(res);

	if (!arr)
		return NULL;
	for (int i = 0; i < n; i++) {
		if (json_array_append_new(arr, sp_db_result_row_json(res, i)) < 0) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

/* ---- ops and queues ---- */

static void op_free(struct db_op *op)
{
	if (!op)
		return;
	for (int i = 0; i < op->nparams; i++)
		free(op->params[i]);
	free(op->params);
	free(op->sql);
	free(op->name);
	free(op);
}

static struct db_op *op_new(enum op_kind kind, const char *name, const char *sql, int nparams,
                            const char *const *params, sp_db_result_fn *cb, void *arg)
{
	struct db_op *op = calloc(1, sizeof *op);

	if (!op)
		return NULL;
	op->kind = kind;
	op->cb = cb;
	op->arg = arg;
	if (sql && !(op->sql = db_strdup(sql)))
		goto fail;
	if (name && !(op->name = db_strdup(name)))
		goto fail;
	if (nparams > 0) {
		op->params = calloc((size_t)nparams, sizeof *op->params);
		if (!op->params)
			goto fail;
		op->nparams = nparams;
		for (int i = 0; i < nparams; i++)
			if (params[i] && !(op->params[i] = db_strdup(params[i])))
				goto fail;
	}
	return op;
fail:
	op_free(op);
	return NULL;
}

static void queue_push(struct op_queue *q, struct db_op *op)
{
	op->next = NULL;
	if (q->tail)
		q->tail->next = op;
	else
		q->head = op;
	q->tail = op;
	q->len++;
}

static struct db_op *queue_pop(struct op_queue *q)
{
	struct db_op *op = q->head;

	if (!op)
		return NULL;
	q->head = op->next;
	if (!q->head)
		q->tail = NULL;
	q->len--;
	op->next = NULL;
	return op;
}

static void queue_clear(struct op_queue *q)
{
	struct db_op *op;

	while ((op = queue_pop(q)))
		op_free(op);
}

/* Deadlines grow along the FIFO, so one timer for the head is enough. */
static void queue_rearm(struct sp_db *db)
{
	struct timeval tv;

	if (!db->queue.head) {
		evtimer_del(db->queue_timer);
		return;
	}
	tv = ms_tv(db->queue.head->deadline_ms - now_ms());
	evtimer_add(db->queue_timer, &tv);
}

/* ---- transactions ---- */

static void tx_free(struct sp_db_tx *tx)
{
	queue_clear(&tx->ops);
	PQclear(tx->err);
	free(tx);
}

/* Releases the connection and reports the outcome; tx is gone afterwards. */
static void tx_finish(struct sp_db_tx *tx, const struct sp_db_result *res)
{
	if (tx->conn)
		tx->conn->tx = NULL;
	tx->conn = NULL;
	tx->done(res, tx->arg);
	tx_free(tx);
}

static void op_finish(struct sp_db *db, struct db_op *op, const struct sp_db_result *res)
{
	db->queries++;
	if (!sp_db_result_ok(res))
		db->errors++;
	if (op->cb)
		op->cb(res, op->arg);
	op_free(op);
}

/* Fails a statement or a waiting transaction with an error of the pool's own. */
static void op_fail(struct sp_db *db, struct db_op *op, const char *state, const char *msg)
{
	struct sp_db_result r = { NULL, state, msg };
	struct sp_db_tx *tx = op->tx;

	if (op->kind == OP_TX_START) {
		op_free(op);
		tx_finish(tx, &r);
	} else if (tx) {
		op_free(op); /* tx queries only report success; the tx reports the failure */
	} else {
		op_finish(db, op, &r);
	}
}

static void fail_queue(struct sp_db *db, const char *msg)
{
	struct db_op *op;

	while (!db->closing && (op = queue_pop(&db->queue)))
		op_fail(db, op, SP_DB_STATE_UNAVAILABLE, msg);
	if (!db->closing)
		queue_rearm(db);
}

/* ---- connections: socket watching ---- */

static void conn_event_cb(evutil_socket_t fd, short what, void *arg);

/* (Re)creates the socket event when the socket, the interest or the session changes:
 * libpq may close and reopen sockets while connecting, possibly with the same number. */
static int conn_watch(struct db_conn *c, short what, bool renew)
{
	evutil_socket_t fd = PQsocket(c->pg);

	if (fd < 0)
		return -1;
	if (c->ev && (renew || fd != c->ev_fd || what != c->ev_what)) {
		event_free(c->ev);
		c->ev = NULL;
	}
	if (!c->ev) {
		c->ev = event_new(c->db->base, fd, what | EV_PERSIST, conn_event_cb, c);
		if (!c->ev)
			return -1;
		c->ev_fd = fd;
		c->ev_what = what;
		if (event_add(c->ev, NULL) < 0)
			return -1;
	}
	return 0;
}

/* PQflush until 0; while it returns 1 we also wait for the socket to become writable. */
static int conn_flush(struct db_conn *c, bool renew)
{
	int r = PQflush(c->pg);

	if (r < 0)
		return -1;
	c->flushing = r == 1;
	return conn_watch(c, c->flushing ? EV_READ | EV_WRITE : EV_READ, renew);
}

/* After a PQsend*: start flushing, or give the connection up. The connection (and the
 * transaction on it) may be gone afterwards. */
static void conn_sent(struct db_conn *c, int ok)
{
	if (!ok || conn_flush(c, false) < 0)
		conn_lost(c, PQerrorMessage(c->pg));
}

static void prepared_clear(struct db_conn *c)
{
	for (size_t i = 0; i < c->nprepared; i++)
		free(c->prepared[i]);
	free(c->prepared);
	c->prepared = NULL;
	c->nprepared = c->prepared_cap = 0;
}

static bool prepared_has(const struct db_conn *c, const char *name)
{
	for (size_t i = 0; i < c->nprepared; i++)
		if (!strcmp(c->prepared[i], name))
			return true;
	return false;
}

static int prepared_add(struct db_conn *c, const char *name)
{
	char *copy;

	if (c->nprepared == c->prepared_cap) {
		size_t cap = c->prepared_cap ? c->prepared_cap * 2 : 8;
		char **p = realloc(c->prepared, cap * sizeof *p);

		if (!p)
			return -1;
		c->prepared = p;
		c->prepared_cap = cap;
	}
	copy = db_strdup(name);
	if (!copy)
		return -1;
	c->prepared[c->nprepared++] = copy;
	return 0;
}

static bool prepared_forget(struct db_conn *c, const char *name)
{
	for (size_t i = 0; i < c->nprepared; i++) {
		if (!strcmp(c->prepared[i], name)) {
			free(c->prepared[i]);
			c->prepared[i] = c->prepared[--c->nprepared];
			return true;
		}
	}
	return false;
}

/* Drops the session; the event goes first, before PQfinish closes its socket. */
static void conn_close(struct db_conn *c)
{
	if (c->ev) {
		event_free(c->ev);
		c->ev = NULL;
	}
	c->ev_fd = -1;
	c->ev_what = 0;
	c->flushing = false;
	PQclear(c->res);
	c->res = NULL;
	if (c->pg) {
		PQfinish(c->pg);
		c->pg = NULL;
	}
	prepared_clear(c);
	c->busy = BUSY_NONE;
	c->chan = NULL;
	c->state = CONN_WAIT;
}

static void conn_schedule(struct db_conn *c, int ms)
{
	struct timeval tv = ms_tv(ms);

	evtimer_add(c->timer, &tv);
}

static void conn_retry_later(struct db_conn *c)
{
	conn_schedule(c, c->backoff_ms);
	c->backoff_ms =
	    c->backoff_ms * 2 > DB_BACKOFF_MAX_MS ? DB_BACKOFF_MAX_MS : c->backoff_ms * 2;
}

/* A connect attempt (connect or session setup) failed: back off and try again. */
static void conn_attempt_failed(struct db_conn *c, const char *msg)
{
	struct sp_db *db = c->db;
	bool first = c->listener ? !c->failing : !db->connect_failed;

	if (first)
		db_log("cannot connect%s: %.*s", c->listener ? " (listen)" : "", msg_len(msg), msg);
	if (c->listener)
		c->failing = true;
	else
		db->connect_failed = true;
	conn_close(c);
	conn_retry_later(c);
	/* The kick fails queued queries at once if no connection is left. */
	if (!c->listener)
		db_kick(db);
}

/* An established session broke: whatever ran on it fails with SP503 and is not retried
 * (the statement may or may not have been applied). */
static void conn_broken(struct db_conn *c, const char *msg)
{
	struct sp_db *db = c->db;
	struct db_op *op = c->op;
	struct sp_db_tx *tx = c->tx;

	db_log("connection lost%s: %.*s", c->listener ? " (listen)" : "", msg_len(msg), msg);
	c->op = NULL;
	c->tx = NULL;
	conn_close(c);
	conn_retry_later(c);
	if (c->listener)
		for (struct db_chan *ch = db->chans; ch; ch = ch->next)
			ch->subscribed = false;
	if (tx)
		tx->conn = NULL;
	if (op)
		op_fail(db, op, SP_DB_STATE_UNAVAILABLE, "database connection lost");
	if (tx) {
		struct sp_db_result r = { NULL, SP_DB_STATE_UNAVAILABLE,
			                  "database connection lost" };

		tx_finish(tx, &r);
	}
	db_kick(db);
}

static void conn_lost(struct db_conn *c, const char *msg)
{
	char buf[512];

	/* msg may live in c->pg, which both paths free. */
	snprintf(buf, sizeof buf, "%.*s", msg_len(msg), msg ? msg : "");
	if (c->state == CONN_READY)
		conn_broken(c, buf);
	else
		conn_attempt_failed(c, buf);
}

static void conn_ready(struct db_conn *c)
{
	struct sp_db *db = c->db;

	evtimer_del(c->timer);
	c->state = CONN_READY;
	c->backoff_ms = DB_BACKOFF_MIN_MS;
	if (c->listener ? c->failing : db->connect_failed)
		db_log("connected again%s", c->listener ? " (listen)" : "");
	if (c->listener)
		c->failing = false;
	else
		db->connect_failed = false;
	conn_pump(c);
}

/* ---- connections: statements ---- */

static void send_ctl(struct db_conn *c, enum tx_ctl ctl, const char *sql)
{
	c->tx->ctl = ctl;
	c->busy = BUSY_TXCTL;
	conn_sent(c, PQsendQueryParams(c->pg, sql, 0, NULL, NULL, NULL, NULL, 0));
}

static void conn_send_op(struct db_conn *c, struct db_op *op)
{
	const char *const *params = (const char *const *)op->params;

	c->op = op;
	if (op->kind == OP_PREPARED && !prepared_has(c, op->name)) {
		c->busy = BUSY_PREPARE;
		conn_sent(c, PQsendPrepare(c->pg, op->name, op->sql, op->nparams, NULL));
		return;
	}
	c->busy = BUSY_OP;
	if (op->kind == OP_PREPARED)
		conn_sent(c,
		          PQsendQueryPrepared(c->pg, op->name, op->nparams, params, NULL, NULL, 0));
	else
		conn_sent(
		    c, PQsendQueryParams(c->pg, op->sql, op->nparams, NULL, params, NULL, NULL, 0));
}

static void tx_pump(struct sp_db_tx *tx)
{
	struct db_conn *c = tx->conn;
	struct db_op *op = queue_pop(&tx->ops);

	if (op) {
		conn_send_op(c, op);
		return;
	}
	switch (tx->finish) {
	case FIN_COMMIT:
		send_ctl(c, CTL_COMMIT, "COMMIT");
		break;
	case FIN_ROLLBACK:
		send_ctl(c, CTL_ROLLBACK, "ROLLBACK");
		break;
	case FIN_NONE:
		/* The body returned with nothing left to run: nothing can ever finish it. */
		db_log("transaction left idle by its body: rolling back");
		tx->finish = FIN_ROLLBACK;
		tx->idle_rollback = true;
		send_ctl(c, CTL_ROLLBACK, "ROLLBACK");
		break;
	}
}

static void listen_next(struct db_conn *c)
{
	struct db_chan *ch = c->db->chans;
	char *id, *sql;
	size_t n;
	int ok;

	while (ch && ch->subscribed)
		ch = ch->next;
	if (!ch)
		return;
	id = PQescapeIdentifier(c->pg, ch->name, strlen(ch->name));
	if (!id) {
		conn_lost(c, PQerrorMessage(c->pg));
		return;
	}
	n = strlen(id) + sizeof "LISTEN ";
	sql = malloc(n);
	if (!sql) {
		PQfreemem(id);
		conn_lost(c, "out of memory");
		return;
	}
	snprintf(sql, n, "LISTEN %s", id);
	PQfreemem(id);
	c->chan = ch;
	c->busy = BUSY_LISTEN;
	ok = PQsendQueryParams(c->pg, sql, 0, NULL, NULL, NULL, NULL, 0);
	free(sql);
	conn_sent(c, ok);
}

/* Gives an idle, ready connection its next piece of work. */
static void conn_pump(struct db_conn *c)
{
	struct sp_db *db = c->db;
	struct db_op *op;

	if (db->closing || c->state != CONN_READY || c->busy != BUSY_NONE)
		return;
	if (c->listener) {
		listen_next(c);
		return;
	}
	if (c->tx) {
		tx_pump(c->tx);
		return;
	}
	op = queue_pop(&db->queue);
	if (!op)
		return;
	queue_rearm(db);
	if (op->kind == OP_TX_START) {
		struct sp_db_tx *tx = op->tx;

		op_free(op);
		tx->conn = c;
		c->tx = tx;
		send_ctl(c, CTL_BEGIN, tx->begin_sql);
		return;
	}
	conn_send_op(c, op);
}

/* An error ends the attempt: ROLLBACK (unless the server already ended it), then retry
 * or report. */
static void tx_abort(struct sp_db_tx *tx, PGresult *res)
{
	struct db_conn *c = tx->conn;

	tx->err = res;
	tx->aborting = true;
	queue_clear(&tx->ops);
	if (PQtransactionStatus(c->pg) == PQTRANS_IDLE)
		tx_rolled_back(tx);
	else
		send_ctl(c, CTL_ROLLBACK, "ROLLBACK");
}

static void tx_rolled_back(struct sp_db_tx *tx)
{
	struct sp_db *db = tx->db;
	struct db_conn *c = tx->conn;

	if (tx->err && pg_retryable(tx->err) && tx->retries_left > 0) {
		tx->retries_left--;
		PQclear(tx->err);
		tx->err = NULL;
		tx->aborting = false;
		tx->finish = FIN_NONE;
		send_ctl(c, CTL_BEGIN, tx->begin_sql);
		return;
	}
	if (tx->err) {
		struct sp_db_result r = { tx->err, NULL, NULL };

		tx_finish(tx, &r);
	} else {
		struct sp_db_result r = { NULL, SP_DB_STATE_ROLLBACK,
			                  tx->idle_rollback
			                      ? "transaction left idle by its body"
			                      : "rolled back by the transaction body" };

		tx_finish(tx, &r);
	}
	if (!db->closing)
		conn_pump(c);
}

static void txctl_done(struct db_conn *c, PGresult *res)
{
	struct sp_db *db = c->db;
	struct sp_db_tx *tx = c->tx;

	switch (tx->ctl) {
	case CTL_BEGIN:
		if (!pg_ok(res)) {
			tx_abort(tx, res);
			return;
		}
		PQclear(res);
		tx->body(tx, tx->arg);
		break;
	case CTL_COMMIT:
		if (!pg_ok(res)) {
			tx_abort(tx, res);
			return;
		}
		PQclear(res);
		tx_finish(tx, NULL);
		break;
	case CTL_ROLLBACK:
		if (!pg_ok(res))
			db_log("ROLLBACK failed: %s", PQresultErrorMessage(res));
		PQclear(res);
		tx_rolled_back(tx);
		return;
	}
	if (!db->closing)
		conn_pump(c);
}

/* The session lost a prepared statement (DISCARD: 26000) or its plan went stale after a
 * schema change (0A000 "cached plan must not change result type"): forget it, and drop
 * the stale one, so that the next use prepares it again. */
static void prepared_stale(struct db_conn *c, const char *name, const PGresult *res)
{
	const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	char *id, *sql;
	size_t n;
	int ok;

	if (!st || (strcmp(st, "26000") && strcmp(st, "0A000")) || !prepared_forget(c, name) ||
	    !strcmp(st, "26000"))
		return;
	id = PQescapeIdentifier(c->pg, name, strlen(name));
	if (!id) {
		conn_lost(c, PQerrorMessage(c->pg));
		return;
	}
	n = strlen(id) + sizeof "DEALLOCATE ";
	sql = malloc(n);
	if (!sql) {
		PQfreemem(id);
		conn_lost(c, "out of memory");
		return;
	}
	snprintf(sql, n, "DEALLOCATE %s", id);
	PQfreemem(id);
	c->busy = BUSY_CLEANUP;
	ok = PQsendQueryParams(c->pg, sql, 0, NULL, NULL, NULL, NULL, 0);
	free(sql);
	conn_sent(c, ok);
}

static void op_done(struct db_conn *c, PGresult *res)
{
	struct sp_db *db = c->db;
	struct db_op *op = c->op;
	struct sp_db_result r = { res, NULL, NULL };

	c->op = NULL;
	if (op->tx) {
		struct sp_db_tx *tx = op->tx;

		if (!pg_ok(res)) {
			db->queries++;
			db->errors++;
			op_free(op);
			tx_abort(tx, res);
			return;
		}
		op_finish(db, op, &r);
	} else {
		if (op->kind == OP_PREPARED && !pg_ok(res))
			prepared_stale(c, op->name, res);
		/* A pool connection must go back idle: undo a BEGIN sent through sp_db_query. */
		if (c->state == CONN_READY && c->busy == BUSY_NONE &&
		    PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
			db_log("statement left a transaction open: rolling back");
			c->busy = BUSY_CLEANUP;
			conn_sent(
			    c, PQsendQueryParams(c->pg, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0));
		}
		op_finish(db, op, &r);
	}
	PQclear(res);
	if (!db->closing)
		conn_pump(c);
}

static void prepare_done(struct db_conn *c, PGresult *res)
{
	struct db_op *op = c->op;

	if (!pg_ok(res)) {
		op_done(c, res); /* the failed PREPARE is the statement's result */
		return;
	}
	PQclear(res);
	if (prepared_add(c, op->name) < 0) {
		conn_lost(c, "out of memory");
		return;
	}
	c->busy = BUSY_OP;
	conn_sent(c, PQsendQueryPrepared(c->pg, op->name, op->nparams,
	                                 (const char *const *)op->params, NULL, NULL, 0));
}

static void listen_done(struct db_conn *c, PGresult *res)
{
	const char *name = c->chan->name;

	if (!pg_ok(res))
		db_log("LISTEN %s failed: %.*s", name, msg_len(PQresultErrorMessage(res)),
		       PQresultErrorMessage(res));
	for (struct db_chan *ch = c->db->chans; ch; ch = ch->next)
		if (!strcmp(ch->name, name))
			ch->subscribed = true;
	c->chan = NULL;
	PQclear(res);
	conn_pump(c);
}

static void setup_done(struct db_conn *c, PGresult *res)
{
	if (!pg_ok(res)) {
		conn_attempt_failed(c, PQresultErrorMessage(res));
		PQclear(res);
		return;
	}
	PQclear(res);
	conn_ready(c);
}

/* The statement in flight has all its results. */
static void conn_complete(struct db_conn *c)
{
	PGresult *res = c->res;
	enum conn_busy busy = c->busy;

	if (PQstatus(c->pg) == CONNECTION_BAD || !res) {
		conn_lost(c, res ? PQerrorMessage(c->pg) : "no result from server");
		return;
	}
	c->res = NULL;
	c->busy = BUSY_NONE;
	switch (busy) {
	case BUSY_SETUP:
		setup_done(c, res);
		break;
	case BUSY_PREPARE:
		prepare_done(c, res);
		break;
	case BUSY_OP:
		op_done(c, res);
		break;
	case BUSY_TXCTL:
		txctl_done(c, res);
		break;
	case BUSY_LISTEN:
		listen_done(c, res);
		break;
	case BUSY_CLEANUP:
		PQclear(res);
		conn_pump(c);
		break;
	case BUSY_NONE:
		PQclear(res);
		break;
	}
}

static void conn_notifies(struct db_conn *c)
{
	struct sp_db *db = c->db;
	PGnotify *n;

	while ((n = PQnotifies(c->pg))) {
		/* Append-only list: a callback may add channels while we walk it. */
		for (struct db_chan *ch = db->chans; c->listener && ch && !db->closing;
		     ch = ch->next)
			if (!strcmp(ch->name, n->relname))
				ch->cb(n->relname, n->extra, ch->arg);
		PQfreemem(n);
	}
}

static void conn_io(struct db_conn *c, short what)
{
	struct sp_db *db = c->db;
	bool complete = false;

	if ((what & EV_READ) && !PQconsumeInput(c->pg)) {
		conn_lost(c, PQerrorMessage(c->pg));
		return;
	}
	if (c->flushing && conn_flush(c, false) < 0) {
		conn_lost(c, PQerrorMessage(c->pg));
		return;
	}
	while (c->busy != BUSY_NONE && !PQisBusy(c->pg)) {
		PGresult *r = PQgetResult(c->pg);
		ExecStatusType st;

		if (!r) {
			complete = true;
			break;
		}
		st = PQresultStatus(r);
		if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
			/* No COPY support: the session cannot be brought back to idle. */
			PQclear(r);
			conn_lost(c, "COPY is not supported");
			return;
		}
		/* Keep the first error, else the last result. */
		if (!c->res) {
			c->res = r;
		} else if (PQresultStatus(c->res) == PGRES_FATAL_ERROR) {
			PQclear(r);
		} else {
			PQclear(c->res);
			c->res = r;
		}
	}
	conn_notifies(c);
	if (db->closing)
		return;
	if (complete)
		conn_complete(c);
	else if (PQstatus(c->pg) == CONNECTION_BAD)
		conn_lost(c, PQerrorMessage(c->pg));
}

static void notice_cb(void *arg, const char *msg)
{
	(void)arg;
	db_log("server: %.*s", msg_len(msg), msg);
}

/* Session settings, sent before a connection is used. Timestamps are returned as
 * text: UTC and ISO make that text the same on every instance. A NULL value resets
 * the setting to its default. */
static const char setup_sql[] =
    "SELECT set_config('statement_timeout', $1, false), set_config('lock_timeout', $2, false),"
    " set_config('TimeZone', 'UTC', false), set_config('DateStyle', 'ISO', false)";

static void conn_connected(struct db_conn *c)
{
	struct sp_db *db = c->db;
	char st[24], lt[24];
	const char *params[2] = { NULL, NULL };

	if (PQsetnonblocking(c->pg, 1) != 0) {
		conn_lost(c, PQerrorMessage(c->pg));
		return;
	}
	if (db->statement_timeout_ms > 0) {
		snprintf(st, sizeof st, "%d", db->statement_timeout_ms);
		params[0] = st;
	}
	if (db->lock_timeout_ms > 0) {
		snprintf(lt, sizeof lt, "%d", db->lock_timeout_ms);
		params[1] = lt;
	}
	c->state = CONN_SETUP;
	c->busy = BUSY_SETUP;
	if (!PQsendQueryParams(c->pg, setup_sql, 2, NULL, params, NULL, NULL, 0) ||
	    conn_flush(c, true) < 0)
		conn_lost(c, PQerrorMessage(c->pg));
}

static void conn_poll(struct db_conn *c)
{
	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_READING:
		if (conn_watch(c, EV_READ, true) < 0)
			conn_lost(c, "cannot watch socket");
		break;
	case PGRES_POLLING_WRITING:
		if (conn_watch(c, EV_WRITE, true) < 0)
			conn_lost(c, "cannot watch socket");
		break;
	case PGRES_POLLING_OK:
		conn_connected(c);
		break;
	default:
		conn_lost(c, PQerrorMessage(c->pg));
		break;
	}
}

static void conn_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;
	struct sp_db *db = c->db;

	(void)fd;
	db->depth++;
	if (!db->closing && c->pg) {
		if (c->state == CONN_CONNECTING)
			conn_poll(c);
		else
			conn_io(c, what);
	}
	db_leave(db);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;
	struct sp_db *db = c->db;

	(void)fd;
	(void)what;
	db->depth++;
	if (!db->closing) {
		if (c->state == CONN_WAIT)
			conn_start(c);
		else if (c->state != CONN_READY)
			conn_lost(c, "timeout while connecting");
	}
	db_leave(db);
}

/* Never concatenated: the URL (or conninfo) is expanded from "dbname"; later keywords
 * override what it says. */
static void conn_start(struct db_conn *c)
{
	struct sp_db *db = c->db;
	const char *keys[4], *vals[4];

	keys[0] = "dbname";
	vals[0] = db->url;
	keys[1] = db->app_name ? "application_name" : "fallback_application_name";
	vals[1] = db->app_name ? db->app_name : "spearhead";
	keys[2] = "client_encoding";
	vals[2] = "UTF8";
	keys[3] = NULL;
	vals[3] = NULL;
	c->pg = PQconnectStartParams(keys, vals, 1);
	c->state = CONN_CONNECTING;
	if (!c->pg) {
		conn_attempt_failed(c, "out of memory");
		return;
	}
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		conn_lost(c, PQerrorMessage(c->pg));
		return;
	}
	PQsetNoticeProcessor(c->pg, notice_cb, c);
	conn_schedule(c, DB_CONNECT_TIMEOUT_MS);
	/* As the libpq docs say: start as if PQconnectPoll had returned WRITING. */
	if (conn_watch(c, EV_WRITE, true) < 0)
		conn_lost(c, "cannot watch socket");
}

static int conn_init(struct sp_db *db, struct db_conn *c, bool listener)
{
	c->db = db;
	c->listener = listener;
	c->state = CONN_WAIT;
	c->ev_fd = -1;
	c->backoff_ms = DB_BACKOFF_MIN_MS;
	c->timer = evtimer_new(db->base, conn_timer_cb, c);
	return c->timer ? 0 : -1;
}

/* Closes the session and fails what it carried (only from db_destroy). */
static void conn_shutdown(struct db_conn *c)
{
	struct sp_db *db = c->db;
	struct db_op *op = c->op;
	struct sp_db_tx *tx = c->tx;

	c->op = NULL;
	c->tx = NULL;
	conn_close(c);
	if (c->timer) {
		event_free(c->timer);
		c->timer = NULL;
	}
	if (tx)
		tx->conn = NULL;
	if (op)
		op_fail(db, op, SP_DB_STATE_UNAVAILABLE, "database closed");
	if (tx) {
		struct sp_db_result r = { NULL, SP_DB_STATE_UNAVAILABLE, "database closed" };

		tx_finish(tx, &r);
	}
}

/* ---- pool ---- */

static bool db_any_ready(const struct sp_db *db)
{
	for (int i = 0; i < db->pool_size; i++)
		if (db->conns[i].state == CONN_READY)
			return true;
	return false;
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sp_db *db = arg;

	(void)fd;
	(void)what;
	db->depth++;
	/* Fail fast while the database is down rather than after queue_timeout_ms. */
	if (!db->closing && db->connect_failed && !db_any_ready(db))
		fail_queue(db, "database unavailable");
	for (int i = 0; i < db->pool_size && !db->closing; i++)
		conn_pump(&db->conns[i]);
	if (db->listener && !db->closing)
		conn_pump(db->listener);
	db_leave(db);
}

static void queue_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sp_db *db = arg;
	int64_t now = now_ms();

	(void)fd;
	(void)what;
	db->depth++;
	while (!db->closing && db->queue.head && db->queue.head->deadline_ms <= now)
		op_fail(db, queue_pop(&db->queue), SP_DB_STATE_UNAVAILABLE, "database unavailable");
	if (!db->closing)
		queue_rearm(db);
	db_leave(db);
}

static void db_destroy(struct sp_db *db)
{
	struct db_op *op;

	db->closing = true;
	db->free_pending = false;
	db->depth++; /* callbacks below must not start another destroy */
	for (int i = 0; db->conns && i < db->pool_size; i++)
		conn_shutdown(&db->conns[i]);
	if (db->listener)
		conn_shutdown(db->listener);
	while ((op = queue_pop(&db->queue)))
		op_fail(db, op, SP_DB_STATE_UNAVAILABLE, "database closed");
	while (db->chans) {
		struct db_chan *ch = db->chans;

		db->chans = ch->next;
		free(ch->name);
		free(ch);
	}
	while (db->notes) {
		struct db_note *n = db->notes;

		db->notes = n->next;
		free(n->channel);
		free(n->payload);
		free(n);
	}
	if (db->notes_flush)
		event_free(db->notes_flush);
	if (db->kick)
		event_free(db->kick);
	if (db->queue_timer)
		event_free(db->queue_timer);
	free(db->listener);
	free(db->conns);
	free(db->url);
	free(db->app_name);
	free(db);
}

struct sp_db *sp_db_new(struct event_base *base, const struct sp_db_options *opts)
{
	struct sp_db *db;
	PQconninfoOption *ci;
	char *err = NULL;

	if (!base || !opts || !opts->url || opts->pool_size < 0 || opts->queue_timeout_ms < 0 ||
	    opts->statement_timeout_ms < 0 || opts->lock_timeout_ms < 0)
		return NULL;
	ci = PQconninfoParse(opts->url, &err);
	if (!ci) {
		db_log("invalid database URL: %.*s", msg_len(err), err ? err : "out of memory");
		PQfreemem(err);
		return NULL;
	}
	PQconninfoFree(ci);

	db = calloc(1, sizeof *db);
	if (!db)
		return NULL;
	db->base = base;
	db->pool_size = opts->pool_size ? opts->pool_size : DB_DEFAULT_POOL_SIZE;
	db->queue_timeout_ms =
	    opts->queue_timeout_ms ? opts->queue_timeout_ms : DB_DEFAULT_QUEUE_TIMEOUT_MS;
	db->statement_timeout_ms = opts->statement_timeout_ms;
	db->lock_timeout_ms = opts->lock_timeout_ms;
	if (!(db->url = db_strdup(opts->url)))
		goto fail;
	if (opts->application_name && !(db->app_name = db_strdup(opts->application_name)))
		goto fail;
	db->kick = event_new(base, -1, 0, kick_cb, db);
	db->queue_timer = evtimer_new(base, queue_timer_cb, db);
	db->notes_flush = event_new(base, -1, 0, notes_flush_cb, db);
	db->conns = calloc((size_t)db->pool_size, sizeof *db->conns);
	if (!db->kick || !db->queue_timer || !db->notes_flush || !db->conns)
		goto fail;
	for (int i = 0; i < db->pool_size; i++)
		if (conn_init(db, &db->conns[i], false) < 0)
			goto fail;
	for (int i = 0; i < db->pool_size; i++)
		conn_start(&db->conns[i]);
	return db;
fail:
	db_destroy(db);
	return NULL;
}

void sp_db_free(struct sp_db *db)
{
	if (!db || db->closing)
		return;
	db->closing = true;
	if (db->depth > 0)
		db->free_pending = true; /* called from one of our callbacks */
	else
		db_destroy(db);
}

static int db_submit(struct sp_db *db, struct db_op *op)
{
	if (!op)
		return -1;
	op->deadline_ms = now_ms() + db->queue_timeout_ms;
	queue_push(&db->queue, op);
	if (db->queue.head == op)
		queue_rearm(db);
	db_kick(db); /* callbacks only ever run from the loop */
	return 0;
}

static bool params_valid(int nparams, const char *const *params)
{
	return nparams >= 0 && nparams <= DB_MAX_PARAMS && (nparams == 0 || params);
}

int sp_db_query(struct sp_db *db, const char *sql, int nparams, const char *const *params,
                sp_db_result_fn *cb, void *arg)
{
	if (!db || db->closing || !sql || !params_valid(nparams, params))
		return -1;
	return db_submit(db, op_new(OP_QUERY, NULL, sql, nparams, params, cb, arg));
}

int sp_db_query_prepared(struct sp_db *db, const char *name, const char *sql, int nparams,
                         const char *const *params, sp_db_result_fn *cb, void *arg)
{
	if (!db || db->closing || !sql || !name || !*name || strlen(name) > DB_NAME_MAX ||
	    !params_valid(nparams, params))
		return -1;
	return db_submit(db, op_new(OP_PREPARED, name, sql, nparams, params, cb, arg));
}

/* Whitelisted: the level ends up inside the BEGIN statement. */
static const char *begin_sql(const char *isolation)
{
	static const struct {
		const char *level, *sql;
	} levels[] = {
		{ "READ COMMITTED", "BEGIN ISOLATION LEVEL READ COMMITTED" },
		{ "REPEATABLE READ", "BEGIN ISOLATION LEVEL REPEATABLE READ" },
		{ "SERIALIZABLE", "BEGIN ISOLATION LEVEL SERIALIZABLE" },
		{ "READ UNCOMMITTED", "BEGIN ISOLATION LEVEL READ UNCOMMITTED" },
	};

	if (!isolation)
		return "BEGIN";
	for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
		if (!strcasecmp(isolation, levels[i].level))
			return levels[i].sql;
	return NULL;
}

int sp_db_tx(struct sp_db *db, const char *isolation, int max_retries, sp_db_tx_fn *body,
             sp_db_tx_done_fn *done, void *arg)
{
	struct sp_db_tx *tx;
	struct db_op *op;
	const char *sql = begin_sql(isolation);

	if (!db || db->closing || !body || !done || max_retries < 0 || !sql)
		return -1;
	tx = calloc(1, sizeof *tx);
	op = op_new(OP_TX_START, NULL, NULL, 0, NULL, NULL, NULL);
	if (!tx || !op) {
		free(tx);
		op_free(op);
		return -1;
	}
	tx->db = db;
	tx->begin_sql = sql;
	tx->retries_left = max_retries;
	tx->body = body;
	tx->done = done;
	tx->arg = arg;
	op->tx = tx;
	return db_submit(db, op);
}

/* Tx calls only queue work: the connection is driven when the current callback returns. */
int sp_db_tx_query(struct sp_db_tx *tx, const char *sql, int nparams, const char *const *params,
                   sp_db_result_fn *cb, void *arg)
{
	struct db_op *op;

	if (!tx || !tx->conn || tx->db->closing || tx->aborting || tx->finish != FIN_NONE || !sql ||
	    !params_valid(nparams, params))
		return -1;
	op = op_new(OP_QUERY, NULL, sql, nparams, params, cb, arg);
	if (!op)
		return -1;
	op->tx = tx;
	queue_push(&tx->ops, op);
	return 0;
}

int sp_db_tx_query_prepared(struct sp_db_tx *tx, const char *name, const char *sql, int nparams,
                            const char *const *params, sp_db_result_fn *cb, void *arg)
{
	struct db_op *op;

	if (!tx || !tx->conn || tx->db->closing || tx->aborting || tx->finish != FIN_NONE || !sql ||
	    !name || !*name || strlen(name) > DB_NAME_MAX || !params_valid(nparams, params))
		return -1;
	op = op_new(OP_PREPARED, name, sql, nparams, params, cb, arg);
	if (!op)
		return -1;
	op->tx = tx;
	queue_push(&tx->ops, op);
	return 0;
}

void sp_db_tx_commit(struct sp_db_tx *tx)
{
	if (tx && !tx->aborting && tx->finish == FIN_NONE)
		tx->finish = FIN_COMMIT;
}

/* Queries already issued still run first, like with commit. */
void sp_db_tx_rollback(struct sp_db_tx *tx)
{
	if (tx && !tx->aborting && tx->finish == FIN_NONE)
		tx->finish = FIN_ROLLBACK;
}

int sp_db_listen(struct sp_db *db, const char *channel, sp_db_notify_fn *cb, void *arg)
{
	struct db_chan *ch;

	if (!db || db->closing || !channel || !*channel || strlen(channel) > DB_NAME_MAX || !cb)
		return -1;
	ch = calloc(1, sizeof *ch);
	if (!ch || !(ch->name = db_strdup(channel))) {
		free(ch);
		return -1;
	}
	ch->cb = cb;
	ch->arg = arg;
	if (!db->listener) {
		struct db_conn *c = calloc(1, sizeof *c);

		if (!c || conn_init(db, c, true) < 0) {
			free(c);
			free(ch->name);
			free(ch);
			return -1;
		}
		db->listener = c;
		conn_start(c);
	}
	if (db->chans_tail)
		db->chans_tail->next = ch;
	else
		db->chans = ch;
	db->chans_tail = ch;
	db_kick(db);
	return 0;
}

static void notify_done(const struct sp_db_result *res, void *arg)
{
	(void)arg;
	if (!sp_db_result_ok(res))
		db_log("NOTIFY failed: %s: %s", sp_db_result_sqlstate(res),
		       sp_db_result_error(res));
}

/* NOTIFYs asked for during one pass of the event loop go out together, as one
 * statement and one transaction (PostgreSQL delivers a transaction's notifications in
 * the order they were made, and wakes each listener once for all of them): under load a
 * pass emits many, and a transaction each cost more than the work that caused them. */
#define NOTES_PER_STATEMENT 100

static void notes_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sp_db *db = arg;

	(void)fd;
	(void)what;
	while (db->notes && !db->closing) {
		const char *params[2 * NOTES_PER_STATEMENT];
		char sql[32 + NOTES_PER_STATEMENT * 32];
		struct db_note *batch = db->notes, *n = batch;
		int count = 0;
		size_t len = (size_t)snprintf(sql, sizeof sql, "SELECT ");

		for (; n && count < NOTES_PER_STATEMENT; n = n->next, count++) {
			params[2 * count] = n->channel;
			params[2 * count + 1] = n->payload;
			len +=
			    (size_t)snprintf(sql + len, sizeof sql - len, "%spg_notify($%d, $%d)",
			                     count ? ", " : "", 2 * count + 1, 2 * count + 2);
		}
		db->notes = n;
		if (!n)
			db->notes_tail = NULL;
		if (sp_db_query(db, sql, 2 * count, params, notify_done, NULL) < 0)
			db_log("NOTIFY not sent: the pool refused the query");
		for (int i = 0; i < count; i++) { /* the query keeps copies */
			struct db_note *next = batch->next;

			free(batch->channel);
			free(batch->payload);
			free(batch);
			batch = next;
		}
	}
}

int sp_db_notify(struct sp_db *db, const char *channel, const char *payload)
{
	struct db_note *n;

	if (!db || db->closing || !channel)
		return -1;
	n = calloc(1, sizeof *n);
	if (!n || !(n->channel = db_strdup(channel)) ||
	    !(n->payload = db_strdup(payload ? payload : ""))) {
		if (n)
			free(n->channel);
		free(n);
		return -1;
	}
	if (db->notes_tail)
		db->notes_tail->next = n;
	else
		db->notes = n;
	db->notes_tail = n;
	event_active(db->notes_flush, EV_TIMEOUT, 0);
	return 0;
}

bool sp_db_is_up(const struct sp_db *db)
{
	return db && db_any_ready(db);
}

void sp_db_get_stats(const struct sp_db *db, struct sp_db_stats *out)
{
	memset(out, 0, sizeof *out);
	if (!db)
		return;
	out->size = db->pool_size;
	for (int i = 0; i < db->pool_size; i++) {
		const struct db_conn *c = &db->conns[i];

		if (c->state != CONN_READY)
			continue;
		out->connected++;
		if (c->busy != BUSY_NONE || c->tx)
			out->busy++;
	}
	out->queued = db->queue.len;
	out->queries = db->queries;
	out->errors = db->errors;
}
