/* wh_deliver.c — webhook deliveries. A "deliver.webhook" job (one per outbox row, made
 * by the core's trigger) posts the event directly to every enabled, subscribed endpoint
 * of the organisation: its attempts are the first ones. A pair (event, endpoint) whose
 * first attempt fails gets a "webhook.send" job, written in the same statement as the
 * attempt's log row: pending for the retries, or dead at once when retrying cannot help
 * (dedupe key "<outbox id>:<endpoint id>"). The delivery job ends once every endpoint has
 * either been delivered or got its send job; run again (its worker died), it skips the
 * endpoints that already have one. A send job retries one endpoint: it signs the body
 * (Standard Webhooks), POSTs it through libcurl on the event loop, refuses to connect to
 * addresses the policy forbids (checked on the address curl is about to connect to, after
 * DNS), records the attempt and ends: done on 2xx, retried on the schedule (or after
 * Retry-After on 429/503), dead when out of attempts, and the endpoint disabled on 410.
 *
 * On the happy path a delivery is thus one job row claimed and ended and one log row.
 * Round trips are shared: jobs claimed together are loaded with one query (delivery jobs
 * with their endpoints, send jobs with theirs); attempts are logged a batch at a time,
 * and their jobs ended once the batch is written (the core writes jobs ended together
 * with one statement). Requests and jobs are counted apart: at most `concurrency`
 * requests are under way, and twice as many jobs are held, so that connections stay busy
 * while other deliveries are being loaded or logged (which also keeps them open: libcurl
 * keeps idle connections only while enough transfers run). */
#include "wh.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <sodium.h>

#define RESPONSE_MAX    512 /* bytes of the receiver's answer kept in the log */
#define ERROR_MAX       480 /* bytes of an attempt's error text */
#define RETRY_AFTER_MAX 86400

/* A "deliver.webhook" job: its sends to the organisation's endpoints. */
struct wh_delivery {
	struct wh *wh;
	struct sp_job *job;
	char job_id[24];
	char outbox_id[40];
	int attempt;
	int pending; /* sends not yet concluded */
	int batched; /* of those, in the log batch being written (while it is built) */
	bool retry;  /* a failed attempt could not be logged with its send job: run again */
	struct wh_delivery *next; /* in wh->dloading */
};

struct wh_send {
	struct wh *wh;
	struct sp_job *job;           /* a send job (retries), or NULL */
	struct wh_delivery *delivery; /* or the delivery job whose first attempt this is */
	struct sp_request *req;       /* the ping's request, or NULL */
	char job_id[24];              /* "" for a ping */
	int attempt, max_attempts;
	char event_id[40], endpoint_id[40];
	char event_type[WH_PATTERN_MAX + 1];
	struct wh_policy policy; /* as it was when the attempt started */

	CURL *easy;
	struct curl_slist *headers;
	char *body;
	char *url, *secret, *previous; /* kept while waiting for a connection slot */
	char errbuf[CURL_ERROR_SIZE];
	char refused[320]; /* why the connection was refused, when it was */
	char refused_ip[INET6_ADDRSTRLEN];
	char response[RESPONSE_MAX + 1];
	size_t response_len;

	long long queued_ms; /* when it began waiting for a connection (monotonic) */

	/* the outcome */
	long status; /* HTTP status, 0 without an answer */
	long duration_ms;
	/* delivered, retrying, failed, disabled, refused; or given_back: not attempted (it
	 * waited too long for a connection), not logged, its send job due at once */
	const char *outcome;
	char error[ERROR_MAX + 1];
	unsigned retry_s;
	enum sp_job_outcome job_outcome;

	struct wh_send *next; /* in wh->loading or wh->recording */
};

#define LOAD_BATCH_MAX   256 /* sends loaded by one query */
#define RECORD_BATCH_MAX 256 /* attempts logged by one statement */
#define RECORD_DELAY_MS  5   /* how long an attempt waits for others to be logged with */
/* Jobs held per request slot: while most are being claimed, loaded or logged (database
 * round trips, several milliseconds each), the others keep the connections busy. A
 * delivery waits for a connection at most timeout_s (one that would wait longer is given
 * back), so that its wait and its own request fit in its lease when timeout_s is below
 * half of it, as the setting's help asks. */
#define SLOTS_PER_REQUEST 8

static void sending_changed(struct wh *wh, int delta)
{
	wh->sending += delta;
	wh->api->metric_set(wh->m_sending, wh->sending);
}

/* A delivery or send job (counted against post_max), not a ping. */
static bool is_job(const struct wh_send *s)
{
	return s->job || s->delivery;
}

static void delivery_free(struct wh_delivery *d)
{
	free(d);
}

/* One send of d concluded (or dropped, with end false: the server is stopping and the job
 * is left to its lease); the last one ends the job. */
static void delivery_release(struct wh_delivery *d, bool end)
{
	if (--d->pending > 0)
		return;
	if (end && d->job)
		d->wh->api->job_finish(d->job, d->retry ? SP_JOB_RETRY : SP_JOB_DONE, 0,
		                       d->retry ? "an attempt was not made or not logged" : NULL);
	delivery_free(d);
}

static void send_free(struct wh_send *s)
{
	struct wh *wh = s->wh;
	if (s->delivery)
		delivery_release(s->delivery, false);
	if (s->easy && !wh->closing && wh->idle_easy && wh->nidle < wh->post_max)
		wh->idle_easy[wh->nidle++] = s->easy;
	else if (s->easy)
		curl_easy_cleanup(s->easy);
	curl_slist_free_all(s->headers);
	free(s->body);
	free(s->url);
	free(s->secret);
	free(s->previous);
	sending_changed(s->wh, -1);
	free(s);
}

