/* jobs.c — the durable job runner and the notification outbox.
 *
 * Jobs are claimed with one UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) per
 * batch (ready pending jobs and running jobs whose lease expired, each half through its
 * own index, in (run_at, id) order), which marks them running under a lease in this
 * worker's name; ending a job checks that name, so a job re-claimed after its lease
 * expired cannot be ended twice. NOTIFY sp_jobs wakes
 * workers at once; a one-second poll still finds everything NOTIFY missed while a
 * listener was disconnected, and jobs scheduled for later.
 *
 * Database round trips set the pace, so they are shared: jobs ended during one pass of
 * the event loop are written by one UPDATE … FROM unnest(…) at the end of that pass
 * (each row still gets its own outcome, and still only if this worker holds it), and
 * the handlers that freed slots then claim all their free slots with one statement. */
#include "jobs.h"
#include "loader.h"
#include "bus.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "router.h"
#include "serve.h"
#include "server.h"
#include "util.h"
#include "validate.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#define POLL_MS          1000
#define FINISH_BATCH_MAX 1000 /* jobs ended by one statement */
#define JANITOR_EVERY    600  /* polls between clean-ups of old finished jobs */

struct claim_ctx;

struct handler {
	struct sp_plugin *owner;
	char *queue;
	int concurrency, running;
	bool claiming;
	bool freed;                /* a job ended since the last flush: claim then */
	struct claim_ctx *pending; /* the claim in flight, told when the handler goes */
	sp_job_fn *fn;
	void *arg;
	struct handler *next;
};

struct channel {
	struct sp_plugin *owner;
	char *name;
	enum sp_channel_audience audience;
	struct channel *next;
};

struct sp_job {
	struct sp_jobs *jobs;
	struct handler *handler;
	char id[24];
	int attempt, max_attempts;
	json_t *payload; /* owned */
	struct sp_job *next, *prev;
	/* once ended, until written: */
	const char *state; /* done, dead or retry */
	unsigned delay_s;
	char *error; /* valid UTF-8, or NULL */
};

struct sp_jobs {
	struct sp_core *core;
	struct handler *handlers;
	struct channel *channels;
	struct sp_job *running; /* claimed and not yet finished */
	struct sp_job *ending;  /* finished, to be written at the end of this loop pass */
	struct event *poll, *flush;
	char worker_id[40];
	bool started;
	unsigned polls;
};

/* One runner per process; transactions do not know their core, and notify_tx and
 * job_enqueue_tx need the channel list. */
static struct sp_jobs *runner;

static void claim(struct sp_jobs *jobs, struct handler *h);
static void flush_cb(evutil_socket_t fd, short what, void *arg);

/* ---- running ---- */

static void job_unlink(struct sp_job *job)
{
	if (job->prev)
		job->prev->next = job->next;
	else
		job->jobs->running = job->next;
	if (job->next)
		job->next->prev = job->prev;
	job->next = job->prev = NULL;
}

static void job_free(struct sp_job *job)
{
	json_decref(job->payload);
	free(job->error);
	free(job);
}

static void ending_free(struct sp_job *list)
{
	while (list) {
		struct sp_job *next = list->next;
		job_free(list);
		list = next;
	}
}

struct claim_ctx {
	struct sp_jobs *jobs;
	struct handler *handler;
	int wanted;
};

