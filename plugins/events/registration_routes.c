/* registration_routes.c — registrations: register (with Idempotency-Key), cancel (with
 * promotion from the waiting list), read one, the organisers' list (JSON or CSV), the
 * caller's own registrations, and check-in. The seat decisions themselves are taken
 * by the SQL functions under the event's lock (sql/0001_events.sql). */
#include "events.h"
#include "events_format.h"
#include "events_validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_DEFAULT 50
#define PAGE_MAX     500

/* ---- POST /v1/events/{id}/registrations ----
 *
 * Steady state is one statement per registration (besides the core's token check):
 * the body is checked against the event's questions and categories from a per-process
 * cache (struct ev_meta), and events_register() refuses with "stale" when the event
 * changed since the cached version, in which case the questions are read again. */

#define REGISTER_ATTEMPTS 3

static void register_attempt(struct ev_op *op);

static void registered(struct ev_op *op, const char *outcome, json_t *body)
{
	struct ev_plugin *ev = op->ev;
	char detail[200];
	const char *at = json_string_value(json_object_get(body, "at"));
	if (strcmp(outcome, "created") == 0) {
		ev_reply(op, 201, json_incref(body));
	} else if (strcmp(outcome, "replay") == 0) {
		ev->api->metric_add(ev->m_replays, 1);
		ev_reply(op, 201, json_incref(body));
	} else if (strcmp(outcome, "stale") == 0) {
		ev_meta_drop(ev, op->event_id);
		if (++op->attempts < REGISTER_ATTEMPTS)
			register_attempt(op);
		else
			ev_problem(op, 409, "Event changing", "the event keeps changing; retry",
			           NULL);
	} else if (strcmp(outcome, "key_reused") == 0) {
		ev_problem(op, 422, "Idempotency-Key reused",
		           "this Idempotency-Key was used for a different request",
		           json_pack("{s:s}", "Idempotency-Key",
		                     "was already used for a different request"));
	} else if (strcmp(outcome, "not_found") == 0) {
		ev_meta_drop(ev, op->event_id);
		ev_problem(op, 404, NULL, "no such event", NULL);
	} else if (strcmp(outcome, "forbidden") == 0) {
		ev_problem(op, 403, NULL,
		           "only the event's organisers may register someone else; leave attendee "
		           "out or give your own e-mail",
		           NULL);
	} else if (strcmp(outcome, "not_open") == 0) {
		snprintf(detail, sizeof(detail), "registration is not open: the event is %s",
		         json_string_value(json_object_get(body, "status")));
		ev_problem(op, 409, "Registration not open", detail, NULL);
	} else if (strcmp(outcome, "not_yet") == 0) {
		snprintf(detail, sizeof(detail), "registration opens at %s", at ? at : "?");
		ev_problem(op, 409, "Registration not open yet", detail, NULL);
	} else if (strcmp(outcome, "window_closed") == 0) {
		snprintf(detail, sizeof(detail), "registration closed at %s", at ? at : "?");
		ev_problem(op, 409, "Registration closed", detail, NULL);
	} else if (strcmp(outcome, "duplicate") == 0) {
		snprintf(detail, sizeof(detail),
		         "this person is already registered for the event (registration %s, %s)",
		         json_string_value(json_object_get(body, "id")),
		         json_string_value(json_object_get(body, "status")));
		ev_problem(op, 409, "Already registered", detail, NULL);
	} else if (strcmp(outcome, "bad_category") == 0 ||
	           strcmp(outcome, "category_required") == 0) {
		ev_problem(op, 422, "Invalid registration", "the category is not acceptable",
		           json_pack("{s:s}", "category",
		                     strcmp(outcome, "bad_category") == 0
		                         ? "is not one of the event's categories"
		                         : "is required: choose one of the event's categories"));
	} else {
		ev->api->log(ev->plugin, SP_LOG_ERROR, "unexpected outcome '%s'", outcome);
		ev_problem(op, 500, NULL, "an internal error occurred; it has been logged", NULL);
	}
}

/* A unique index refused the registration: a twin request with the same
 * Idempotency-Key, or the same person, got there first (both pass the checks made
 * before the event's lock together). A new attempt finds it and answers accordingly. */
static bool register_failed(struct ev_op *op, const struct sp_db_result *res)
{
	if (strcmp(op->ev->api->db_sqlstate(res), "23505") != 0)
		return false;
	if (++op->attempts < REGISTER_ATTEMPTS) {
		register_attempt(op);
		return true;
	}
	ev_problem(op, 409, "Already registered", "this person is already registered", NULL);
	return true;
}

/* A request that does not pass the checks may still be the retry of one that did
 * (the questions changed since): with an Idempotency-Key, the first answer wins. */
static void prior_loaded(struct ev_op *op, const struct sp_db_result *res)
{
	const struct sp_api *api = op->ev->api;
	if (api->db_ntuples(res) == 1) {
		const char *same = api->db_value(res, 0, 1);
		json_t *first = ev_json_col(op, res, 0, 0);
		registered(op, same && strcmp(same, "t") == 0 && first ? "replay" : "key_reused",
		           first);
		json_decref(first);
		return;
	}
	json_t *errors = op->extra;
	op->extra = NULL;
	ev_problem(op, 422, "Invalid registration", "the registration is not acceptable", errors);
}