/* Ends a send that never reached the network (bad data, database trouble). */
static void send_abort(struct wh_send *s, enum sp_job_outcome outcome, unsigned retry_s, int status,
                       const char *error)
{
	struct wh *wh = s->wh;
	if (s->job) {
		wh->api->job_finish(s->job, outcome, retry_s, error);
	} else if (s->delivery) {
		/* Not attempted: the whole delivery runs again (endpoints that got a send job
		 * meanwhile are skipped then). */
		if (outcome == SP_JOB_RETRY)
			s->delivery->retry = true;
		delivery_release(s->delivery, true);
		s->delivery = NULL;
	} else if (s->req) {
		wh->api->reply_problem(s->req, status, NULL, error, NULL);
	}
	send_free(s);
}

/* ---- logging attempts (batched), then ending the jobs or answering the pings ---- */

static void reply_ping(struct wh_send *s)
{
	struct wh *wh = s->wh;
	json_t *body = json_pack("{s:s, s:s, s:b, s:s, s:i}", "event_id", s->event_id, "outcome",
	                         s->outcome, "delivered", strcmp(s->outcome, "delivered") == 0,
	                         "type", s->event_type, "duration_ms", (json_int_t)s->duration_ms);
	json_object_set_new(body, "status_code", s->status ? json_integer(s->status) : json_null());
	json_object_set_new(body, "error", s->error[0] ? json_string(s->error) : json_null());
	wh->api->reply_json(s->req, 200, body);
}

/* Ends the job (or answers the ping) of an attempt that has been logged, and frees it. */
static void conclude(struct wh_send *s)
{
	if (s->job) {
		s->wh->api->job_finish(s->job, s->job_outcome, s->retry_s,
		                       s->error[0] ? s->error : NULL);
	} else if (s->delivery) {
		delivery_release(s->delivery, true);
		s->delivery = NULL;
	} else if (s->req) {
		reply_ping(s);
	}
	send_free(s);
}

static void conclude_all(struct wh_send *list)
{
	while (list) {
		struct wh_send *next = list->next;
		conclude(list);
		list = next;
	}
}

/* Keeps printable ASCII of the receiver's answer (the log column is text). */
static void clean_response(struct wh_send *s)
{
	for (size_t i = 0; i < s->response_len; i++) {
		unsigned char c = (unsigned char)s->response[i];
		if (!(c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f)))
			s->response[i] = '?';
	}
	s->response[s->response_len] = '\0';
}

/* A growing text buffer for the log batch (jansson's objects cost more than the
 * attempts' own work). oom is set when an allocation failed. */
struct wbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void wb_add(struct wbuf *w, const char *text, size_t n)
{
	if (w->oom)
		return;
	if (w->len + n + 1 > w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 4096;
		while (cap < w->len + n + 1)
			cap *= 2;
		char *p = realloc(w->p, cap);
		if (!p) {
			w->oom = true;
			return;
		}
		w->p = p;
		w->cap = cap;
	}
	memcpy(w->p + w->len, text, n);
	w->len += n;
	w->p[w->len] = '\0';
}

static void wb_puts(struct wbuf *w, const char *text)
{
	wb_add(w, text, strlen(text));
}

/* `,"key":value` with value a number, or null when absent. */
static void wb_num(struct wbuf *w, const char *key, bool present, long long v)
{
	char num[96];
	int n = present ? snprintf(num, sizeof(num), ",\"%s\":%lld", key, v)
	                : snprintf(num, sizeof(num), ",\"%s\":null", key);
	wb_add(w, num, (size_t)n);
}

/* `,"key":"value"` (JSON-escaped; bytes beyond ASCII become '?', so that one odd error
 * text cannot make the batch's JSON invalid), or null when value is NULL or empty. */
static void wb_str(struct wbuf *w, const char *key, const char *value)
{
	wb_puts(w, ",\"");
	wb_puts(w, key);
	if (!value || !*value) {
		wb_puts(w, "\":null");
		return;
	}
	wb_puts(w, "\":\"");
	const char *run = value;
	for (const char *c = value; *c; c++) {
		unsigned char u = (unsigned char)*c;
		if (u >= 0x20 && u < 0x7f && u != '"' && u != '\\')
			continue;
		wb_add(w, run, (size_t)(c - run));
		char esc[8];
		if (u == '"' || u == '\\')
			snprintf(esc, sizeof(esc), "\\%c", u);
		else if (u >= 0x7f)
			snprintf(esc, sizeof(esc), "?");
		else
			snprintf(esc, sizeof(esc), "\\u%04x", u);
		wb_puts(w, esc);
		run = c + 1;
	}
	wb_puts(w, run);
	wb_puts(w, "\"");
}

/* One attempt as a JSON object (the columns of record_sql's recordset). end_job: the
 * delivery job ends with this batch. */
static void attempt_text(struct wbuf *w, const struct wh_send *s, bool end_job)
{
	bool retrying = strcmp(s->outcome, "retrying") == 0;
	bool given_back = strcmp(s->outcome, "given_back") == 0;
	char head[32];
	snprintf(head, sizeof(head), "{\"attempt\":%d", s->attempt);
	wb_puts(w, head);
	wb_str(w, "endpoint_id", s->endpoint_id);
	wb_str(w, "event_id", s->event_id);
	wb_str(w, "event_type", s->event_type);
	wb_str(w, "outcome", s->outcome);
	wb_num(w, "duration_ms", true, s->duration_ms);
	wb_num(w, "job_id", s->job_id[0], s->job_id[0] ? atoll(s->job_id) : 0);
	wb_num(w, "status_code", s->status != 0, s->status);
	wb_str(w, "error", s->error);
	wb_str(w, "response", s->response_len ? s->response : NULL);
	wb_num(w, "next_s", retrying, s->retry_s);
	/* The first attempt, made by the delivery job: a failure gets its send job, and so
	 * does an attempt given back (which does not count). */
	if (s->delivery && strcmp(s->outcome, "delivered") != 0) {
		wb_str(w, "job_state", retrying || given_back ? "pending" : "dead");
		wb_num(w, "job_attempts", true, given_back ? s->attempt - 1 : s->attempt);
		wb_num(w, "max_attempts", true, s->max_attempts);
	}
	if (end_job)
		wb_puts(w, ",\"end_job\":true");
	wb_puts(w, "}");
}

