/* test_db.c — TAP tests of core/db.c against a real PostgreSQL ($SP_TEST_DATABASE_URL). */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include "db.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <libpq-fe.h>

static struct event_base *base;
static const char *url;
static char app[64];   /* application_name of the pools under test */
static char table[64]; /* per-run names: other runs may share the database */
static char seq[64];
static int ntests, nfailed;

static void ok(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ok(int cond, const char *fmt, ...)
{
	va_list ap;

	ntests++;
	if (!cond)
		nfailed++;
	printf("%sok %d - ", cond ? "" : "not ", ntests);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs the loop until cond holds or ms pass; a 10 ms ticker keeps the loop waking up. */
#define WAIT_UNTIL(cond, ms)                                                                       \
	do {                                                                                       \
		int64_t wait_deadline_ = now_ms() + (ms);                                          \
		while (!(cond) && now_ms() < wait_deadline_)                                       \
			event_base_loop(base, EVLOOP_ONCE);                                        \
	} while (0)

static void run_for(int ms)
{
	int64_t end = now_ms() + ms;

	while (now_ms() < end)
		event_base_loop(base, EVLOOP_ONCE);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* ---- result capture ---- */

struct qres {
	int calls;
	int ok;
	char state[8];
	char error[256];
	json_t *rows;
	int64_t t_done;
	char cmd_tuples[32];
};

static void capture_cb(const struct sp_db_result *r, void *arg)
{
	struct qres *q = arg;

	q->calls++;
	q->ok = sp_db_result_ok(r);
	snprintf(q->state, sizeof q->state, "%s", sp_db_result_sqlstate(r));
	snprintf(q->error, sizeof q->error, "%s", sp_db_result_error(r));
	snprintf(q->cmd_tuples, sizeof q->cmd_tuples, "%s", sp_db_result_cmd_tuples(r));
	json_decref(q->rows);
	q->rows = sp_db_result_rows_json(r);
	q->t_done = now_ms();
}

static void qres_reset(struct qres *q)
{
	json_decref(q->rows);
	memset(q, 0, sizeof *q);
}

static json_t *row0(const struct qres *q, const char *key)
{
	return json_object_get(json_array_get(q->rows, 0), key);
}

static struct qres *run_query(struct sp_db *db, struct qres *q, const char *sql, int n,
                              const char *const *params)
{
	qres_reset(q);
	if (sp_db_query(db, sql, n, params, capture_cb, q) == 0)
		WAIT_UNTIL(q->calls > 0, 10000);
	return q;
}

static long long count_rows(struct sp_db *db, const char *where)
{
	struct qres q = { 0 };
	char sql[256];
	long long n = -1;

	snprintf(sql, sizeof sql, "SELECT count(*) AS n FROM %s WHERE %s", table, where);
	run_query(db, &q, sql, 0, NULL);
	if (q.ok)
		n = json_integer_value(row0(&q, "n"));
	qres_reset(&q);
	return n;
}

/* ---- a plain blocking connection for set-up and for killing our sessions ---- */

static PGconn *admin;

static int admin_exec(const char *sql)
{
	PGresult *r = PQexec(admin, sql);
	int rc =
	    PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : -1;

	if (rc)
		diag("admin: %s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
	return rc;
}

static long admin_count(const char *sql, const char *param)
{
	const char *params[1] = { param };
	PGresult *r = PQexecParams(admin, sql, param ? 1 : 0, NULL, params, NULL, NULL, 0);
	long n = -1;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	else
		diag("admin: %s", PQresultErrorMessage(r));
	PQclear(r);
	return n;
}

static long terminate_ours(void)
{
	return admin_count("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
	                   " WHERE application_name = $1 AND pid <> pg_backend_pid()",
	                   app);
}

/* ---- transactions ---- */

enum tx_mode {
	TX_COMMIT,
	TX_ROLLBACK,
	TX_DUP,
	TX_RETRY,
	TX_ALWAYS,
	TX_IDLE,
	TX_SLEEP,
	TX_PREPARED
};

struct txctx {
	enum tx_mode mode;
	int body_calls, done_calls, cb_calls;
	int done_ok;
	char state[8];
	char error[256];
};

static void tx_cb(const struct sp_db_result *r, void *arg)
{
	struct txctx *t = arg;

	t->cb_calls++;
	if (!sp_db_result_ok(r))
		t->cb_calls += 1000; /* tx callbacks must only see successes */
}

static struct sp_db_tx *rollback_tx;
static const char *tx_prep_ids[2]; /* the rows TX_PREPARED inserts */

static void tx_rollback_cb(const struct sp_db_result *r, void *arg)
{
	tx_cb(r, arg);
	sp_db_tx_rollback(rollback_tx);
}

static void insert(struct sp_db_tx *tx, struct txctx *t, const char *id, sp_db_result_fn *cb)
{
	char sql[128];
	const char *params[1] = { id };

	snprintf(sql, sizeof sql, "INSERT INTO %s (id) VALUES ($1::int)", table);
	if (sp_db_tx_query(tx, sql, 1, params, cb, t) != 0)
		diag("sp_db_tx_query refused");
}

static void tx_body(struct sp_db_tx *tx, void *arg)
{
	struct txctx *t = arg;
	char sql[256];

	t->body_calls++;
	switch (t->mode) {
	case TX_COMMIT:
		insert(tx, t, "1", tx_cb);
		sp_db_tx_commit(tx); /* queued behind the insert */
		break;
	case TX_ROLLBACK:
		rollback_tx = tx;
		insert(tx, t, "2", tx_rollback_cb);
		break;
	case TX_DUP:
		insert(tx, t, "3", tx_cb);
		insert(tx, t, "1", tx_cb); /* duplicate key */
		insert(tx, t, "5", tx_cb);
		sp_db_tx_commit(tx);
		break;
	case TX_RETRY:
		/* A sequence is not transactional: only the first attempt fails. */
		snprintf(sql, sizeof sql,
		         "DO $$ BEGIN IF nextval('%s') = 1 THEN RAISE EXCEPTION 'forced'"
		         " USING ERRCODE = '40001'; END IF; END $$",
		         seq);
		sp_db_tx_query(tx, sql, 0, NULL, tx_cb, t);
		insert(tx, t, "4", tx_cb);
		sp_db_tx_commit(tx);
		break;
	case TX_ALWAYS:
		sp_db_tx_query(
		    tx, "DO $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END $$", 0,
		    NULL, tx_cb, t);
		sp_db_tx_commit(tx);
		break;
	case TX_IDLE:
		break;
	case TX_SLEEP:
		sp_db_tx_query(tx, "SELECT pg_sleep(5)", 0, NULL, tx_cb, t);
		sp_db_tx_commit(tx);
		break;
	case TX_PREPARED: {
		/* The same prepared statement twice in one transaction: prepared once on
		 * the connection, run with each parameter. */
		const char *p1[1] = { tx_prep_ids[0] }, *p2[1] = { tx_prep_ids[1] };

		snprintf(sql, sizeof sql, "INSERT INTO %s (id) VALUES ($1::int)", table);
		if (sp_db_tx_query_prepared(tx, "sp_test_tx_prep", sql, 1, p1, tx_cb, t) != 0 ||
		    sp_db_tx_query_prepared(tx, "sp_test_tx_prep", sql, 1, p2, tx_cb, t) != 0)
			diag("sp_db_tx_query_prepared refused");
		sp_db_tx_commit(tx);
		break;
	}
	}
}

static void tx_done(const struct sp_db_result *err, void *arg)
{
	struct txctx *t = arg;

	t->done_calls++;
	t->done_ok = err == NULL;
	snprintf(t->state, sizeof t->state, "%s", sp_db_result_sqlstate(err));
	snprintf(t->error, sizeof t->error, "%s", sp_db_result_error(err));
}

static struct txctx *run_tx(struct sp_db *db, struct txctx *t, enum tx_mode mode,
                            const char *isolation, int retries)
{
	memset(t, 0, sizeof *t);
	t->mode = mode;
	if (sp_db_tx(db, isolation, retries, tx_body, tx_done, t) == 0)
		WAIT_UNTIL(t->done_calls > 0, 10000);
	run_for(20); /* a second done call would show up here */
	return t;
}

/* ---- LISTEN ---- */

struct notified {
	int calls;
	char channel[80];
	char payload[80];
};

static void notify_cb(const char *channel, const char *payload, void *arg)
{
	struct notified *n = arg;

	n->calls++;
	snprintf(n->channel, sizeof n->channel, "%s", channel);
	snprintf(n->payload, sizeof n->payload, "%s", payload);
}

/* LISTEN runs asynchronously: notify until the first one comes back. */
static int notify_roundtrip(struct sp_db *db, const char *chan, struct notified *n,
                            const char *payload, int ms)
{
	int64_t end = now_ms() + ms;

	n->calls = 0;
	while (n->calls == 0 && now_ms() < end) {
		sp_db_notify(db, chan, payload);
		WAIT_UNTIL(n->calls > 0, 200);
	}
	return n->calls > 0 && !strcmp(n->payload, payload) && !strcmp(n->channel, chan);
}

/* ---- deferred free ---- */

struct freeing {
	struct sp_db *db;
	struct qres q[3];
};

static void free_in_cb(const struct sp_db_result *r, void *arg)
{
	struct freeing *f = arg;

	capture_cb(r, &f->q[0]);
	sp_db_free(f->db);
}

static struct sp_db *new_db(const char *u, int pool, int queue_timeout)
{
	struct sp_db_options o = {
		.url = u,
		.pool_size = pool,
		.queue_timeout_ms = queue_timeout,
		.statement_timeout_ms = 30000,
		.lock_timeout_ms = 10000,
		.application_name = app,
	};

	return sp_db_new(base, &o);
}

static void test_options(void)
{
	struct sp_db_options o = { .url = NULL };

	ok(sp_db_new(base, &o) == NULL, "NULL url rejected");
	o.url = "postgresql://[bad";
	ok(sp_db_new(base, &o) == NULL, "malformed url rejected");
	o.url = url;
	o.pool_size = -1;
	ok(sp_db_new(base, &o) == NULL, "negative pool size rejected");
}

static void test_basic(struct sp_db *db)
{
	struct qres q = { 0 };
	const char *params[3] = { "40", "2", NULL };
	struct sp_db_stats st;
	int rc;

	rc = sp_db_query(db,
	                 "SELECT 1 AS i, 'x' AS s, NULL::int AS n, true AS b, false AS f,"
	                 " 1.5::float8 AS d, 2.25::numeric AS num, 9007199254740993::int8 AS big,"
	                 " '{\"k\":[1,2]}'::jsonb AS j, 'not json'::text AS t,"
	                 " '2024-01-02 03:04:05+00'::timestamptz AS ts, 'NaN'::float8 AS nan",
	                 0, NULL, capture_cb, &q);
	ok(rc == 0 && q.calls == 0, "query queued, callback not run inside sp_db_query");
	WAIT_UNTIL(q.calls > 0, 10000);
	ok(q.calls == 1 && q.ok && !strcmp(q.state, "") && json_array_size(q.rows) == 1,
	   "simple query ok, one row");
	ok(json_integer_value(row0(&q, "i")) == 1 && json_is_integer(row0(&q, "i")),
	   "int4 -> integer");
	ok(!strcmp(json_string_value(row0(&q, "s")) ? json_string_value(row0(&q, "s")) : "", "x"),
	   "text -> string");
	ok(json_is_null(row0(&q, "n")), "NULL -> null");
	ok(json_is_true(row0(&q, "b")) && json_is_false(row0(&q, "f")), "bool -> true/false");
	ok(json_is_real(row0(&q, "d")) && json_real_value(row0(&q, "d")) == 1.5, "float8 -> real");
	ok(json_is_real(row0(&q, "num")) && json_real_value(row0(&q, "num")) == 2.25,
	   "numeric -> real");
	ok(json_integer_value(row0(&q, "big")) == 9007199254740993LL, "int8 exact");
	ok(json_is_object(row0(&q, "j")) &&
	       json_integer_value(json_array_get(json_object_get(row0(&q, "j"), "k"), 1)) == 2,
	   "jsonb parsed");
	ok(json_is_string(row0(&q, "ts")) &&
	       !strcmp(json_string_value(row0(&q, "ts")), "2024-01-02 03:04:05+00"),
	   "timestamptz as ISO text in UTC");
	ok(json_is_string(row0(&q, "nan")), "NaN float -> string");

	run_query(db, &q,
	          "SELECT $1::int + $2::int AS sum, $3::text IS NULL AS isnull, $3::text AS v", 3,
	          params);
	ok(q.ok && json_integer_value(row0(&q, "sum")) == 42 && json_is_true(row0(&q, "isnull")) &&
	       json_is_null(row0(&q, "v")),
	   "params and NULL param");

	run_query(db, &q, "SELEC 1", 0, NULL);
	ok(q.calls == 1 && !q.ok && !strcmp(q.state, "42601") && q.error[0],
	   "syntax error -> 42601 (%s)", q.error);
	run_query(db, &q, "SELECT 'still' AS s", 0, NULL);
	ok(q.ok, "pool usable after an error");

	/* Accessors, checked inside the callback through the JSON and cmd_tuples. */
	run_query(db, &q, "SELECT * FROM (VALUES (1), (2), (3)) v(\"camelCase\")", 0, NULL);
	ok(q.ok && json_array_size(q.rows) == 3 && !strcmp(q.cmd_tuples, "3") &&
	       json_integer_value(json_object_get(json_array_get(q.rows, 2), "camelCase")) == 3,
	   "rows_json with mixed-case column, cmd_tuples");

	run_query(db, &q,
	          "SELECT current_setting('statement_timeout') AS st,"
	          " current_setting('lock_timeout') AS lt, current_setting('TimeZone') AS tz,"
	          " current_setting('application_name') AS app",
	          0, NULL);
	ok(q.ok && !strcmp(json_string_value(row0(&q, "st")), "30s") &&
	       !strcmp(json_string_value(row0(&q, "lt")), "10s") &&
	       !strcmp(json_string_value(row0(&q, "tz")), "UTC") &&
	       !strcmp(json_string_value(row0(&q, "app")), app),
	   "session settings applied (statement_timeout, lock_timeout, TimeZone, "
	   "application_name)");

	sp_db_get_stats(db, &st);
	ok(st.size == 4 && st.connected == 4 && st.busy == 0 && st.queued == 0 && st.queries >= 4 &&
	       st.errors >= 1,
	   "stats (size %d connected %d busy %d queued %d queries %llu errors %llu)", st.size,
	   st.connected, st.busy, st.queued, st.queries, st.errors);
	qres_reset(&q);
}

struct accessor_check {
	int calls, good;
};

static void accessor_cb(const struct sp_db_result *r, void *arg)
{
	struct accessor_check *a = arg;

	a->calls++;
	a->good = sp_db_result_ntuples(r) == 1 && sp_db_result_nfields(r) == 2 &&
	          !strcmp(sp_db_result_fname(r, 1), "Val") && sp_db_result_fnumber(r, "Val") == 1 &&
	          sp_db_result_fnumber(r, "val") == -1 &&
	          !strcmp(sp_db_result_value(r, 0, 0), "7") && sp_db_result_isnull(r, 0, 1) &&
	          sp_db_result_value(r, 0, 1) == NULL && sp_db_result_value(r, 5, 0) == NULL &&
	          sp_db_result_fname(r, 9) == NULL;
}

static void test_accessors(struct sp_db *db)
{
	struct accessor_check a = { 0 };

	sp_db_query(db, "SELECT 7 AS id, NULL::text AS \"Val\"", 0, NULL, accessor_cb, &a);
	WAIT_UNTIL(a.calls > 0, 10000);
	ok(a.calls == 1 && a.good,
	   "result accessors (fname, exact fnumber, value, isnull, bounds)");
}

static int sum_calls(const struct qres *q, int n)
{
	int sum = 0;

	for (int i = 0; i < n; i++)
		sum += q[i].calls;
	return sum;
}

static void test_prepared(struct sp_db *db)
{
	enum { N = 24 };
	struct qres q[N];
	char arg[N][12];
	const char *sql = "SELECT $1::int * 2 AS v, pg_backend_pid() AS pid,"
	                  " (SELECT prepare_time::text FROM pg_prepared_statements"
	                  "  WHERE name = 'sp_test_prep') AS pt";
	int good = 0, reused = 0, consistent = 1;

	memset(q, 0, sizeof q);
	for (int round = 0; round < 3; round++) {
		for (int i = round * 8; i < round * 8 + 8; i++) {
			const char *p[1] = { arg[i] };

			snprintf(arg[i], sizeof arg[i], "%d", i);
			sp_db_query_prepared(db, "sp_test_prep", sql, 1, p, capture_cb, &q[i]);
		}
		WAIT_UNTIL(sum_calls(q, N) == round * 8 + 8, 10000);
	}
	for (int i = 0; i < N; i++) {
		good += q[i].calls == 1 && q[i].ok &&
		        json_integer_value(row0(&q[i], "v")) == 2 * i &&
		        json_is_string(row0(&q[i], "pt"));
		for (int k = 0; k < i; k++) {
			if (!q[i].ok || !q[k].ok ||
			    json_integer_value(row0(&q[i], "pid")) !=
			        json_integer_value(row0(&q[k], "pid")))
				continue;
			reused++;
			if (!json_equal(row0(&q[i], "pt"), row0(&q[k], "pt")))
				consistent = 0;
		}
	}
	ok(good == N, "prepared statement: %d/%d runs ok", good, N);
	ok(reused > 0 && consistent, "prepared once per connection, then reused");
	for (int i = 0; i < N; i++)
		qres_reset(&q[i]);
}

/* A schema change makes a prepared SELECT * fail once per connection (0A000); the pool
 * must re-prepare rather than fail forever. */
static void test_prepared_stale(struct sp_db *db)
{
	enum { N = 8 };
	struct qres q[N];
	char sql[128], alter[128];
	int stale = 0, good = 0, round;

	snprintf(sql, sizeof sql, "SELECT * FROM %s WHERE id = 1", table);
	snprintf(alter, sizeof alter, "ALTER TABLE %s ADD COLUMN extra int DEFAULT 7", table);
	memset(q, 0, sizeof q);
	for (int i = 0; i < N; i++)
		sp_db_query_prepared(db, "sp_test_star", sql, 0, NULL, capture_cb, &q[i]);
	WAIT_UNTIL(sum_calls(q, N) == N, 10000);
	admin_exec(alter);
	for (round = 0; round < 4 && good < N; round++) {
		for (int i = 0; i < N; i++)
			qres_reset(&q[i]);
		for (int i = 0; i < N; i++)
			sp_db_query_prepared(db, "sp_test_star", sql, 0, NULL, capture_cb, &q[i]);
		WAIT_UNTIL(sum_calls(q, N) == N, 10000);
		good = 0;
		for (int i = 0; i < N; i++) {
			good += q[i].ok && json_integer_value(row0(&q[i], "extra")) == 7;
			stale += !strcmp(q[i].state, "0A000");
		}
	}
	ok(good == N, "prepared statement re-prepared after a schema change (%d stale errors)",
	   stale);
	for (int i = 0; i < N; i++)
		qres_reset(&q[i]);
}

static void test_concurrency(struct sp_db *db)
{
	enum { N = 200 };
	static struct qres q[N];
	char arg[N][12];
	struct sp_db_stats st;
	long long pids[N];
	int npids = 0, good = 0;

	memset(q, 0, sizeof q);
	for (int i = 0; i < N; i++) {
		const char *p[1] = { arg[i] };

		snprintf(arg[i], sizeof arg[i], "%d", i);
		sp_db_query(db, "SELECT $1::int AS n, pg_backend_pid() AS pid", 1, p, capture_cb,
		            &q[i]);
	}
	sp_db_get_stats(db, &st);
	ok(st.queued == N && sum_calls(q, N) == 0, "%d queries queued (%d), no callback yet", N,
	   st.queued);
	WAIT_UNTIL(sum_calls(q, N) == N, 20000);
	for (int i = 0; i < N; i++) {
		long long pid = json_integer_value(row0(&q[i], "pid"));
		int seen = 0;

		good += q[i].calls == 1 && q[i].ok && json_integer_value(row0(&q[i], "n")) == i;
		for (int k = 0; k < npids; k++)
			seen |= pids[k] == pid;
		if (!seen)
			pids[npids++] = pid;
	}
	ok(good == N, "%d/%d concurrent queries completed exactly once", good, N);
	ok(npids >= 2 && npids <= 4, "spread over %d of 4 connections", npids);
	for (int i = 0; i < N; i++)
		qres_reset(&q[i]);
}

static void test_large(struct sp_db *db)
{
	enum { SIZE = 16 * 1024 * 1024 };
	struct qres q = { 0 };
	char *big = malloc(SIZE + 1);
	const char *params[1] = { big };

	memset(big, 'a', SIZE);
	big[SIZE] = '\0';
	run_query(db, &q, "SELECT length($1) AS n", 1, params);
	free(big); /* sp_db_query copied it */
	ok(q.ok && json_integer_value(row0(&q, "n")) == SIZE,
	   "16 MB parameter sent through partial flushes");
	qres_reset(&q);
}

static void test_no_blocking(struct sp_db *db)
{
	struct qres slow = { 0 }, fast = { 0 };
	int64_t t0 = now_ms();

	sp_db_query(db, "SELECT pg_sleep(1)", 0, NULL, capture_cb, &slow);
	sp_db_query(db, "SELECT 1", 0, NULL, capture_cb, &fast);
	WAIT_UNTIL(fast.calls > 0, 5000);
	ok(fast.ok && fast.t_done - t0 < 500 && slow.calls == 0,
	   "SELECT 1 done in %lld ms while pg_sleep(1) runs", (long long)(fast.t_done - t0));
	WAIT_UNTIL(slow.calls > 0, 5000);
	ok(slow.ok && slow.t_done - t0 >= 900, "pg_sleep(1) done after %lld ms",
	   (long long)(slow.t_done - t0));
	qres_reset(&slow);
	qres_reset(&fast);
}

static void test_tx(struct sp_db *db)
{
	struct txctx t;

	run_tx(db, &t, TX_COMMIT, NULL, 0);
	ok(t.done_calls == 1 && t.done_ok && t.body_calls == 1 && t.cb_calls == 1,
	   "tx commit: done(NULL) once, query callback once");
	ok(count_rows(db, "id = 1") == 1, "tx commit visible");

	run_tx(db, &t, TX_ROLLBACK, "REPEATABLE READ", 0);
	ok(t.done_calls == 1 && !t.done_ok && !strcmp(t.state, SP_DB_STATE_ROLLBACK) &&
	       t.cb_calls == 1,
	   "tx rollback from body: done(SP000) once (%s)", t.error);
	ok(count_rows(db, "id = 2") == 0, "tx rollback not visible");

	run_tx(db, &t, TX_DUP, NULL, 3);
	ok(t.done_calls == 1 && !strcmp(t.state, "23505") && t.cb_calls == 1 && t.body_calls == 1,
	   "tx error: done(23505) once, no retry, failing query's callback not run (cb %d)",
	   t.cb_calls);
	ok(count_rows(db, "id IN (3, 5)") == 0, "tx error rolled back");

	run_tx(db, &t, TX_RETRY, "SERIALIZABLE", 2);
	ok(t.done_calls == 1 && t.done_ok && t.body_calls == 2,
	   "40001 retried: body ran %d times, then committed", t.body_calls);
	ok(count_rows(db, "id = 4") == 1, "retried tx committed once");

	run_tx(db, &t, TX_ALWAYS, NULL, 2);
	ok(t.done_calls == 1 && !strcmp(t.state, "40P01") && t.body_calls == 3,
	   "40P01 every time: body ran %d times, done(40P01)", t.body_calls);

	run_tx(db, &t, TX_IDLE, NULL, 0);
	ok(t.done_calls == 1 && !strcmp(t.state, SP_DB_STATE_ROLLBACK),
	   "body leaving the tx idle: rolled back, done(SP000)");

	tx_prep_ids[0] = "6";
	tx_prep_ids[1] = "7";
	run_tx(db, &t, TX_PREPARED, NULL, 0);
	ok(t.done_calls == 1 && t.done_ok && t.cb_calls == 2,
	   "prepared statement run twice in a tx: committed, both callbacks (%d) %s", t.cb_calls,
	   t.error);
	tx_prep_ids[0] = "8";
	tx_prep_ids[1] = "7"; /* duplicate key: the prepared statement fails in the tx */
	run_tx(db, &t, TX_PREPARED, NULL, 0);
	ok(t.done_calls == 1 && !strcmp(t.state, "23505") && t.cb_calls == 1,
	   "a failing prepared statement aborts its tx: done(23505), earlier callback only");
	tx_prep_ids[0] = "9";
	tx_prep_ids[1] = "10";
	run_tx(db, &t, TX_PREPARED, NULL, 0);
	ok(t.done_calls == 1 && t.done_ok && t.cb_calls == 2, "and is reused by the next tx");
	ok(count_rows(db, "id IN (6, 7, 9, 10)") == 4 && count_rows(db, "id = 8") == 0,
	   "the prepared inserts committed, the failed tx's did not");

	ok(sp_db_tx(db, "SERIALIZABLE; DROP TABLE x", 0, tx_body, tx_done, &t) == -1,
	   "unknown isolation level refused");
}

static void test_listen(struct sp_db *db, const char *chan, struct notified *n)
{
	ok(sp_db_listen(db, chan, notify_cb, n) == 0, "listen");
	ok(notify_roundtrip(db, chan, n, "hello", 5000), "LISTEN/NOTIFY roundtrip on \"%s\"", chan);
}

static void test_queue_timeout(void)
{
	struct sp_db *db = new_db(url, 1, 300);
	struct qres slow = { 0 }, fast = { 0 };
	int64_t t0;

	WAIT_UNTIL(sp_db_is_up(db), 5000);
	t0 = now_ms();
	sp_db_query(db, "SELECT pg_sleep(1)", 0, NULL, capture_cb, &slow);
	sp_db_query(db, "SELECT 1", 0, NULL, capture_cb, &fast);
	WAIT_UNTIL(fast.calls > 0, 5000);
	ok(fast.calls == 1 && !fast.ok && !strcmp(fast.state, SP_DB_STATE_UNAVAILABLE) &&
	       !strcmp(fast.error, "database unavailable") && fast.t_done - t0 >= 250 &&
	       fast.t_done - t0 < 900,
	   "queued query times out with SP503 after %lld ms", (long long)(fast.t_done - t0));
	WAIT_UNTIL(slow.calls > 0, 5000);
	ok(slow.ok, "the slow query still completes");
	sp_db_free(db);
	qres_reset(&slow);
	qres_reset(&fast);
}

static void test_down(void)
{
	char down[128];
	struct sp_db *db;
	struct qres q = { 0 };
	struct txctx t = { 0 };
	int64_t t0;

	snprintf(down, sizeof down, "postgresql:///postgres?host=/tmp/sp-no-such-dir-%d",
	         (int)getpid());
	db = new_db(down, 2, 10000);
	ok(db != NULL, "pool on an unreachable server created");
	run_for(50);
	t0 = now_ms();
	sp_db_query(db, "SELECT 1", 0, NULL, capture_cb, &q);
	ok(q.calls == 0, "no callback inside sp_db_query when down");
	sp_db_tx(db, NULL, 0, tx_body, tx_done, &t);
	WAIT_UNTIL(q.calls > 0 && t.done_calls > 0, 12000);
	ok(q.calls == 1 && !strcmp(q.state, SP_DB_STATE_UNAVAILABLE) && q.t_done - t0 < 1000,
	   "db down: query fails fast with SP503 (%lld ms)", (long long)(q.t_done - t0));
	ok(t.done_calls == 1 && t.body_calls == 0 && !strcmp(t.state, SP_DB_STATE_UNAVAILABLE),
	   "db down: tx done(SP503) without running the body");
	ok(!sp_db_is_up(db), "is_up false");
	sp_db_free(db);
	qres_reset(&q);
}

static void test_free(void)
{
	struct sp_db *db = new_db(url, 2, 5000);
	struct qres q[3];
	struct txctx t = { 0 };
	struct freeing *f;

	memset(q, 0, sizeof q);
	for (int i = 0; i < 3; i++)
		sp_db_query(db, "SELECT 1", 0, NULL, capture_cb, &q[i]);
	sp_db_tx(db, NULL, 0, tx_body, tx_done, &t);
	sp_db_free(db);
	ok(sum_calls(q, 3) == 3 && !strcmp(q[2].state, SP_DB_STATE_UNAVAILABLE) &&
	       t.done_calls == 1 && !strcmp(t.state, SP_DB_STATE_UNAVAILABLE),
	   "sp_db_free fails pending queries and txs with SP503, once each");
	for (int i = 0; i < 3; i++)
		qres_reset(&q[i]);

	/* sp_db_free from inside a callback, with work still in flight and queued. */
	f = calloc(1, sizeof *f);
	f->db = new_db(url, 2, 5000);
	WAIT_UNTIL(sp_db_is_up(f->db), 5000);
	sp_db_query(f->db, "SELECT 1", 0, NULL, free_in_cb, f);
	sp_db_query(f->db, "SELECT pg_sleep(0.5)", 0, NULL, capture_cb, &f->q[1]);
	sp_db_query(f->db, "SELECT 3", 0, NULL, capture_cb, &f->q[2]);
	WAIT_UNTIL(f->q[0].calls > 0, 5000);
	run_for(50);
	ok(f->q[0].calls == 1 && f->q[0].ok && f->q[1].calls == 1 && f->q[2].calls == 1 &&
	       !strcmp(f->q[1].state, SP_DB_STATE_UNAVAILABLE),
	   "sp_db_free from a callback: deferred, the rest fail once with SP503");
	for (int i = 0; i < 3; i++)
		qres_reset(&f->q[i]);
	free(f);
}

static void test_recovery(struct sp_db *db, const char *chan, struct notified *n)
{
	struct qres sleeper = { 0 }, q = { 0 };
	struct txctx t = { 0 };
	long killed, active = 0;
	int64_t end;
	int attempts = 0, bad_failures = 0, up_again;

	sp_db_query(db, "SELECT pg_sleep(5)", 0, NULL, capture_cb, &sleeper);
	t.mode = TX_SLEEP;
	sp_db_tx(db, NULL, 0, tx_body, tx_done, &t);
	/* Wait until both sleeps run on the server. */
	end = now_ms() + 5000;
	while (active < 2 && now_ms() < end) {
		run_for(20);
		active =
		    admin_count("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
		                " AND state = 'active' AND query LIKE 'SELECT pg_sleep(5)%'",
		                app);
	}
	killed = terminate_ours();
	ok(active == 2 && killed >= 5, "terminated %ld backends (2 busy, pool + listener)", killed);
	WAIT_UNTIL(sleeper.calls > 0 && t.done_calls > 0, 5000);
	ok(sleeper.calls == 1 && !strcmp(sleeper.state, SP_DB_STATE_UNAVAILABLE),
	   "in-flight query failed with SP503 (%s)", sleeper.error);
	run_for(50);
	ok(t.done_calls == 1 && t.cb_calls == 0 && !strcmp(t.state, SP_DB_STATE_UNAVAILABLE),
	   "tx broken mid-way: done(SP503) once");

	end = now_ms() + 10000;
	do {
		attempts++;
		run_query(db, &q, "SELECT 1 AS one", 0, NULL);
		if (!q.ok && strcmp(q.state, SP_DB_STATE_UNAVAILABLE))
			bad_failures++;
		if (!q.ok)
			run_for(100);
	} while (!q.ok && now_ms() < end);
	ok(q.ok, "queries succeed again after %d attempt(s)", attempts);
	ok(bad_failures == 0, "failures during recovery were all SP503");
	up_again = 0;
	end = now_ms() + 10000;
	while (now_ms() < end) {
		struct sp_db_stats st;

		sp_db_get_stats(db, &st);
		if (st.connected == st.size) {
			up_again = 1;
			break;
		}
		run_for(20);
	}
	ok(up_again, "all pool connections back");
	ok(notify_roundtrip(db, chan, n, "again", 10000), "LISTEN re-subscribed after reconnect");

	/* Idle sessions killed behind the pool's back, queries sent before it notices. */
	{
		enum { N = 8 };
		struct qres burst[N];
		int good = 0, unavailable = 0;

		memset(burst, 0, sizeof burst);
		killed = terminate_ours();
		for (int i = 0; i < N; i++)
			sp_db_query(db, "SELECT 1", 0, NULL, capture_cb, &burst[i]);
		WAIT_UNTIL(sum_calls(burst, N) == N, 10000);
		for (int i = 0; i < N; i++) {
			good += burst[i].calls == 1 && burst[i].ok;
			unavailable +=
			    burst[i].calls == 1 && !strcmp(burst[i].state, SP_DB_STATE_UNAVAILABLE);
		}
		ok(killed >= 5 && good + unavailable == N,
		   "idle sessions killed: %d ok, %d SP503, nothing else", good, unavailable);
		attempts = 0;
		end = now_ms() + 10000;
		do {
			attempts++;
			run_query(db, &q, "SELECT 1 AS one", 0, NULL);
			if (!q.ok)
				run_for(100);
		} while (!q.ok && now_ms() < end);
		ok(q.ok, "and queries succeed again (%d attempt(s))", attempts);
		ok(notify_roundtrip(db, chan, n, "third", 10000), "LISTEN still works");
		for (int i = 0; i < N; i++)
			qres_reset(&burst[i]);
	}
	qres_reset(&sleeper);
	qres_reset(&q);
}

int main(void)
{
	struct sp_db *db;
	struct event *tick;
	struct timeval tv = { 0, 10000 };
	struct notified n = { 0 };
	char chan[64], sql[512];

	setvbuf(stdout, NULL, _IOLBF, 0);
	url = getenv("SP_TEST_DATABASE_URL");
	if (!url || !*url) {
		printf("1..0 # SKIP no database\n");
		return 0;
	}
	admin = PQconnectdb(url);
	if (PQstatus(admin) != CONNECTION_OK) {
		printf("Bail out! cannot connect: %s", PQerrorMessage(admin));
		PQfinish(admin);
		return 1;
	}
	snprintf(app, sizeof app, "sp_test_db_%d", (int)getpid());
	snprintf(table, sizeof table, "sp_test_db_t_%d", (int)getpid());
	snprintf(seq, sizeof seq, "sp_test_db_seq_%d", (int)getpid());
	snprintf(sql, sizeof sql,
	         "DROP TABLE IF EXISTS %s; CREATE TABLE %s (id int PRIMARY KEY, v text);"
	         " DROP SEQUENCE IF EXISTS %s; CREATE SEQUENCE %s",
	         table, table, seq, seq);
	if (admin_exec(sql) < 0) {
		printf("Bail out! cannot create test table\n");
		PQfinish(admin);
		return 1;
	}
	snprintf(chan, sizeof chan, "sp \"chan\" %d", (int)getpid());

	base = event_base_new();
	tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
	event_add(tick, &tv);

	test_options();
	db = new_db(url, 4, 5000);
	ok(db != NULL, "sp_db_new");
	WAIT_UNTIL(sp_db_is_up(db), 5000);
	ok(sp_db_is_up(db), "is_up");
	{
		struct sp_db_stats st;
		int64_t end = now_ms() + 5000;

		do {
			run_for(10);
			sp_db_get_stats(db, &st);
		} while (st.connected < 4 && now_ms() < end);
		ok(st.connected == 4, "4 connections up");
	}
	test_basic(db);
	test_accessors(db);
	test_prepared(db);
	test_concurrency(db);
	test_large(db);
	test_no_blocking(db);
	test_tx(db);
	test_prepared_stale(db);
	test_listen(db, chan, &n);
	test_queue_timeout();
	test_down();
	test_free();
	test_recovery(db, chan, &n);
	sp_db_free(db);

	snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s; DROP SEQUENCE IF EXISTS %s", table,
	         seq);
	admin_exec(sql);
	PQfinish(admin);
	event_free(tick);
	event_base_free(base);
	libevent_global_shutdown();
	printf("1..%d\n", ntests);
	return nfailed ? 1 : 0;
}