/* ---- registrations of one event, made together ----
 *
 * Every registration of an event takes that event's lock, so under load they wait for
 * each other in PostgreSQL one transaction at a time, each paying a round trip, a
 * transaction and a lock hand-over. Instead, a process keeps one batch per event in
 * flight: a registration arriving while its event's batch is under way waits, and the
 * ones that waited go together in the next batch, one statement
 * (events_register_batch) deciding each in arrival order exactly as alone. A lone
 * registration goes at once as a batch of one. If a batch is still under way after
 * BATCH_WAIT_MS (a lock held elsewhere, say) the waiting ones go as a batch of their own,
 * so nobody waits for someone else's lock timeout on top of their own. */

#define BATCH_MAX     100
#define BATCH_WAIT_MS 100

struct ev_regq {
	struct ev_plugin *ev;
	char event_id[40];
	struct ev_op *head, *tail; /* waiting, in arrival order */
	int waiting;
	int in_flight;          /* batches under way */
	struct sp_timer *timer; /* while some wait behind a batch under way */
	struct ev_regq *next;
};

struct ev_batch {
	struct ev_regq *q;
	int n;
	struct ev_op *ops[BATCH_MAX];
};

static void batch_dispatch(struct ev_regq *q);

/* The registration in op->item made on its own (one statement). */
static void register_single(struct ev_op *op)
{
	const json_t *it = op->item;
	char ver[16];
	snprintf(ver, sizeof(ver), "%d", (int)json_integer_value(json_object_get(it, "version")));
	char *answers_text = json_dumps(json_object_get(it, "answers"), JSON_COMPACT);
	if (!answers_text) {
		ev_problem(op, 500, NULL, "out of memory", NULL);
		return;
	}
	const char *params[] = { op->event_id,
		                 ver,
		                 json_string_value(json_object_get(it, "caller")),
		                 json_string_value(json_object_get(it, "caller_email")),
		                 json_is_true(json_object_get(it, "admin")) ? "true" : "false",
		                 json_string_value(json_object_get(it, "name")),
		                 json_string_value(json_object_get(it, "email")),
		                 json_string_value(json_object_get(it, "category")),
		                 answers_text,
		                 json_string_value(json_object_get(it, "key")),
		                 json_string_value(json_object_get(it, "request")),
		                 op->ev->unsafe ? "true" : "false" };
	op->on_error = register_failed;
	ev_call(op, "reg_register",
	        "SELECT outcome, body, notices FROM events_register($1::uuid, $2::int, $3::uuid, "
	        "$4::text, $5::boolean, $6::text, $7::text, $8::text, $9::jsonb, $10::text, "
	        "$11::text, $12::boolean)",
	        12, params, registered);
	free(answers_text);
}

static void regq_timer_cancel(struct ev_regq *q)
{
	if (q->timer) {
		q->ev->api->timer_cancel(q->timer);
		q->timer = NULL;
	}
}

/* Frees q once nothing waits and no batch is under way. */
static void regq_settle(struct ev_regq *q)
{
	if (q->waiting > 0 || q->in_flight > 0)
		return;
	regq_timer_cancel(q);
	struct ev_regq **p = &q->ev->regqs;
	while (*p && *p != q)
		p = &(*p)->next;
	if (*p)
		*p = q->next;
	free(q);
}

static void regq_waited(void *arg)
{
	struct ev_regq *q = arg;
	q->timer = NULL;
	if (q->waiting > 0)
		batch_dispatch(q);
}

static void regq_arm(struct ev_regq *q)
{
	if (q->waiting > 0 && !q->timer)
		q->timer =
		    q->ev->api->timer_add(q->ev->plugin, BATCH_WAIT_MS, false, regq_waited, q);
}

/* A batch failed as a whole: what a lone registration would have done with res. */
static void batch_failed(struct ev_batch *b, const struct sp_db_result *res)
{
	const struct sp_api *api = b->q->ev->api;
	bool unique = strcmp(api->db_sqlstate(res), "23505") == 0;
	for (int i = 0; i < b->n; i++) {
		struct ev_op *op = b->ops[i];
		if (unique) {
			/* A twin request or the same person, made by another process between
			 * the checks and the lock: one by one, each finds what it met. */
			if (++op->attempts < REGISTER_ATTEMPTS)
				register_single(op);
			else
				ev_problem(op, 409, "Already registered",
				           "this person is already registered", NULL);
		} else {
			api->reply_db_error(op->req, res);
			ev_op_free(op);
		}
	}
}