/* Writes the attempts ($1, a JSON array), disables the endpoints that answered 410, and
 * gives each failed first attempt (job_state set) its send job: pending until its next
 * attempt, or dead; a first attempt given back gets one due at once, and no log row
 * (the workers' poll finds it). An attempt of an endpoint deleted meanwhile is skipped.
 * A delivery job whose last attempts these are (end_job) is deleted with them, while it
 * is still the run that made them (same attempts count): a row deleted costs PostgreSQL
 * a fifth of a row updated to done, whose every index gets a new entry. The core's own
 * end of the job then finds no row. */
static const char record_sql[] =
    "WITH a AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS a(endpoint_id uuid, event_id "
    "uuid, event_type text, attempt int, job_id bigint, outcome text, status_code int, error "
    "text, response text, duration_ms int, next_s int, job_state text, job_attempts int, "
    "max_attempts int, end_job boolean)), "
    "r AS (SELECT * FROM a WHERE EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.id = "
    "a.endpoint_id)), "
    "d AS (DELETE FROM sp_jobs j USING a WHERE a.end_job AND j.id = a.job_id AND j.queue = "
    "'deliver.webhook' AND j.attempts = a.attempt AND j.state NOT IN ('pending', 'done', "
    "'dead')), "
    "x AS (UPDATE webhook_endpoints w SET enabled = false, disabled_reason = 'the receiver "
    "answered 410 Gone', updated_at = now() WHERE w.enabled AND w.id IN (SELECT endpoint_id "
    "FROM r WHERE outcome = 'disabled') RETURNING w.id), "
    "j AS (INSERT INTO sp_jobs (queue, payload, dedupe_key, state, attempts, max_attempts, "
    "run_at, last_error) SELECT 'webhook.send', jsonb_build_object('outbox_id', event_id, "
    "'endpoint_id', endpoint_id), event_id::text || ':' || endpoint_id::text, job_state, "
    "job_attempts, greatest(max_attempts, attempt), now() + make_interval(secs => "
    "coalesce(next_s, 0)), error FROM r WHERE job_state IS NOT NULL ON CONFLICT DO NOTHING) "
    "INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, attempt, job_id, "
    "outcome, status_code, error, response, duration_ms, next_attempt_at) SELECT "
    "endpoint_id, event_id, event_type, attempt, job_id, outcome, status_code, error, "
    "response, duration_ms, now() + make_interval(secs => next_s) FROM r WHERE outcome <> "
    "'given_back'";

struct record_batch {
	struct wh *wh;
	struct wh_send *list;
	int n;
};

/* Failed first attempts whose send job was not written: their deliveries run again. */
static void mark_unlogged(struct wh_send *list)
{
	for (struct wh_send *s = list; s; s = s->next)
		if (s->delivery && strcmp(s->outcome, "delivered") != 0)
			s->delivery->retry = true;
}

static void recorded(const struct sp_db_result *res, void *arg)
{
	struct record_batch *b = arg;
	struct wh *wh = b->wh;
	if (!wh->api->db_ok(res)) {
		if (strcmp(wh->api->db_sqlstate(res), "SP503") != 0)
			wh->api->log(wh->plugin, SP_LOG_WARN,
			             "logging %d webhook attempt(s) failed (%s); their jobs end "
			             "anyway, deliveries without their send job run again",
			             b->n, wh->api->db_sqlstate(res));
		mark_unlogged(b->list);
	}
	conclude_all(b->list);
	free(b);
}

static void record_flush(void *arg)
{
	struct wh *wh = arg;
	wh->record_timer = NULL;
	struct record_batch *b = calloc(1, sizeof(*b));
	struct wh_send *list = wh->recording;
	int n = wh->nrecording;
	wh->recording = NULL;
	wh->nrecording = 0;
	if (!list)
		goto none;
	/* A delivery whose every send still to conclude is in this batch ends with it. */
	for (struct wh_send *s = list; s; s = s->next)
		if (s->delivery)
			s->delivery->batched++;
	struct wbuf w = { 0 };
	wb_puts(&w, "[");
	for (struct wh_send *s = list; s; s = s->next) {
		struct wh_delivery *d = s->delivery;
		bool end_job = false;
		if (d && d->batched > 0) {
			end_job = d->batched == d->pending && !d->retry;
			d->batched = 0; /* one row per delivery carries it */
		}
		if (s != list)
			wb_puts(&w, ",");
		attempt_text(&w, s, end_job);
	}
	wb_puts(&w, "]");
	char *text = w.oom ? NULL : w.p;
	if (w.oom)
		free(w.p);
	if (b && text) {
		b->wh = wh;
		b->list = list;
		b->n = n;
		const char *params[] = { text };
		int rc = wh->api->db_query_prepared(wh->plugin, "wh_record", record_sql, 1, params,
		                                    recorded, b);
		free(text);
		if (rc == 0)
			return;
	} else {
		free(text);
	}
	/* Nothing could be queued: end the jobs without their log rows. */
	mark_unlogged(list);
	conclude_all(list);
none:
	free(b);
}

/* Queues the attempt for the log; its job ends once the log row is written. */
static void record(struct wh_send *s)
{
	struct wh *wh = s->wh;
	clean_response(s);
	s->next = wh->recording;
	wh->recording = s;
	if (++wh->nrecording >= RECORD_BATCH_MAX) {
		if (wh->record_timer)
			wh->api->timer_cancel(wh->record_timer);
		record_flush(wh);
	} else if (!wh->record_timer) {
		wh->record_timer =
		    wh->api->timer_add(wh->plugin, RECORD_DELAY_MS, false, record_flush, wh);
		if (!wh->record_timer)
			record_flush(wh);
	}
}

/* ---- the transfer ---- */