static void claimed(const struct sp_db_result *res, void *arg)
{
	struct claim_ctx *c = arg;
	struct sp_jobs *jobs = c->jobs;
	struct handler *h = c->handler;
	int wanted = c->wanted;
	free(c);
	if (!h)
		return; /* the handler went away meanwhile */
	h->claiming = false;
	h->pending = NULL;
	if (!sp_db_result_ok(res)) {
		if (strcmp(sp_db_result_sqlstate(res), SP_DB_STATE_UNAVAILABLE) != 0)
			sp_warn("claiming jobs of %s failed: %s", h->queue,
			        sp_db_result_error(res));
		return;
	}
	int n = sp_db_result_ntuples(res);
	for (int i = 0; i < n; i++) {
		struct sp_job *job = sp_calloc(1, sizeof(*job));
		job->jobs = jobs;
		job->handler = h;
		snprintf(job->id, sizeof(job->id), "%s", sp_db_result_value(res, i, 0));
		job->attempt = atoi(sp_db_result_value(res, i, 1));
		job->max_attempts = atoi(sp_db_result_value(res, i, 2));
		job->payload = json_loads(sp_db_result_value(res, i, 3), 0, NULL);
		if (!job->payload)
			job->payload = json_object();
		job->next = jobs->running;
		if (job->next)
			job->next->prev = job;
		jobs->running = job;
		h->running++;
		sp_log_set_context(NULL, h->owner ? sp_plugin_name(h->owner) : NULL);
		h->fn(job, job->payload, h->arg);
		sp_log_set_context(NULL, NULL);
	}
	/* A full batch suggests more is waiting. */
	if (n == wanted && jobs->started)
		claim(jobs, h);
}

static void claim(struct sp_jobs *jobs, struct handler *h)
{
	int room = h->concurrency - h->running;
	if (!jobs->started || h->claiming || room <= 0)
		return;
	struct claim_ctx *c = sp_calloc(1, sizeof(*c));
	c->jobs = jobs;
	c->handler = h;
	c->wanted = room;
	char limit[16], lease[16];
	snprintf(limit, sizeof(limit), "%d", room);
	snprintf(lease, sizeof(lease), "%ld", jobs->core->cfg->jobs_lease_s);
	const char *params[] = { h->queue, limit, jobs->worker_id, lease };
	h->claiming = true;
	h->pending = c;
	if (sp_db_query_prepared(
	        jobs->core->db, "sp_jobs_claim",
	        "UPDATE sp_jobs j SET state = 'running', attempts = attempts + 1, "
	        "locked_by = $3, locked_until = now() + make_interval(secs => "
	        "$4::int), updated_at = now() WHERE id IN (SELECT id FROM (SELECT id, "
	        "run_at FROM (SELECT id, run_at FROM sp_jobs WHERE queue = $1 AND state = "
	        "'pending' AND run_at <= now() ORDER BY run_at, id LIMIT $2::int FOR UPDATE "
	        "SKIP LOCKED) p UNION ALL SELECT id, run_at FROM (SELECT id, run_at FROM "
	        "sp_jobs WHERE queue = $1 AND state = 'running' AND locked_until < now() AND "
	        "attempts < max_attempts ORDER BY run_at, id LIMIT $2::int FOR UPDATE SKIP "
	        "LOCKED) e) c ORDER BY run_at, id LIMIT $2::int) "
	        "RETURNING id, attempts, max_attempts, payload::text",
	        4, params, claimed, c) < 0) {
		h->claiming = false;
		h->pending = NULL;
		free(c);
	}
}

static void claim_all(struct sp_jobs *jobs)
{
	for (struct handler *h = jobs->handlers; h; h = h->next)
		claim(jobs, h);
}

static void janitor_done(const struct sp_db_result *res, void *arg)
{
	if (!sp_db_result_ok(res) &&
	    strcmp(sp_db_result_sqlstate(res), SP_DB_STATE_UNAVAILABLE) != 0)
		sp_warn("cleaning finished jobs failed: %s", sp_db_result_error(res));
}

static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sp_jobs *jobs = arg;
	claim_all(jobs);
	if (!sp_db_is_up(jobs->core->db))
		return;
	/* A worker died during the last allowed attempt: the job is dead, not retried. */
	if (++jobs->polls % 10 == 0)
		sp_db_query(jobs->core->db,
		            "UPDATE sp_jobs SET state = 'dead', locked_by = NULL, locked_until = "
		            "NULL, last_error = 'the worker stopped during the last attempt', "
		            "updated_at = now() WHERE state = 'running' AND locked_until < now() "
		            "AND attempts >= max_attempts",
		            0, NULL, janitor_done, NULL);
	if (jobs->polls % JANITOR_EVERY == 0)
		sp_db_query(jobs->core->db,
		            "DELETE FROM sp_jobs WHERE state = 'done' AND updated_at < now() - "
		            "interval '7 days'",
		            0, NULL, janitor_done, NULL);
}