static void batch_done(const struct sp_db_result *res, void *arg)
{
	struct ev_batch *b = arg;
	struct ev_regq *q = b->q;
	const struct sp_api *api = q->ev->api;
	q->in_flight--;
	if (!api->db_ok(res)) {
		batch_failed(b, res);
	} else {
		/* Answers may queue registrations again (a stale event is checked anew). */
		bool answered[BATCH_MAX] = { false };
		int rows = api->db_ntuples(res);
		for (int r = 0; r < rows; r++) {
			const char *idx = api->db_value(res, r, 0);
			const char *outcome = api->db_value(res, r, 1);
			int i = idx ? atoi(idx) : -1;
			if (i < 0 || i >= b->n || answered[i] || !outcome)
				continue;
			answered[i] = true;
			struct ev_op *op = b->ops[i];
			json_t *notices = ev_json_col(op, res, r, 3);
			if (notices)
				ev_emit_notices(q->ev, notices); /* the batch has committed */
			json_decref(notices);
			json_t *body = ev_json_col(op, res, r, 2);
			registered(op, outcome, body);
			json_decref(body);
		}
		for (int i = 0; i < b->n; i++) {
			if (answered[i])
				continue;
			api->log(q->ev->plugin, SP_LOG_ERROR,
			         "a registration batch left one unanswered");
			ev_problem(b->ops[i], 500, NULL,
			           "an internal error occurred; it has been logged", NULL);
		}
	}
	free(b);
	if (q->waiting > 0 && q->in_flight == 0)
		batch_dispatch(q);
	regq_arm(q);
	regq_settle(q);
}

/* Sends the registrations waiting in q (at most BATCH_MAX) as one batch. */
static void batch_dispatch(struct ev_regq *q)
{
	struct ev_plugin *ev = q->ev;
	struct ev_batch *b = calloc(1, sizeof(*b));
	json_t *items = json_array();
	if (!b || !items) {
		free(b);
		json_decref(items);
		return; /* what waits goes with the next batch or the timer */
	}
	b->q = q;
	while (q->head && b->n < BATCH_MAX) {
		struct ev_op *op = q->head;
		q->head = op->qnext;
		op->qnext = NULL;
		q->waiting--;
		json_object_set_new(op->item, "i", json_integer(b->n));
		json_array_append(items, op->item);
		b->ops[b->n++] = op;
	}
	if (!q->head)
		q->tail = NULL;
	char *text = json_dumps(items, JSON_COMPACT);
	json_decref(items);
	const char *params[] = { q->event_id, text };
	if (text && ev->api->db_query_prepared(
	                ev->plugin, "reg_batch",
	                "SELECT idx, outcome, body, notices FROM events_register_batch($1::uuid, "
	                "$2::jsonb)",
	                2, params, batch_done, b) == 0) {
		q->in_flight++;
		ev->api->metric_add(ev->m_batches, 1);
		ev->api->metric_add(ev->m_batched, (double)b->n);
	} else {
		for (int i = 0; i < b->n; i++)
			ev_problem(b->ops[i], 503, NULL,
			           "the database is unavailable; retry shortly", NULL);
		free(b);
	}
	free(text);
	if (q->waiting == 0)
		regq_timer_cancel(q);
	regq_arm(q);
}

/* Queues the registration in op->item behind its event's batch, or sends it now. */
static void register_enqueue(struct ev_op *op)
{
	struct ev_plugin *ev = op->ev;
	struct ev_regq *q = ev->regqs;
	while (q && strcmp(q->event_id, op->event_id) != 0)
		q = q->next;
	if (!q) {
		q = calloc(1, sizeof(*q));
		if (!q) {
			register_single(op);
			return;
		}
		q->ev = ev;
		memcpy(q->event_id, op->event_id, sizeof(q->event_id));
		q->next = ev->regqs;
		ev->regqs = q;
	}
	if (q->tail)
		q->tail->qnext = op;
	else
		q->head = op;
	q->tail = op;
	q->waiting++;
	if (q->in_flight == 0)
		batch_dispatch(q);
	else
		regq_arm(q);
	regq_settle(q);
}

void ev_regq_free_all(struct ev_plugin *ev)
{
	while (ev->regqs) {
		struct ev_regq *q = ev->regqs;
		ev->regqs = q->next;
		regq_timer_cancel(q);
		while (q->head) {
			struct ev_op *op = q->head;
			q->head = op->qnext;
			ev_problem(op, 503, NULL, "the server is shutting down; retry shortly",
			           NULL);
		}
		free(q);
	}
}

/* Checks the request against the event (questions and categories at version), then
 * registers. questions and names are borrowed. */
static void check_and_register(struct ev_op *op, int version, const json_t *questions,
                               const json_t *names)
{
	struct ev_plugin *ev = op->ev;
	struct ev_registration_input in;
	ev_check_registration(op->doc, &in, NULL); /* checked already: read the fields again */
	json_t *errors = json_object();
	ev_check_category(names, in.category, errors);
	json_t *answers = ev_check_answers(questions, in.answers, errors);
	if (!answers || json_object_size(errors) > 0) {
		json_decref(answers);
		if (!op->key) {
			ev_problem(op, 422, "Invalid registration",
			           "the registration is not acceptable", errors);
			return;
		}
		json_decref(op->extra);
		op->extra = errors;
		const char *params[] = { op->who->user_id, op->key, op->text, op->event_id };
		ev_step(
		    op, "reg_prior",
		    "SELECT first_response, request_hash = md5($3::text) AND event_id = $4::uuid "
		    "FROM events_registrations WHERE created_by = $1::uuid AND "
		    "idempotency_key = $2::text",
		    4, params, prior_loaded);
		return;
	}
	json_decref(errors);
	/* The registration as checked: made now or with the event's next batch. */
	const char *email = in.attendee_email ? in.attendee_email : op->who->email;
	json_decref(op->item);
	op->item =
	    json_pack("{s:i, s:s, s:s, s:b, s:s?, s:s, s:s?, s:o, s:s?, s:s}", "version", version,
	              "caller", op->who->user_id, "caller_email", op->who->email, "admin",
	              op->who->is_admin, "name", in.attendee_name, "email", email, "category",
	              in.category, "answers", answers, "key", op->key, "request", op->text);
	if (!op->item) {
		ev_problem(op, 500, NULL, "out of memory", NULL);
		return;
	}
	if (ev->unsafe)
		register_single(op); /* the race tests' switch: each decides on its own */
	else
		register_enqueue(op);
}