static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *address)
{
	struct wh_send *s = arg;
	enum wh_addr_kind kind =
	    purpose == CURLSOCKTYPE_IPCXN ? wh_addr_classify(&address->addr) : WH_ADDR_UNSUPPORTED;
	if (!wh_addr_allowed(kind, &s->policy)) {
		char ip[INET6_ADDRSTRLEN] = "?";
		if (address->family == AF_INET) {
			struct sockaddr_in in;
			memcpy(&in, &address->addr, sizeof(in));
			inet_ntop(AF_INET, &in.sin_addr, ip, sizeof(ip));
		} else if (address->family == AF_INET6) {
			struct sockaddr_in6 in6;
			memcpy(&in6, &address->addr, sizeof(in6));
			inet_ntop(AF_INET6, &in6.sin6_addr, ip, sizeof(ip));
		}
		/* The address stays in the server's log: shown to the endpoint's owners, it
		 * would tell them what internal names resolve to. */
		snprintf(s->refused, sizeof(s->refused),
		         "refused to connect: the name resolves to %s", wh_addr_refusal(kind));
		snprintf(s->refused_ip, sizeof(s->refused_ip), "%s", ip);
		return CURL_SOCKET_BAD;
	}
	return socket(address->family, address->socktype, address->protocol);
}

static size_t on_data(char *data, size_t size, size_t n, void *arg)
{
	struct wh_send *s = arg;
	size_t len = size * n, room = RESPONSE_MAX - s->response_len;
	size_t take = len < room ? len : room;
	memcpy(s->response + s->response_len, data, take);
	s->response_len += take;
	return len;
}

/* Decides what the attempt means for the job. */
static void judge(struct wh_send *s, int curl_code)
{
	struct wh *wh = s->wh;
	bool is_ping = !is_job(s);
	curl_off_t retry_after = -1;
	if (curl_code == CURLE_OK) {
		curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &s->status);
		curl_easy_getinfo(s->easy, CURLINFO_RETRY_AFTER, &retry_after);
	}
	curl_off_t us = 0;
	curl_easy_getinfo(s->easy, CURLINFO_TOTAL_TIME_T, &us);
	s->duration_ms = (long)(us / 1000);

	s->retry_s = 0;
	if (s->refused[0]) {
		/* Retrying cannot help: the address is refused whatever happens. */
		s->outcome = "refused";
		s->job_outcome = SP_JOB_FAIL;
		snprintf(s->error, sizeof(s->error), "%s", s->refused);
		wh->api->metric_add(wh->m_refused, 1);
		wh->api->log(wh->plugin, SP_LOG_WARN, "webhook endpoint %s: %s (%s)",
		             s->endpoint_id, s->refused, s->refused_ip);
		return;
	}
	if (curl_code == CURLE_OK && s->status >= 200 && s->status < 300) {
		s->outcome = "delivered";
		s->job_outcome = SP_JOB_DONE;
		wh->api->metric_add(wh->m_delivered, 1);
		return;
	}
	wh->api->metric_add(wh->m_failed, 1);
	if (curl_code != CURLE_OK)
		snprintf(s->error, sizeof(s->error), "%s%s%s",
		         curl_easy_strerror((CURLcode)curl_code), s->errbuf[0] ? ": " : "",
		         s->errbuf);
	else if (s->status >= 300 && s->status < 400)
		snprintf(s->error, sizeof(s->error), "HTTP %ld (redirects are not followed)",
		         s->status);
	else
		snprintf(s->error, sizeof(s->error), "HTTP %ld", s->status);
	if (curl_code == CURLE_OK && s->status == 410) {
		s->outcome = "disabled";
		s->job_outcome = SP_JOB_FAIL;
		snprintf(s->error, sizeof(s->error), "HTTP 410 Gone: the endpoint is now disabled");
		wh->api->log(wh->plugin, SP_LOG_WARN,
		             "webhook endpoint %s answered 410 Gone: disabled", s->endpoint_id);
		return;
	}
	if (is_ping) {
		s->outcome = "failed";
		return;
	}
	if (s->attempt >= s->max_attempts) {
		s->outcome = "failed";
		s->job_outcome = SP_JOB_FAIL;
		size_t n = strlen(s->error);
		snprintf(s->error + n, sizeof(s->error) - n, "; gave up after %d attempts",
		         s->attempt);
		wh->api->log(wh->plugin, SP_LOG_INFO,
		             "webhook event %s to endpoint %s is dead after %d attempts: %s",
		             s->event_id, s->endpoint_id, s->attempt, s->error);
		return;
	}
	s->outcome = "retrying";
	s->job_outcome = SP_JOB_RETRY;
	if ((s->status == 429 || s->status == 503) && retry_after > 0)
		s->retry_s =
		    (unsigned)(retry_after > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : retry_after);
	else
		s->retry_s = wh_schedule_delay(wh->cfg.schedule, wh->cfg.nschedule, s->attempt,
		                               randombytes_uniform(10001));
}

static void post_waiting(struct wh *wh);

static void transfer_done(void *easy, int curl_code, void *arg)
{
	struct wh_send *s = arg;
	struct wh *wh = s->wh;
	if (is_job(s))
		wh->posting--;
	if (curl_code == CURLE_ABORTED_BY_CALLBACK) {
		/* The server is stopping: the job is left to its lease, the ping answered. */
		if (s->req)
			s->wh->api->reply_problem(s->req, 503, NULL, "the server is stopping",
			                          NULL);
		send_free(s);
		return;
	}
	judge(s, curl_code);
	record(s);
	post_waiting(wh);
}