static void on_notify(const char *channel, const char *payload, void *arg)
{
	struct sp_jobs *jobs = arg;
	for (struct handler *h = jobs->handlers; h; h = h->next)
		if (!payload || !*payload || strcmp(h->queue, payload) == 0)
			claim(jobs, h);
}

struct sp_jobs *sp_jobs_new(struct sp_core *core)
{
	struct sp_jobs *jobs = sp_calloc(1, sizeof(*jobs));
	jobs->core = core;
	char rnd[17];
	sp_random_hex(rnd, 8);
	snprintf(jobs->worker_id, sizeof(jobs->worker_id), "%d-%s", (int)getpid(), rnd);
	jobs->poll = event_new(core->base, -1, EV_PERSIST, poll_cb, jobs);
	jobs->flush = event_new(core->base, -1, 0, flush_cb, jobs);
	runner = jobs;
	return jobs;
}

void sp_jobs_start(struct sp_jobs *jobs)
{
	jobs->started = true;
	sp_db_listen(jobs->core->db, SP_JOBS_CHANNEL, on_notify, jobs);
	struct timeval tv = { POLL_MS / 1000, (POLL_MS % 1000) * 1000 };
	event_add(jobs->poll, &tv);
	event_active(jobs->poll, EV_TIMEOUT, 0);
}

void sp_jobs_free(struct sp_jobs *jobs)
{
	if (!jobs)
		return;
	/* Jobs still running are left to their lease: another worker takes them over. */
	while (jobs->running) {
		struct sp_job *job = jobs->running;
		job_unlink(job);
		job_free(job);
	}
	/* Ended but not written (the loop has stopped): their leases expire too. */
	ending_free(jobs->ending);
	jobs->ending = NULL;
	while (jobs->handlers) {
		struct handler *n = jobs->handlers->next;
		if (jobs->handlers->pending)
			jobs->handlers->pending->handler = NULL;
		free(jobs->handlers->queue);
		free(jobs->handlers);
		jobs->handlers = n;
	}
	while (jobs->channels) {
		struct channel *n = jobs->channels->next;
		free(jobs->channels->name);
		free(jobs->channels);
		jobs->channels = n;
	}
	event_free(jobs->poll);
	event_free(jobs->flush);
	if (runner == jobs)
		runner = NULL;
	free(jobs);
}