static void meta_loaded(struct ev_op *op, const struct sp_db_result *res)
{
	const struct sp_api *api = op->ev->api;
	if (api->db_ntuples(res) != 1) {
		ev_problem(op, 404, NULL, "no such event", NULL);
		return;
	}
	const char *status = api->db_value(res, 0, 1);
	const char *org = api->db_value(res, 0, 4);
	if (strcmp(status, "draft") == 0 && !(org && strcmp(org, "t") == 0)) {
		ev_problem(op, 404, NULL, "no such event", NULL);
		return;
	}
	int version = atoi(api->db_value(res, 0, 0));
	json_t *questions = ev_json_col(op, res, 0, 2);
	json_t *names = ev_json_col(op, res, 0, 3);
	if (!questions || !names) {
		json_decref(questions);
		json_decref(names);
		ev_problem(op, 500, NULL, "out of memory", NULL);
		return;
	}
	if (strcmp(status, "draft") != 0) /* drafts are checked against the database always */
		ev_meta_store(op->ev, op->event_id, version, questions, names);
	check_and_register(op, version, questions, names);
	json_decref(questions);
	json_decref(names);
}

static void register_attempt(struct ev_op *op)
{
	const struct ev_meta *m = ev_meta_find(op->ev, op->event_id);
	if (m) {
		check_and_register(op, m->version, m->questions, m->names);
		return;
	}
	const char *params[] = { op->event_id, op->who->user_id, ev_admin_param(op) };
	ev_step(op, "reg_meta",
	        "SELECT e.version, e.status, e.questions, coalesce((SELECT jsonb_agg(c.name "
	        "ORDER BY c.position) FROM events_categories c WHERE c.event_id = e.id), '[]'), "
	        "events_is_organiser(e.id, $2::uuid, $3::boolean) "
	        "FROM events_events e WHERE e.id = $1::uuid",
	        3, params, meta_loaded);
}

static void post_registration(struct sp_request *req, void *state)
{
	struct ev_plugin *ev = state;
	const struct sp_api *api = ev->api;
	char id[40];
	if (!ev_path_uuid(req, api, "id", id, "event"))
		return;
	const char *key = api->req_header(req, "Idempotency-Key");
	if (key && !ev_valid_idempotency_key(key)) {
		api->reply_problem(req, 400, "Bad Idempotency-Key",
		                   "Idempotency-Key must be 1 to 200 visible ASCII characters",
		                   NULL);
		return;
	}
	/* The body is optional: no body registers the caller without answers. */
	json_t *body = NULL;
	if (ev_has_body(ev, req)) {
		body = api->req_json(req);
		if (!body)
			return;
	}
	json_t *errors = json_object();
	struct ev_registration_input in;
	if (body && !ev_check_registration(body, &in, errors)) {
		api->reply_problem(req, 422, "Invalid registration",
		                   "the body does not describe a registration", errors);
		return;
	}
	json_decref(errors);
	struct ev_op *op = ev_op_new(ev, req);
	if (!op)
		return;
	memcpy(op->event_id, id, sizeof(id));
	op->doc = body ? json_incref(body) : json_object();
	/* What identifies "the same request" for the Idempotency-Key: event and body. */
	char *canon = json_dumps(op->doc, JSON_COMPACT | JSON_SORT_KEYS);
	size_t n = canon ? strlen(canon) + sizeof(op->event_id) + 2 : 0;
	op->text = canon ? malloc(n) : NULL;
	if (op->text)
		snprintf(op->text, n, "%s\n%s", id, canon);
	free(canon);
	if (key) {
		size_t kn = strlen(key) + 1;
		op->key = malloc(kn);
		if (op->key)
			memcpy(op->key, key, kn);
	}
	if (!op->text || (key && !op->key)) {
		ev_problem(op, 500, NULL, "out of memory", NULL);
		return;
	}
	register_attempt(op);
}

/* ---- DELETE /v1/events/{id}/registrations/{rid} ---- */

static void cancelled(struct ev_op *op, const char *outcome, json_t *body)
{
	if (strcmp(outcome, "cancelled") == 0 || strcmp(outcome, "unchanged") == 0)
		ev_reply(op, 200, json_incref(body));
	else if (strcmp(outcome, "not_found") == 0)
		ev_problem(op, 404, NULL, "no such registration", NULL);
	else if (strcmp(outcome, "closed") == 0)
		ev_problem(op, 409, "Event closed",
		           "the event is closed: ask an organiser to cancel the registration",
		           NULL);
	else
		ev_problem(op, 500, NULL, "an internal error occurred", NULL);
}