/* Signs and starts the POST. Returns 0, or -1 with s->error set (nothing started). */
static int send_start(struct wh_send *s, const char *url, const char *secret, const char *previous)
{
	struct wh *wh = s->wh;
	long long now = (long long)time(NULL);
	char sig[WH_SIG_HEADER], line[WH_SIG_HEADER + 64];
	if (wh_signature_header(secret, previous, s->event_id, now, s->body, strlen(s->body), sig) <
	    0) {
		snprintf(s->error, sizeof(s->error), "the endpoint's secret is not valid");
		return -1;
	}
	if (wh->nidle > 0) {
		/* Every option is set again below; connections stay with the multi handle. */
		s->easy = wh->idle_easy[--wh->nidle];
		curl_easy_reset(s->easy);
	} else {
		s->easy = curl_easy_init();
	}
	if (!s->easy) {
		snprintf(s->error, sizeof(s->error), "cannot start a transfer");
		return -1;
	}
	static const char *const fixed[] = { "Content-Type: application/json",
		                             "User-Agent: Spearhead-Webhooks/" WH_VERSION,
		                             "Expect:" };
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		s->headers = curl_slist_append(s->headers, fixed[i]);
	snprintf(line, sizeof(line), "webhook-id: %s", s->event_id);
	s->headers = curl_slist_append(s->headers, line);
	snprintf(line, sizeof(line), "webhook-timestamp: %lld", now);
	s->headers = curl_slist_append(s->headers, line);
	snprintf(line, sizeof(line), "webhook-signature: %s", sig);
	s->headers = curl_slist_append(s->headers, line);

	CURL *e = s->easy;
	long timeout_ms = wh->cfg.timeout_s * 1000;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PROXY, ""); /* no proxy from the environment */
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 10000 ? timeout_ms : 10000L);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->headers);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, s->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(s->body));
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, s);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf);
	if (wh->api->curl_add(wh->plugin, e, transfer_done, s) < 0) {
		snprintf(s->error, sizeof(s->error), "cannot start a transfer");
		return -1;
	}
	return 0;
}

/* Starts the POST (signed now). Deliveries count against post_max; pings do not. */
static void post(struct wh_send *s)
{
	struct wh *wh = s->wh;
	if (is_job(s))
		wh->posting++;
	if (send_start(s, s->url, s->secret, s->previous) < 0) {
		if (is_job(s))
			wh->posting--;
		char err[ERROR_MAX + 1];
		snprintf(err, sizeof(err), "%s", s->error);
		send_abort(s, SP_JOB_RETRY, 0, 500, err);
	}
}

/* Starts waiting deliveries while there is room. */
static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A delivery that waited longer than timeout_s for a connection is not sent: with its
 * own request it could outlive its job's lease, and another instance send it too. A
 * delivery job's endpoint gets a send job due at once (the attempt does not count); a
 * send job is retried a second later (the claim counted the attempt). */
static void give_back(struct wh_send *s)
{
	snprintf(s->error, sizeof(s->error),
	         "waited longer than timeout_s for a free connection; given back");
	if (s->delivery) {
		s->outcome = "given_back";
		record(s);
	} else {
		send_abort(s, SP_JOB_RETRY, 1, 503, s->error);
	}
}

static void post_waiting(struct wh *wh)
{
	long long now = wh->waiting ? now_ms() : 0;
	while (wh->waiting && wh->posting < wh->post_max) {
		struct wh_send *s = wh->waiting;
		wh->waiting = s->next;
		if (!wh->waiting)
			wh->waiting_last = NULL;
		s->next = NULL;
		if (now - s->queued_ms > wh->cfg.timeout_s * 1000)
			give_back(s);
		else
			post(s);
	}
}

/* JSON text of a string (new, free()). */
static char *json_str(const char *v)
{
	json_t *j = json_string(v ? v : "");
	char *out = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
	json_decref(j);
	return out;
}

/* The body: {"id", "type", "created_at", "title", "data"}. data is spliced as the
 * database wrote it (valid JSON), so no number loses precision. New string or NULL. */
static char *build_body(const char *id, const char *type, const char *created_at, const char *title,
                        const char *data)
{
	char *jid = json_str(id), *jtype = json_str(type), *jts = json_str(created_at),
	     *jtitle = json_str(title), *out = NULL;
	if (jid && jtype && jts && jtitle) {
		const char *d = data && *data ? data : "{}";
		size_t n =
		    strlen(jid) + strlen(jtype) + strlen(jts) + strlen(jtitle) + strlen(d) + 64;
		out = malloc(n);
		if (out)
			snprintf(
			    out, n,
			    "{\"id\":%s,\"type\":%s,\"created_at\":%s,\"title\":%s,\"data\":%s}",
			    jid, jtype, jts, jtitle, d);
	}
	free(jid);
	free(jtype);
	free(jts);
	free(jtitle);
	return out;
}

/* Columns of the load queries (delivery jobs and pings share them). */
enum {
	COL_INDEX, /* 1-based position in the batch */
	COL_EVENT_ID,
	COL_TYPE,
	COL_CREATED_AT,
	COL_TITLE,
	COL_DATA,
	COL_URL,
	COL_SECRET,
	COL_PREVIOUS,
	COL_ENABLED,
	COL_MAX_ATTEMPTS,
	COL_ENDPOINT_ID,
};

/* Send jobs: $1 outbox ids, $2 endpoint ids, $3 job ids (arrays, in batch order). A
 * job without row has lost its event or its endpoint. Each event is looked up by its key
 * (OFFSET 0 keeps the subquery apart): joined, the generic plan of the prepared statement
 * could read and hash the whole outbox for every batch. */
static const char load_sql[] =
    "SELECT k.i::int, o.id::text, o.type, to_char(o.created_at AT TIME ZONE 'UTC', " WH_TS_FMT
    "), o.title, o.data::text, w.url, w.secret, CASE WHEN w.previous_secret_expires_at > "
    "now() THEN w.previous_secret END, w.enabled, j.max_attempts, w.id::text FROM "
    "unnest($1::uuid[], $2::uuid[], $3::bigint[]) WITH ORDINALITY AS k(outbox_id, "
    "endpoint_id, job_id, i) CROSS JOIN LATERAL (SELECT * FROM sp_outbox WHERE id = "
    "k.outbox_id OFFSET 0) o JOIN webhook_endpoints w ON w.id = k.endpoint_id LEFT JOIN "
    "sp_jobs j ON j.id = k.job_id";