static bool valid_queue(const char *q)
{
	if (!q || !*q || strlen(q) > 100)
		return false;
	for (; *q; q++)
		if (!((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '_' ||
		      *q == '.'))
			return false;
	return true;
}

int sp_jobs_handle(struct sp_jobs *jobs, struct sp_plugin *owner, const char *queue,
                   int concurrency, sp_job_fn *fn, void *arg)
{
	if (!valid_queue(queue) || !fn || concurrency < 1 || concurrency > 1000)
		return -1;
	for (struct handler *h = jobs->handlers; h; h = h->next)
		if (strcmp(h->queue, queue) == 0)
			return -1;
	struct handler *h = sp_calloc(1, sizeof(*h));
	h->owner = owner;
	h->queue = sp_strdup(queue);
	h->concurrency = concurrency;
	h->fn = fn;
	h->arg = arg;
	h->next = jobs->handlers;
	jobs->handlers = h;
	claim(jobs, h);
	return 0;
}

void sp_jobs_remove_owner(struct sp_jobs *jobs, struct sp_plugin *owner)
{
	if (!jobs)
		return;
	struct handler **p = &jobs->handlers;
	while (*p) {
		if ((*p)->owner == owner) {
			struct handler *dead = *p;
			/* Its running jobs are dropped here (their leases expire). */
			for (struct sp_job *j = jobs->running, *next; j; j = next) {
				next = j->next;
				if (j->handler == dead) {
					job_unlink(j);
					job_free(j);
				}
			}
			if (dead->pending)
				dead->pending->handler = NULL;
			*p = dead->next;
			free(dead->queue);
			free(dead);
		} else {
			p = &(*p)->next;
		}
	}
	sp_channels_remove_owner(jobs->core, owner);
}

/* ---- ending a job ---- */

static void finished(const struct sp_db_result *res, void *arg)
{
	if (!sp_db_result_ok(res) &&
	    strcmp(sp_db_result_sqlstate(res), SP_DB_STATE_UNAVAILABLE) != 0)
		sp_warn("recording %d finished job(s) failed: %s", (int)(intptr_t)arg,
		        sp_db_result_error(res));
}

/* Default backoff: 5 s doubling, capped at an hour, ±20% jitter. */
static unsigned backoff_s(int attempt)
{
	double base = 5.0;
	for (int i = 1; i < attempt && base < 3600; i++)
		base *= 2;
	double jitter = 0.8 + 0.4 * ((double)randombytes_uniform(10001) / 10000.0);
	double s = base * jitter;
	if (s > 3600)
		s = 3600;
	return s >= 1 ? (unsigned)s : 1;
}

/* Length of the valid UTF-8 sequence at s, or 0. */
static size_t utf8_seq(const unsigned char *s)
{
	if (s[0] < 0x80)
		return 1;
	size_t n = s[0] >= 0xc2 && s[0] <= 0xdf   ? 2
	           : s[0] >= 0xe0 && s[0] <= 0xef ? 3
	           : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4
	                                          : 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	/* overlong forms, surrogates, beyond U+10FFFF */
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
		return 0;
	return n;
}

/* A copy with every byte that is not valid UTF-8 replaced by '?': one job's bad error
 * text must not make the statement ending its whole batch fail. */
static char *utf8_copy(const char *text)
{
	char *out = sp_strdup(text);
	for (unsigned char *p = (unsigned char *)out; *p;) {
		size_t n = utf8_seq(p);
		if (n == 0)
			*p++ = '?';
		else
			p += n;
	}
	return out;
}

/* Writes up to FINISH_BATCH_MAX ended jobs with one statement (their outcomes as one
 * JSON array); each row gets its own outcome, and only while this worker still holds
 * it. The state test is written so that no partial index matches it: the only way in is
 * the primary key, one lookup per ended job. Written as state = 'running', the generic
 * plan of the prepared statement (statistics taken while few jobs ran) scanned this
 * queue's running jobs and parsed the whole JSON array again for each of them. */
static void write_batch(struct sp_jobs *jobs)
{
	json_t *rows = json_array();
	int n = 0;
	while (jobs->ending && n < FINISH_BATCH_MAX) {
		struct sp_job *job = jobs->ending;
		jobs->ending = job->next;
		json_array_append_new(
		    rows, json_pack("{s:s, s:s, s:I, s:s?}", "id", job->id, "state", job->state,
		                    "delay", (json_int_t)job->delay_s, "error", job->error));
		job_free(job);
		n++;
	}
	char *text = json_dumps(rows, JSON_COMPACT);
	json_decref(rows);
	const char *params[] = { text, jobs->worker_id };
	if (!text ||
	    sp_db_query_prepared(
	        jobs->core->db, "sp_jobs_finish",
	        "UPDATE sp_jobs j SET state = CASE WHEN f.state = 'retry' THEN CASE WHEN "
	        "j.attempts >= j.max_attempts THEN 'dead' ELSE 'pending' END ELSE f.state END, "
	        "run_at = CASE WHEN f.state = 'retry' THEN now() + make_interval(secs => "
	        "f.delay) ELSE j.run_at END, locked_by = NULL, locked_until = NULL, last_error "
	        "= f.error, updated_at = now() FROM jsonb_to_recordset($1::jsonb) AS f(id "
	        "bigint, state text, delay int, error text) WHERE j.id = f.id AND "
	        "j.locked_by = $2 AND j.state NOT IN ('pending', 'done', 'dead')",
	        2, params, finished, (void *)(intptr_t)n) < 0)
		sp_warn("could not record the end of %d job(s); their leases will expire", n);
	free(text);
}

/* At the end of a loop pass: the jobs ended during it, then claims for the slots. */
static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sp_jobs *jobs = arg;
	while (jobs->ending)
		write_batch(jobs);
	for (struct handler *h = jobs->handlers; h; h = h->next) {
		if (h->freed) {
			h->freed = false;
			claim(jobs, h);
		}
	}
}