static void cancel_registration(struct sp_request *req, void *state)
{
	struct ev_plugin *ev = state;
	char id[40], rid[40];
	if (!ev_path_uuid(req, ev->api, "id", id, "event") ||
	    !ev_path_uuid(req, ev->api, "rid", rid, "registration"))
		return;
	struct ev_op *op = ev_op_new(ev, req);
	if (!op)
		return;
	const char *params[] = { id, rid, op->who->user_id, ev_admin_param(op) };
	ev_call(op, "reg_cancel",
	        "SELECT outcome, body, notices FROM events_cancel($1::uuid, $2::uuid, $3::uuid, "
	        "$4::boolean)",
	        4, params, cancelled);
}

/* ---- GET /v1/events/{id}/registrations/{rid} ---- */

static void got_registration(struct ev_op *op, const struct sp_db_result *res)
{
	const char *allowed = op->ev->api->db_value(res, 0, 1);
	if (op->ev->api->db_ntuples(res) != 1 || !allowed || strcmp(allowed, "t") != 0) {
		ev_problem(op, 404, NULL, "no such registration", NULL);
		return;
	}
	ev_reply(op, 200, ev_json_col(op, res, 0, 0));
}

static void get_registration(struct sp_request *req, void *state)
{
	struct ev_plugin *ev = state;
	char id[40], rid[40];
	if (!ev_path_uuid(req, ev->api, "id", id, "event") ||
	    !ev_path_uuid(req, ev->api, "rid", rid, "registration"))
		return;
	struct ev_op *op = ev_op_new(ev, req);
	if (!op)
		return;
	const char *params[] = { id, rid, op->who->user_id, ev_admin_param(op) };
	ev_step(op, "reg_get",
	        "SELECT events_reg_json(r, events_waitlist_position(r)), "
	        "r.user_id IS NOT DISTINCT FROM $3::uuid OR events_is_organiser(r.event_id, "
	        "$3::uuid, $4::boolean) FROM events_registrations r "
	        "WHERE r.id = $2::uuid AND r.event_id = $1::uuid",
	        4, params, got_registration);
}

/* ---- GET /v1/events/{id}/registrations (organisers; JSON or CSV) ---- */

static void regs_listed(struct ev_op *op, const struct sp_db_result *res)
{
	const struct sp_api *api = op->ev->api;
	int n = api->db_ntuples(res);
	json_t *items = json_array();
	for (int i = 0; i < n && (op->csv || i < op->limit); i++)
		json_array_append_new(items, ev_json_col(op, res, i, 0));
	if (op->csv) {
		char *csv = ev_csv_registrations(op->extra, items);
		json_decref(items);
		if (!csv) {
			ev_problem(op, 500, NULL, "out of memory", NULL);
			return;
		}
		ev_reply_raw(op, 200, "text/csv; charset=utf-8", csv, strlen(csv));
		free(csv);
		return;
	}
	char *next = NULL;
	if (n > op->limit) {
		json_t *pos = json_pack("[s]", api->db_value(res, op->limit - 1, 1));
		next = ev_cursor_encode(pos);
		json_decref(pos);
	}
	json_t *body = json_pack("{s:o, s:s?}", "items", items, "next_cursor", next);
	free(next);
	ev_reply(op, 200, body);
}

/* The list's filters, kept in op->doc between the two queries. */
static void regs_access(struct ev_op *op, const struct sp_db_result *res)
{
	const struct sp_api *api = op->ev->api;
	const char *status = api->db_ntuples(res) == 1 ? api->db_value(res, 0, 0) : NULL;
	const char *org = status ? api->db_value(res, 0, 1) : NULL;
	bool organiser = org && strcmp(org, "t") == 0;
	if (!status || (strcmp(status, "draft") == 0 && !organiser)) {
		ev_problem(op, 404, NULL, "no such event", NULL);
		return;
	}
	if (!organiser) {
		ev_problem(op, 403, NULL,
		           "only the event's organisers and admins see its attendees", NULL);
		return;
	}
	op->extra = ev_json_col(op, res, 0, 2); /* questions: the CSV's answer columns */
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", op->limit + 1);
	const json_t *f = op->doc;
#define F(k) json_string_value(json_object_get(f, k))
	const char *params[] = { op->event_id,        F("status"),
		                 F("category"),       F("q"),
		                 F("checked_in"),     F("after") ? F("after") : "0",
		                 op->csv ? NULL : lim };
#undef F
	ev_step(op, "reg_list",
	        "WITH w AS (SELECT id, row_number() OVER (ORDER BY seq) AS pos "
	        "FROM events_registrations WHERE event_id = $1::uuid AND status = 'waitlisted') "
	        "SELECT events_reg_json(r, w.pos), r.seq::text FROM events_registrations r "
	        "LEFT JOIN w ON w.id = r.id WHERE r.event_id = $1::uuid "
	        "AND ($2::text IS NULL OR r.status = $2::text) "
	        "AND ($3::text IS NULL OR r.category = $3::text) "
	        "AND ($4::text IS NULL OR r.attendee_name ILIKE $4::text "
	        "OR r.attendee_email ILIKE $4::text) "
	        "AND ($5::boolean IS NULL OR (r.checked_in_at IS NOT NULL) = $5::boolean) "
	        "AND r.seq > $6::bigint ORDER BY r.seq LIMIT $7::int",
	        7, params, regs_listed);
}

/* Whether the client asked for CSV (?format=csv, or Accept naming text/csv). -1 for a
 * bad format. */