/* A test ping ($1 endpoint id, $2 the caller's organisation or NULL for admins); it goes
 * to disabled endpoints too. */
static const char ping_sql[] =
    "SELECT 1, gen_random_uuid()::text, 'webhook.ping', to_char(now() AT TIME ZONE "
    "'UTC', " WH_TS_FMT "), 'Test ping from Spearhead', jsonb_build_object('endpoint_id', "
    "w.id)::text, w.url, w.secret, CASE WHEN w.previous_secret_expires_at > now() THEN "
    "w.previous_secret END, true, 1, w.id::text FROM webhook_endpoints w WHERE w.id = "
    "$1::uuid AND ($2::uuid IS NULL OR w.org_id = $2::uuid)";

/* Builds, signs and posts what row of res describes. */
static void start_loaded(struct wh_send *s, const struct sp_db_result *res, int row)
{
	struct wh *wh = s->wh;
	const struct sp_api *api = wh->api;
	if (strcmp(api->db_value(res, row, COL_ENABLED), "t") != 0) {
		send_abort(s, SP_JOB_DONE, 0, 409, "the endpoint is disabled; not sent");
		return;
	}
	snprintf(s->event_id, sizeof(s->event_id), "%s", api->db_value(res, row, COL_EVENT_ID));
	snprintf(s->event_type, sizeof(s->event_type), "%s", api->db_value(res, row, COL_TYPE));
	snprintf(s->endpoint_id, sizeof(s->endpoint_id), "%s",
	         api->db_value(res, row, COL_ENDPOINT_ID));
	const char *max = api->db_value(res, row, COL_MAX_ATTEMPTS);
	s->max_attempts = max ? atoi(max) : wh->cfg.nschedule + 1;
	s->policy = wh->cfg.policy;
	s->body = build_body(s->event_id, s->event_type, api->db_value(res, row, COL_CREATED_AT),
	                     api->db_value(res, row, COL_TITLE), api->db_value(res, row, COL_DATA));
	if (!s->body) {
		send_abort(s, SP_JOB_RETRY, 0, 500, "out of memory");
		return;
	}
	const char *previous = api->db_value(res, row, COL_PREVIOUS);
	s->url = strdup(api->db_value(res, row, COL_URL));
	s->secret = strdup(api->db_value(res, row, COL_SECRET));
	s->previous = previous ? strdup(previous) : NULL;
	if (!s->url || !s->secret || (previous && !s->previous)) {
		send_abort(s, SP_JOB_RETRY, 0, 500, "out of memory");
		return;
	}
	if (is_job(s) && (wh->waiting || wh->posting >= wh->post_max)) {
		s->queued_ms = now_ms();
		s->next = NULL;
		if (wh->waiting_last)
			wh->waiting_last->next = s;
		else
			wh->waiting = s;
		wh->waiting_last = s;
		return;
	}
	post(s);
}

struct load_batch {
	struct wh *wh;
	int n;
	struct wh_send *items[];
};

static void loaded(const struct sp_db_result *res, void *arg)
{
	struct load_batch *b = arg;
	const struct sp_api *api = b->wh->api;
	if (!api->db_ok(res)) {
		char err[96];
		snprintf(err, sizeof(err), "database error (%s) while loading the event",
		         api->db_sqlstate(res));
		for (int i = 0; i < b->n; i++)
			send_abort(b->items[i], SP_JOB_RETRY, 0, 503, err);
		free(b);
		return;
	}
	int rows = api->db_ntuples(res);
	for (int r = 0; r < rows; r++) {
		int i = atoi(api->db_value(res, r, COL_INDEX)) - 1;
		if (i < 0 || i >= b->n || !b->items[i])
			continue;
		struct wh_send *s = b->items[i];
		b->items[i] = NULL;
		start_loaded(s, res, r);
	}
	/* Deleted meanwhile: there is nothing left to deliver. */
	for (int i = 0; i < b->n; i++)
		if (b->items[i])
			send_abort(b->items[i], SP_JOB_DONE, 0, 404,
			           "the endpoint or the event no longer exists; not sent");
	free(b);
}

/* Appends ",value" (or "value" first) to an array literal being built in buf. */
static void array_add(char *buf, size_t size, size_t *len, const char *value)
{
	int n = snprintf(buf + *len, size - *len, "%s%s", *len > 1 ? "," : "", value);
	if (n > 0)
		*len += (size_t)n;
}

static void load_flush(void *arg)
{
	struct wh *wh = arg;
	wh->load_timer = NULL;
	int n = wh->nloading;
	struct wh_send *list = wh->loading;
	wh->loading = NULL;
	wh->nloading = 0;
	if (!list)
		return;
	struct load_batch *b = calloc(1, sizeof(*b) + (size_t)n * sizeof(b->items[0]));
	size_t cap = (size_t)n * 40 + 4;
	char *outbox = malloc(cap), *endpoints = malloc(cap), *jobs = malloc(cap);
	if (!b || !outbox || !endpoints || !jobs) {
		while (list) {
			struct wh_send *next = list->next;
			send_abort(list, SP_JOB_RETRY, 0, 500, "out of memory");
			list = next;
		}
		goto out;
	}
	b->wh = wh;
	size_t lo = 1, le = 1, lj = 1;
	outbox[0] = endpoints[0] = jobs[0] = '{';
	for (struct wh_send *s = list; s; s = s->next) {
		b->items[b->n++] = s;
		array_add(outbox, cap, &lo, s->event_id); /* the outbox id until loaded */
		array_add(endpoints, cap, &le, s->endpoint_id);
		array_add(jobs, cap, &lj, s->job_id);
	}
	snprintf(outbox + lo, cap - lo, "}");
	snprintf(endpoints + le, cap - le, "}");
	snprintf(jobs + lj, cap - lj, "}");
	const char *params[] = { outbox, endpoints, jobs };
	if (wh->api->db_query_prepared(wh->plugin, "wh_load", load_sql, 3, params, loaded, b) < 0) {
		for (int i = 0; i < b->n; i++)
			send_abort(b->items[i], SP_JOB_RETRY, 0, 503, "database unavailable");
		free(b);
	}
	b = NULL;
out:
	free(b);
	free(outbox);
	free(endpoints);
	free(jobs);
}