void sp_job_finish(struct sp_job *job, enum sp_job_outcome outcome, unsigned retry_s,
                   const char *error)
{
	if (!job)
		return;
	struct sp_jobs *jobs = job->jobs;
	struct handler *h = job->handler;
	job->delay_s = outcome == SP_JOB_RETRY ? (retry_s ? retry_s : backoff_s(job->attempt)) : 0;
	/* The batch passes delays as int: one out of range must not fail the others. */
	if (job->delay_s > INT_MAX)
		job->delay_s = INT_MAX;
	job->state = outcome == SP_JOB_DONE ? "done" : outcome == SP_JOB_FAIL ? "dead" : "retry";
	job->error = error ? utf8_copy(error) : NULL;
	json_decref(job->payload);
	job->payload = NULL;
	job->handler = NULL;
	job_unlink(job);
	job->next = jobs->ending;
	jobs->ending = job;
	h->running--;
	h->freed = true;
	/* Runs after the callbacks already due in this pass, which may end more jobs. */
	event_active(jobs->flush, EV_TIMEOUT, 0);
}

int sp_job_attempt(const struct sp_job *job)
{
	return job ? job->attempt : 0;
}

const char *sp_job_id(const struct sp_job *job)
{
	return job ? job->id : NULL;
}

/* ---- enqueueing ---- */

int sp_jobs_enqueue(struct sp_core *core, struct sp_db_tx *tx, const char *queue,
                    const json_t *payload, unsigned delay_s, const char *dedupe_key,
                    sp_db_result_fn *cb, void *arg)
{
	if (!valid_queue(queue))
		return -1;
	char *text = payload ? json_dumps(payload, JSON_COMPACT) : sp_strdup("{}");
	if (!text)
		return -1;
	char delay[16];
	snprintf(delay, sizeof(delay), "%u", delay_s);
	const char *params[] = { queue, text, delay, dedupe_key };
	/* The NOTIFY is delivered on commit, so workers never look before the row exists. */
	static const char sql[] =
	    "WITH j AS (INSERT INTO sp_jobs (queue, payload, run_at, dedupe_key) VALUES ($1, "
	    "$2::jsonb, now() + make_interval(secs => $3::int), $4) ON CONFLICT DO NOTHING "
	    "RETURNING id) SELECT (SELECT id FROM j) AS id, pg_notify('" SP_JOBS_CHANNEL "', $1)";
	int rc = tx ? sp_db_tx_query(tx, sql, 4, params, cb, arg)
	            : sp_db_query(core->db, sql, 4, params, cb, arg);
	free(text);
	return rc;
}

/* ---- channels and the outbox ---- */

int sp_channels_register(struct sp_core *core, struct sp_plugin *owner, const char *name,
                         enum sp_channel_audience audience)
{
	struct sp_jobs *jobs = core->jobs;
	if (!jobs || !sp_is_ident(name) || strlen(name) > 40)
		return -1;
	for (struct channel *c = jobs->channels; c; c = c->next)
		if (strcmp(c->name, name) == 0)
			return -1;
	struct channel *c = sp_calloc(1, sizeof(*c));
	c->owner = owner;
	c->name = sp_strdup(name);
	c->audience = audience;
	c->next = jobs->channels;
	jobs->channels = c;
	return 0;
}

void sp_channels_list(struct sp_core *core, json_t *names)
{
	for (struct channel *c = core->jobs ? core->jobs->channels : NULL; c; c = c->next)
		if (c->audience == SP_CHANNEL_USER)
			json_array_append_new(names, json_string(c->name));
}

void sp_channels_remove_owner(struct sp_core *core, struct sp_plugin *owner)
{
	struct sp_jobs *jobs = core->jobs;
	struct channel **p = jobs ? &jobs->channels : NULL;
	while (p && *p) {
		if ((*p)->owner == owner) {
			struct channel *dead = *p;
			*p = dead->next;
			free(dead->name);
			free(dead);
		} else {
			p = &(*p)->next;
		}
	}
}