static int wants_csv(struct ev_plugin *ev, struct sp_request *req)
{
	const char *format = ev->api->req_query(req, "format");
	if (format)
		return strcmp(format, "csv") == 0 ? 1 : strcmp(format, "json") == 0 ? 0 : -1;
	const char *accept = ev->api->req_header(req, "Accept");
	return accept && strstr(accept, "text/csv") ? 1 : 0;
}

static void list_registrations(struct sp_request *req, void *state)
{
	struct ev_plugin *ev = state;
	const struct sp_api *api = ev->api;
	char id[40];
	if (!ev_path_uuid(req, api, "id", id, "event"))
		return;
	int csv = wants_csv(ev, req);
	const char *status = api->req_query(req, "status");
	const char *category = api->req_query(req, "category");
	const char *q = api->req_query(req, "q");
	const char *checked = api->req_query(req, "checked_in");
	const char *limit = api->req_query(req, "limit");
	const char *cursor = api->req_query(req, "cursor");
	const char *problem = NULL;
	long lim = PAGE_DEFAULT;
	json_t *pos = NULL;
	if (csv < 0)
		problem = "format must be json or csv";
	else if (status && strcmp(status, "confirmed") && strcmp(status, "waitlisted") &&
	         strcmp(status, "cancelled"))
		problem = "status must be confirmed, waitlisted or cancelled";
	else if (checked && strcmp(checked, "true") && strcmp(checked, "false"))
		problem = "checked_in must be true or false";
	else if (q && strlen(q) > 200)
		problem = "q must be at most 200 characters";
	else if (category && strlen(category) > 400)
		problem = "category is too long";
	if (!problem && limit) {
		char *end;
		lim = strtol(limit, &end, 10);
		if (!*limit || *end || lim < 1 || lim > PAGE_MAX)
			problem = "limit must be an integer from 1 to 500";
	}
	if (!problem && cursor && *cursor) {
		pos = ev_cursor_decode(cursor, 1);
		const char *s = pos ? json_string_value(json_array_get(pos, 0)) : NULL;
		if (!s || !*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 18)
			problem = "cursor is not valid; use next_cursor from a previous page";
	}
	if (problem) {
		json_decref(pos);
		api->reply_problem(req, 400, "Bad query parameter", problem, NULL);
		return;
	}
	struct ev_op *op = ev_op_new(ev, req);
	if (!op) {
		json_decref(pos);
		return;
	}
	memcpy(op->event_id, id, sizeof(id));
	op->csv = csv == 1;
	op->limit = (int)lim;
	char *pattern = q && *q ? ev_like_pattern(q) : NULL;
	op->doc = json_pack("{s:s?, s:s?, s:s?, s:s?, s:O?}", "status", status, "category",
	                    category, "q", pattern, "checked_in", checked, "after",
	                    pos && !op->csv ? json_array_get(pos, 0) : NULL);
	free(pattern);
	json_decref(pos);
	if (!op->doc) {
		ev_problem(op, 500, NULL, "out of memory", NULL);
		return;
	}
	const char *params[] = { id, op->who->user_id, ev_admin_param(op) };
	ev_step(op, "reg_access",
	        "SELECT e.status, events_is_organiser(e.id, $2::uuid, $3::boolean), e.questions "
	        "FROM events_events e WHERE e.id = $1::uuid",
	        3, params, regs_access);
}

/* ---- GET /v1/me/registrations ---- */

static void mine_listed(struct ev_op *op, const struct sp_db_result *res)
{
	const struct sp_api *api = op->ev->api;
	int n = api->db_ntuples(res);
	json_t *items = json_array();
	for (int i = 0; i < n && i < op->limit; i++)
		json_array_append_new(items, ev_json_col(op, res, i, 0));
	char *next = NULL;
	if (n > op->limit) {
		json_t *pos = json_pack("[ss]", api->db_value(res, op->limit - 1, 1),
		                        api->db_value(res, op->limit - 1, 2));
		next = ev_cursor_encode(pos);
		json_decref(pos);
	}
	json_t *body = json_pack("{s:o, s:s?}", "items", items, "next_cursor", next);
	free(next);
	ev_reply(op, 200, body);
}