static struct wh_send *send_new(struct wh *wh)
{
	struct wh_send *s = calloc(1, sizeof(*s));
	if (s) {
		s->wh = wh;
		sending_changed(wh, 1);
	}
	return s;
}

/* "webhook.send": {outbox_id, endpoint_id}. Jobs claimed together arrive one after the
 * other in the same loop turn; they are loaded with one query on the next. */
static void on_send(struct sp_job *job, const json_t *payload, void *arg)
{
	struct wh *wh = arg;
	const struct sp_api *api = wh->api;
	const char *outbox_id = json_string_value(json_object_get(payload, "outbox_id"));
	const char *endpoint_id = json_string_value(json_object_get(payload, "endpoint_id"));
	if (!wh_is_uuid(outbox_id) || !wh_is_uuid(endpoint_id)) {
		api->job_finish(job, SP_JOB_FAIL, 0,
		                "bad payload: outbox_id and endpoint_id expected");
		return;
	}
	struct wh_send *s = send_new(wh);
	if (!s) {
		api->job_finish(job, SP_JOB_RETRY, 0, "out of memory");
		return;
	}
	s->job = job;
	s->attempt = api->job_attempt(job);
	snprintf(s->job_id, sizeof(s->job_id), "%s", api->job_id(job));
	snprintf(s->event_id, sizeof(s->event_id), "%s", outbox_id);
	snprintf(s->endpoint_id, sizeof(s->endpoint_id), "%s", endpoint_id);
	s->next = wh->loading;
	wh->loading = s;
	if (++wh->nloading >= LOAD_BATCH_MAX) {
		if (wh->load_timer)
			api->timer_cancel(wh->load_timer);
		load_flush(wh);
	} else if (!wh->load_timer) {
		wh->load_timer = api->timer_add(wh->plugin, 0, false, load_flush, wh);
		if (!wh->load_timer)
			load_flush(wh);
	}
}

static void ping_loaded(const struct sp_db_result *res, void *arg)
{
	struct wh_send *s = arg;
	const struct sp_api *api = s->wh->api;
	if (!api->db_ok(res)) {
		api->reply_db_error(s->req, res);
		s->req = NULL;
		send_free(s);
	} else if (api->db_ntuples(res) == 0) {
		send_abort(s, SP_JOB_DONE, 0, 404, "no such webhook endpoint");
	} else {
		start_loaded(s, res, 0);
	}
}

void wh_deliver_ping(struct wh *wh, struct sp_request *req, const char *endpoint_id,
                     const char *org_filter)
{
	struct wh_send *s = send_new(wh);
	if (!s) {
		wh->api->reply_problem(req, 500, NULL, "out of memory", NULL);
		return;
	}
	s->req = req;
	s->attempt = 1;
	s->max_attempts = 1;
	snprintf(s->endpoint_id, sizeof(s->endpoint_id), "%s", endpoint_id);
	const char *params[] = { endpoint_id, org_filter };
	if (wh->api->db_query(wh->plugin, ping_sql, 2, params, ping_loaded, s) < 0)
		send_abort(s, SP_JOB_RETRY, 0, 503, "the database is unavailable");
}

void wh_deliver_shutdown(struct wh *wh)
{
	/* The loop has stopped: the timers will not fire. Jobs are left to their lease. */
	wh->closing = true;
	struct wh_send *lists[] = { wh->loading, wh->recording, wh->waiting };
	wh->loading = wh->recording = wh->waiting = wh->waiting_last = NULL;
	wh->nloading = wh->nrecording = 0;
	while (wh->dloading) {
		struct wh_delivery *next = wh->dloading->next;
		delivery_free(wh->dloading);
		wh->dloading = next;
	}
	wh->ndloading = 0;
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		for (struct wh_send *s = lists[i], *next; s; s = next) {
			next = s->next;
			if (s->req)
				wh->api->reply_problem(s->req, 503, NULL, "the server is stopping",
				                       NULL);
			send_free(s);
		}
	}
	while (wh->nidle > 0)
		curl_easy_cleanup(wh->idle_easy[--wh->nidle]);
	free(wh->idle_easy);
	wh->idle_easy = NULL;
}

/* ---- delivery jobs: the first attempt to every endpoint ---- */

/* Delivery jobs: $1 outbox ids, $2 the jobs' attempts (arrays, in batch order), $3 the
 * attempts a send job gets. One row per enabled endpoint of the event's organisation
 * whose events match its type; a job run again (attempt > 1) skips the endpoints that
 * already have their send job. Events are looked up by key, as in load_sql. */
static const char dload_sql[] =
    "SELECT k.i::int, o.id::text, o.type, to_char(o.created_at AT TIME ZONE 'UTC', " WH_TS_FMT
    "), o.title, o.data::text, w.url, w.secret, CASE WHEN w.previous_secret_expires_at > "
    "now() THEN w.previous_secret END, w.enabled, $3::int, w.id::text FROM "
    "unnest($1::uuid[], $2::int[]) WITH ORDINALITY AS k(outbox_id, attempt, i) CROSS JOIN "
    "LATERAL (SELECT * FROM sp_outbox WHERE id = k.outbox_id OFFSET 0) o JOIN webhook_endpoints w "
    "ON w.org_id = o.org_id AND "
    "w.enabled AND EXISTS (SELECT 1 FROM unnest(w.events) AS p(v) WHERE p.v = '*' OR p.v = "
    "o.type OR (right(p.v, 2) = '.*' AND starts_with(o.type, left(p.v, -1)))) WHERE "
    "k.attempt = 1 OR NOT EXISTS (SELECT 1 FROM sp_jobs j WHERE j.queue = 'webhook.send' AND "
    "j.dedupe_key = o.id::text || ':' || w.id::text)";