int sp_notify(struct sp_core *core, struct sp_db_tx *tx, const struct sp_notification *n,
              sp_db_result_fn *cb, void *arg)
{
	struct sp_jobs *jobs = core ? core->jobs : runner;
	if (!jobs || !n || !n->type || !n->dedupe_key || (!n->user_id && !n->org_id) ||
	    (n->user_id && !sp_valid_uuid(n->user_id)) || (n->org_id && !sp_valid_uuid(n->org_id)))
		return -1;
	/* Channels as two parallel arrays; names are [a-z0-9_], safe in array literals. */
	char names[2048] = "{", audiences[2048] = "{";
	size_t ln = 1, la = 1;
	for (struct channel *c = jobs->channels; c; c = c->next) {
		const char *aud = c->audience == SP_CHANNEL_ORG ? "org" : "user";
		if (ln + strlen(c->name) + 3 > sizeof(names) || la + 6 > sizeof(audiences)) {
			sp_error("too many notification channels; %s and later ones are skipped",
			         c->name);
			break;
		}
		ln += (size_t)snprintf(names + ln, sizeof(names) - ln, "%s%s", ln > 1 ? "," : "",
		                       c->name);
		la += (size_t)snprintf(audiences + la, sizeof(audiences) - la, "%s%s",
		                       la > 1 ? "," : "", aud);
	}
	names[ln++] = '}';
	names[ln] = '\0';
	audiences[la++] = '}';
	audiences[la] = '\0';
	char *data = n->data ? json_dumps(n->data, JSON_COMPACT) : sp_strdup("{}");
	const char *params[] = { n->type,
		                 n->user_id,
		                 n->org_id,
		                 n->dedupe_key,
		                 n->title ? n->title : "",
		                 n->body ? n->body : "",
		                 data,
		                 names,
		                 audiences };
	/* One row per channel that fits the recipient: person channels when there is a
	 * person (those its preferences choose for this type: the exact type, else the
	 * longest "prefix.*", else "*"; all when it has none), organisation channels when
	 * there is an organisation (the person's own unless given). The trigger on
	 * sp_outbox creates the delivery jobs. */
	static const char sql[] =
	    "WITH r AS (SELECT $2::uuid AS user_id, coalesce($3::uuid, (SELECT org_id FROM "
	    "sp_users WHERE id = $2::uuid)) AS org_id), "
	    "p AS (SELECT coalesce((SELECT prefs FROM sp_notification_prefs WHERE user_id = "
	    "r.user_id), (SELECT prefs FROM sp_notification_prefs WHERE org_id = r.org_id)) -> "
	    "'channels' AS ch FROM r), "
	    "chosen AS (SELECT (SELECT value FROM jsonb_each(p.ch) WHERE key = $1 OR key = '*' "
	    "OR (right(key, 2) = '.*' AND starts_with($1, left(key, -1))) ORDER BY (key = $1) "
	    "DESC, length(key) DESC LIMIT 1) AS list FROM p) "
	    "INSERT INTO sp_outbox (type, channel, user_id, org_id, dedupe_key, title, body, "
	    "data) SELECT $1, ch.name, CASE WHEN ch.aud = 'user' THEN r.user_id END, r.org_id, "
	    "$4, $5, $6, $7::jsonb FROM r, chosen, unnest($8::text[], $9::text[]) AS ch(name, "
	    "aud) WHERE (ch.aud = 'user' AND r.user_id IS NOT NULL AND (chosen.list IS NULL OR "
	    "chosen.list ? ch.name)) OR (ch.aud = 'org' AND r.org_id IS NOT NULL) "
	    "ON CONFLICT DO NOTHING";
	/* Prepared: planning this statement cost more than running it. */
	int rc = tx ? sp_db_tx_query_prepared(tx, "sp_notify", sql, 9, params, cb, arg)
	            : sp_db_query_prepared(jobs->core->db, "sp_notify", sql, 9, params, cb, arg);
	free(data);
	return rc;
}