static void my_registrations(struct sp_request *req, void *state)
{
	struct ev_plugin *ev = state;
	const struct sp_api *api = ev->api;
	const char *status = api->req_query(req, "status");
	const char *limit = api->req_query(req, "limit");
	const char *cursor = api->req_query(req, "cursor");
	const char *problem = NULL;
	long lim = PAGE_DEFAULT;
	json_t *pos = NULL;
	if (status && strcmp(status, "confirmed") && strcmp(status, "waitlisted") &&
	    strcmp(status, "cancelled"))
		problem = "status must be confirmed, waitlisted or cancelled";
	if (!problem && limit) {
		char *end;
		lim = strtol(limit, &end, 10);
		if (!*limit || *end || lim < 1 || lim > PAGE_MAX)
			problem = "limit must be an integer from 1 to 500";
	}
	if (!problem && cursor && *cursor) {
		pos = ev_cursor_decode(cursor, 2);
		if (!pos || !ev_valid_uuid(json_string_value(json_array_get(pos, 1))))
			problem = "cursor is not valid; use next_cursor from a previous page";
	}
	if (problem) {
		json_decref(pos);
		api->reply_problem(req, 400, "Bad query parameter", problem, NULL);
		return;
	}
	struct ev_op *op = ev_op_new(ev, req);
	if (!op) {
		json_decref(pos);
		return;
	}
	op->limit = (int)lim;
	op->extra = pos;
	char l[16];
	snprintf(l, sizeof(l), "%ld", lim + 1);
	const char *params[] = { op->who->user_id, status,
		                 pos ? json_string_value(json_array_get(pos, 0)) : NULL,
		                 pos ? json_string_value(json_array_get(pos, 1)) : NULL, l };
	ev_step(op, "reg_mine",
	        "SELECT events_reg_json(r, events_waitlist_position(r)) || jsonb_build_object("
	        "'event', jsonb_build_object('id', e.id, 'title', e.title, 'starts_at', "
	        "events_ts(e.starts_at), 'ends_at', events_ts(e.ends_at), 'timezone', e.timezone, "
	        "'venue', e.venue, 'online_url', e.online_url, 'status', e.status)), "
	        "r.created_at::text, r.id::text FROM events_registrations r "
	        "JOIN events_events e ON e.id = r.event_id WHERE r.user_id = $1::uuid "
	        "AND ($2::text IS NULL OR r.status = $2::text) AND ($3::timestamptz IS NULL OR "
	        "(r.created_at, r.id) > ($3::timestamptz, $4::uuid)) "
	        "ORDER BY r.created_at, r.id LIMIT $5::int",
	        5, params, mine_listed);
}

/* ---- check-in ---- */

static void checked_in(struct ev_op *op, const char *outcome, json_t *body)
{
	char detail[160];
	if (strcmp(outcome, "checked_in") == 0) {
		ev_reply(op, 200, json_incref(body));
	} else if (strcmp(outcome, "already") == 0) {
		const char *at = json_string_value(json_object_get(body, "checked_in_at"));
		snprintf(detail, sizeof(detail), "already checked in at %s", at ? at : "?");
		ev_problem(op, 409, "Already checked in", detail,
		           json_pack("{s:s}", "checked_in_at", at ? at : ""));
	} else if (strcmp(outcome, "not_found") == 0) {
		ev_problem(op, 404, NULL, "no registration matches", NULL);
	} else if (strcmp(outcome, "code_mismatch") == 0) {
		ev_problem(op, 422, "Wrong check-in code",
		           "the code does not match the registration",
		           json_pack("{s:s}", "code", "does not match this registration"));
	} else if (strcmp(outcome, "not_confirmed") == 0) {
		snprintf(detail, sizeof(detail),
		         "the registration is %s: only confirmed attendees check in",
		         json_string_value(json_object_get(body, "status")));
		ev_problem(op, 409, "Not confirmed", detail, NULL);
	} else if (strcmp(outcome, "forbidden") == 0) {
		ev_problem(op, 403, NULL, "only the event's organisers and admins check people in",
		           NULL);
	} else if (strcmp(outcome, "not_open") == 0) {
		ev_problem(op, 409, "Event not published", "a draft event has no check-in", NULL);
	} else {
		ev_problem(op, 500, NULL, "an internal error occurred", NULL);
	}
}

/* Reads an optional {code} body into code; answers 422/400 and returns false when bad. */
static bool code_body(struct ev_plugin *ev, struct sp_request *req, bool required, char *code)
{
	const struct sp_api *api = ev->api;
	code[0] = '\0';
	if (!ev_has_body(ev, req)) {
		if (required)
			api->reply_problem(req, 422, "Invalid check-in", "the code is missing",
			                   json_pack("{s:s}", "code", "is required"));
		return !required;
	}
	json_t *body = api->req_json(req);
	if (!body)
		return false;
	json_t *errors = json_object();
	if (!json_is_object(body)) {
		ev_error(errors, "", "the body must be a JSON object {code}");
	} else {
		const char *key;
		json_t *v;
		json_object_foreach(body, key, v)
		{
			if (strcmp(key, "code") != 0)
				ev_error(errors, key, "unknown field");
		}
		json_t *c = json_object_get(body, "code");
		if (!c && required)
			ev_error(errors, "code", "is required");
		else if (c && !ev_normalize_code(json_string_value(c), code))
			ev_error(errors, "code", "must be the 10-character check-in code");
	}
	if (json_object_size(errors) > 0) {
		api->reply_problem(req, 422, "Invalid check-in", "the body is not acceptable",
		                   errors);
		return false;
	}
	json_decref(errors);
	return true;
}

static void checkin(struct sp_request *req, struct ev_plugin *ev, const char *event_id,
                    const char *rid, const char *code)
{
	struct ev_op *op = ev_op_new(ev, req);
	if (!op)
		return;
	const char *params[] = { event_id, rid, code && *code ? code : NULL, op->who->user_id,
		                 ev_admin_param(op) };
	ev_call(op, "reg_checkin",
	        "SELECT outcome, body, notices FROM events_checkin($1::uuid, $2::uuid, $3::text, "
	        "$4::uuid, $5::boolean)",
	        5, params, checked_in);
}