struct dload_batch {
	struct wh *wh;
	int n;
	struct wh_delivery *items[];
};

static void dloaded(const struct sp_db_result *res, void *arg)
{
	struct dload_batch *b = arg;
	struct wh *wh = b->wh;
	const struct sp_api *api = wh->api;
	if (!api->db_ok(res)) {
		char err[96];
		snprintf(err, sizeof(err), "database error (%s) while loading the event",
		         api->db_sqlstate(res));
		for (int i = 0; i < b->n; i++) {
			api->job_finish(b->items[i]->job, SP_JOB_RETRY, 0, err);
			delivery_free(b->items[i]);
		}
		free(b);
		return;
	}
	/* Every send is counted before any starts: one ending at once must not end its
	 * delivery while others are still to come. */
	for (int i = 0; i < b->n; i++)
		b->items[i]->pending = 1;
	int rows = api->db_ntuples(res);
	for (int r = 0; r < rows; r++) {
		int i = atoi(api->db_value(res, r, COL_INDEX)) - 1;
		if (i < 0 || i >= b->n)
			continue;
		struct wh_delivery *d = b->items[i];
		struct wh_send *s = send_new(wh);
		if (!s) {
			d->retry = true;
			continue;
		}
		d->pending++;
		s->delivery = d;
		s->attempt = d->attempt;
		snprintf(s->job_id, sizeof(s->job_id), "%s", d->job_id);
		start_loaded(s, res, r);
	}
	/* The count's own share: a delivery without endpoints (or without its event) ends
	 * here, the others when their last send is logged. */
	for (int i = 0; i < b->n; i++)
		delivery_release(b->items[i], true);
	free(b);
}

static void dload_flush(void *arg)
{
	struct wh *wh = arg;
	wh->dload_timer = NULL;
	int n = wh->ndloading;
	struct wh_delivery *list = wh->dloading;
	wh->dloading = NULL;
	wh->ndloading = 0;
	if (!list)
		return;
	struct dload_batch *b = calloc(1, sizeof(*b) + (size_t)n * sizeof(b->items[0]));
	size_t cap = (size_t)n * 40 + 4;
	char *outbox = malloc(cap), *attempts = malloc(cap);
	if (!b || !outbox || !attempts) {
		while (list) {
			struct wh_delivery *next = list->next;
			wh->api->job_finish(list->job, SP_JOB_RETRY, 0, "out of memory");
			delivery_free(list);
			list = next;
		}
		goto out;
	}
	b->wh = wh;
	size_t lo = 1, la = 1;
	outbox[0] = attempts[0] = '{';
	for (struct wh_delivery *d = list; d; d = d->next) {
		char num[16];
		snprintf(num, sizeof(num), "%d", d->attempt);
		b->items[b->n++] = d;
		array_add(outbox, cap, &lo, d->outbox_id);
		array_add(attempts, cap, &la, num);
	}
	snprintf(outbox + lo, cap - lo, "}");
	snprintf(attempts + la, cap - la, "}");
	char max[16];
	snprintf(max, sizeof(max), "%d", wh->cfg.nschedule + 1);
	const char *params[] = { outbox, attempts, max };
	if (wh->api->db_query_prepared(wh->plugin, "wh_dload", dload_sql, 3, params, dloaded, b) <
	    0) {
		for (int i = 0; i < b->n; i++) {
			wh->api->job_finish(b->items[i]->job, SP_JOB_RETRY, 0,
			                    "database unavailable");
			delivery_free(b->items[i]);
		}
		free(b);
	}
	b = NULL;
out:
	free(b);
	free(outbox);
	free(attempts);
}

/* "deliver.webhook": {outbox_id}. Jobs claimed together arrive one after the other in
 * the same loop turn; they are loaded with their endpoints by one query on the next. */
static void on_deliver(struct sp_job *job, const json_t *payload, void *arg)
{
	struct wh *wh = arg;
	const struct sp_api *api = wh->api;
	const char *outbox_id = json_string_value(json_object_get(payload, "outbox_id"));
	if (!wh_is_uuid(outbox_id)) {
		api->job_finish(job, SP_JOB_FAIL, 0, "bad payload: outbox_id expected");
		return;
	}
	struct wh_delivery *d = calloc(1, sizeof(*d));
	if (!d) {
		api->job_finish(job, SP_JOB_RETRY, 0, "out of memory");
		return;
	}
	d->wh = wh;
	d->job = job;
	d->attempt = api->job_attempt(job);
	snprintf(d->job_id, sizeof(d->job_id), "%s", api->job_id(job));
	snprintf(d->outbox_id, sizeof(d->outbox_id), "%s", outbox_id);
	d->next = wh->dloading;
	wh->dloading = d;
	if (++wh->ndloading >= LOAD_BATCH_MAX) {
		if (wh->dload_timer)
			api->timer_cancel(wh->dload_timer);
		dload_flush(wh);
	} else if (!wh->dload_timer) {
		wh->dload_timer = api->timer_add(wh->plugin, 0, false, dload_flush, wh);
		if (!wh->dload_timer)
			dload_flush(wh);
	}
}

int wh_deliver_init(struct wh *wh, int concurrency)
{
	const struct sp_api *api = wh->api;
	wh->post_max = concurrency;
	wh->idle_easy = calloc((size_t)concurrency, sizeof(*wh->idle_easy));
	int slots = concurrency * SLOTS_PER_REQUEST;
	if (api->channel_register(wh->plugin, "webhook", SP_CHANNEL_ORG) < 0 ||
	    api->job_handle(wh->plugin, "deliver.webhook", slots < 1000 ? slots : 1000, on_deliver,
	                    wh) < 0 ||
	    api->job_handle(wh->plugin, "webhook.send", slots < 1000 ? slots : 1000, on_send, wh) <
	        0)
		return -1;
	return 0;
}