/* ---- admin: dead jobs ---- */

static void reply_rows(const struct sp_db_result *res, void *arg)
{
	struct sp_request *req = arg;
	if (!sp_db_result_ok(res)) {
		sp_request_reply_db_error(req, res);
		return;
	}
	sp_request_reply_json(
	    req, 200, json_pack("{s:o, s:n}", "items", sp_db_result_rows_json(res), "next_cursor"));
}

#define JOB_COLUMNS                                                                                \
	"id::text AS id, queue, state, attempts, max_attempts, payload, last_error, " SP_SQL_TS(   \
	    "run_at") " AS run_at, " SP_SQL_TS("created_at") " AS created_at, " SP_SQL_TS("update" \
	                                                                                  "d_at") " AS updated_at"

static void jobs_list(struct sp_request *req, void *arg)
{
	struct sp_core *core = arg;
	const char *state = sp_request_query(req, "state");
	const char *queue = sp_request_query(req, "queue");
	static const char *const states[] = { "pending", "running", "done", "dead", NULL };
	bool ok = !state;
	for (const char *const *s = states; state && *s; s++)
		ok |= strcmp(*s, state) == 0;
	if (!ok || (queue && !valid_queue(queue))) {
		sp_request_reply_problem(
		    req, 400, "Bad query parameter",
		    "state is pending, running, done or dead; queue is a queue "
		    "name",
		    NULL);
		return;
	}
	const char *params[] = { state ? state : "dead", queue };
	if (sp_db_query(core->db,
	                "SELECT " JOB_COLUMNS " FROM sp_jobs WHERE state = $1 AND ($2::text IS "
	                "NULL OR queue = $2) ORDER BY updated_at DESC, id DESC LIMIT 200",
	                2, params, reply_rows, req) < 0)
		sp_request_reply_problem(req, 503, NULL, "the database is unavailable", NULL);
}

static void job_retried(const struct sp_db_result *res, void *arg)
{
	struct sp_request *req = arg;
	if (!sp_db_result_ok(res))
		sp_request_reply_db_error(req, res);
	else if (sp_db_result_ntuples(res) == 0)
		sp_request_reply_problem(req, 404, NULL, "no dead job with this id", NULL);
	else
		sp_request_reply_json(req, 200, sp_db_result_row_json(res, 0));
}

static void job_retry(struct sp_request *req, void *arg)
{
	struct sp_core *core = arg;
	const char *id = sp_request_param(req, "id");
	long v;
	if (sp_parse_long(id, 1, 9223372036854775807L, &v) < 0) {
		sp_request_reply_problem(req, 404, NULL, "no dead job with this id", NULL);
		return;
	}
	const char *params[] = { id };
	if (sp_db_query(core->db,
	                "WITH r AS (UPDATE sp_jobs SET state = 'pending', attempts = 0, run_at = "
	                "now(), last_error = NULL, updated_at = now() WHERE id = $1::bigint AND "
	                "state = 'dead' RETURNING *), n AS (SELECT pg_notify('" SP_JOBS_CHANNEL
	                "', queue) FROM r) SELECT " JOB_COLUMNS
	                " FROM r, (SELECT count(*) FROM n) x",
	                1, params, job_retried, req) < 0)
		sp_request_reply_problem(req, 503, NULL, "the database is unavailable", NULL);
}

int sp_jobs_register_routes(struct sp_core *core)
{
	const struct sp_route routes[] = {
		{ "GET", "/v1/admin/jobs", SP_ACCESS_ADMIN, jobs_list,
		  "Jobs by state (default dead) and queue, newest first", NULL, NULL },
		{ "POST", "/v1/admin/jobs/{id}/retry", SP_ACCESS_ADMIN, job_retry,
		  "Run a dead job again from its first attempt", NULL, NULL },
	};
	char err[256];
	for (size_t i = 0; i < SP_ARRAY_LEN(routes); i++) {
		if (sp_router_add(core->router, &routes[i], NULL, core, err, sizeof(err)) < 0) {
			sp_error("jobs route: %s", err);
			return -1;
		}
	}
	return 0;
}