static void checkin_registration(struct sp_request *req, void *state)
{
	struct ev_plugin *ev = state;
	const struct sp_api *api = ev->api;
	char id[40], code[EV_CODE_LEN + 1], path_code[EV_CODE_LEN + 1];
	if (!ev_path_uuid(req, api, "id", id, "event"))
		return;
	/* {rid} is a registration id, or the check-in code itself (a typed code). */
	const char *rid = api->req_param(req, "rid");
	bool by_id = ev_valid_uuid(rid);
	if (!by_id && !ev_normalize_code(rid, path_code)) {
		api->reply_problem(req, 404, NULL, "no such registration", NULL);
		return;
	}
	if (!code_body(ev, req, false, code))
		return;
	if (!by_id && code[0] && strcmp(code, path_code) != 0) {
		api->reply_problem(req, 422, "Wrong check-in code",
		                   "the code in the body differs from the one in the path",
		                   json_pack("{s:s}", "code", "does not match the path"));
		return;
	}
	checkin(req, ev, id, by_id ? rid : NULL, by_id ? code : path_code);
}

static void checkin_by_code(struct sp_request *req, void *state)
{
	struct ev_plugin *ev = state;
	char id[40], code[EV_CODE_LEN + 1];
	if (!ev_path_uuid(req, ev->api, "id", id, "event") || !code_body(ev, req, true, code))
		return;
	checkin(req, ev, id, NULL, code);
}

/* ---- routes ---- */

#define REGISTRATION_IN_SCHEMA                                                                     \
	"{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{"                     \
	"\"category\":{\"type\":[\"string\",\"null\"]},"                                           \
	"\"answers\":{\"type\":\"object\"},"                                                       \
	"\"attendee\":{\"type\":\"object\",\"required\":[\"email\"],\"properties\":{"              \
	"\"name\":{\"type\":\"string\"},\"email\":{\"type\":\"string\"}}}}}"

#define REGISTRATION_SCHEMA                                                                        \
	"{\"type\":\"object\",\"required\":[\"id\",\"status\",\"waitlist_position\",\"category\"," \
	"\"attendee\",\"checkin_code\",\"created_at\"],\"properties\":{"                           \
	"\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"                                        \
	"\"event_id\":{\"type\":\"string\",\"format\":\"uuid\"},"                                  \
	"\"status\":{\"enum\":[\"confirmed\",\"waitlisted\",\"cancelled\"]},"                      \
	"\"waitlist_position\":{\"type\":[\"integer\",\"null\"]},"                                 \
	"\"category\":{\"type\":[\"string\",\"null\"]},"                                           \
	"\"attendee\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"        \
	"\"email\":{\"type\":\"string\"}}},"                                                       \
	"\"answers\":{\"type\":\"object\"},\"checkin_code\":{\"type\":\"string\"},"                \
	"\"checked_in_at\":{\"type\":[\"string\",\"null\"]},"                                      \
	"\"created_at\":{\"type\":\"string\",\"format\":\"date-time\"}}}"

#define LIST_SCHEMA                                                                                \
	"{\"type\":\"object\",\"required\":[\"items\",\"next_cursor\"],\"properties\":{"           \
	"\"items\":{\"type\":\"array\",\"items\":" REGISTRATION_SCHEMA "},"                        \
	"\"next_cursor\":{\"type\":[\"string\",\"null\"]}}}"

#define CODE_SCHEMA                                                                                \
	"{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{"                     \
	"\"code\":{\"type\":\"string\"}}}"

static const struct sp_route routes[] = {
	{ "POST", "/v1/events/{id}/registrations", SP_ACCESS_USER, post_registration,
	  "Register (the caller, or someone else for organisers); honours Idempotency-Key",
	  REGISTRATION_IN_SCHEMA, REGISTRATION_SCHEMA },
	{ "GET", "/v1/events/{id}/registrations", SP_ACCESS_USER, list_registrations,
	  "The event's registrations (organisers): JSON, or CSV with Accept: text/csv or "
	  "?format=csv",
	  NULL, LIST_SCHEMA },
	{ "GET", "/v1/events/{id}/registrations/{rid}", SP_ACCESS_USER, get_registration,
	  "One registration (its attendee or the organisers)", NULL, REGISTRATION_SCHEMA },
	{ "DELETE", "/v1/events/{id}/registrations/{rid}", SP_ACCESS_USER, cancel_registration,
	  "Cancel a registration; the first waitlisted person with room is promoted", NULL,
	  REGISTRATION_SCHEMA },
	{ "POST", "/v1/events/{id}/registrations/{rid}/checkin", SP_ACCESS_USER,
	  checkin_registration,
	  "Check an attendee in (organisers); {rid} may be the check-in code; 409 when repeated",
	  CODE_SCHEMA, REGISTRATION_SCHEMA },
	{ "POST", "/v1/events/{id}/checkin", SP_ACCESS_USER, checkin_by_code,
	  "Check an attendee in by check-in code (organisers; door scanners)", CODE_SCHEMA,
	  REGISTRATION_SCHEMA },
	{ "GET", "/v1/me/registrations", SP_ACCESS_USER, my_registrations,
	  "The caller's registrations, with their events", NULL, LIST_SCHEMA },
};

int ev_add_registration_routes(struct ev_plugin *ev)
{
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (ev->api->route_add(ev->plugin, &routes[i]) < 0)
			return -1;
	return 0;
}
