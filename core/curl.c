/* curl.c — libcurl's multi interface driven by the libevent loop, so plugins make
 * outgoing HTTPS and SMTP requests without blocking: curl tells us which sockets to
 * watch (socket callback) and when to wake it (timer callback); we tell curl when a
 * socket is ready (curl_multi_socket_action) and hand finished transfers back.
 *
 * Only curl's timer callback arms or stops the timer: a done callback may start new
 * transfers, which arm it, inside the very socket_action that reported no transfer
 * running. A socket's event is made once and changed only when what curl waits for
 * changes (a keep-alive connection alternates between writing and reading). */
#include "curl.h"
#include "log.h"
#include "util.h"

#include <stdlib.h>

#include <curl/curl.h>
#include <event2/event.h>

struct transfer {
	struct sp_curl *owner;
	struct sp_plugin *plugin;
	CURL *easy;
	sp_curl_done_fn *done;
	void *arg;
	struct transfer *next, *prev;
};

struct sock {
	struct event *ev;
	curl_socket_t fd;
	short kind; /* the events ev waits for */
};

struct sp_curl {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	struct transfer *transfers;
	int running;
};

static void check_done(struct sp_curl *c)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(c->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		struct transfer *t = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
		CURLcode code = msg->data.result;
		curl_multi_remove_handle(c->multi, msg->easy_handle);
		if (!t)
			continue;
		if (t->prev)
			t->prev->next = t->next;
		else
			c->transfers = t->next;
		if (t->next)
			t->next->prev = t->prev;
		t->done(t->easy, (int)code, t->arg);
		free(t);
	}
}

static void sock_cb_ev(evutil_socket_t fd, short what, void *arg)
{
	struct sp_curl *c = arg;
	int action =
	    (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
	curl_multi_socket_action(c->multi, fd, action, &c->running);
	check_done(c);
}

static void timer_cb_ev(evutil_socket_t fd, short what, void *arg)
{
	struct sp_curl *c = arg;
	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &c->running);
	check_done(c);
}

/* curl: "watch this socket for this" (or stop watching it). */
static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct sp_curl *c = userp;
	struct sock *s = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (s) {
			event_free(s->ev);
			free(s);
			curl_multi_assign(c->multi, fd, NULL);
		}
		return 0;
	}
	short kind = EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) |
	             (what & CURL_POLL_OUT ? EV_WRITE : 0);
	if (!s) {
		s = sp_calloc(1, sizeof(*s));
		s->fd = fd;
		s->ev = event_new(c->base, fd, kind, sock_cb_ev, c);
		curl_multi_assign(c->multi, fd, s);
	} else if (s->kind == kind) {
		return 0;
	} else {
		event_del(s->ev);
		event_assign(s->ev, c->base, fd, kind, sock_cb_ev, c);
	}
	s->kind = kind;
	event_add(s->ev, NULL);
	return 0;
}

/* curl: "call me back in timeout_ms" (-1: no timer). */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct sp_curl *c = userp;
	if (timeout_ms < 0) {
		evtimer_del(c->timer);
		return 0;
	}
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	evtimer_add(c->timer, &tv);
	return 0;
}

struct sp_curl *sp_curl_new(struct event_base *base)
{
	static bool global_done;
	if (!global_done) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			return NULL;
		global_done = true;
	}
	struct sp_curl *c = sp_calloc(1, sizeof(*c));
	c->base = base;
	c->multi = curl_multi_init();
	c->timer = evtimer_new(base, timer_cb_ev, c);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	/* libcurl keeps about 4 idle connections per running transfer: between bursts of
	 * webhook deliveries it would close and reopen most keep-alive connections. */
	curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 256L);
	return c;
}

/* Ends transfers of owner (or all with NULL) with CURLE_ABORTED_BY_CALLBACK. */
void sp_curl_cancel(struct sp_curl *c, struct sp_plugin *owner)
{
	struct transfer *t = c ? c->transfers : NULL;
	while (t) {
		struct transfer *next = t->next;
		if (!owner || t->plugin == owner) {
			curl_multi_remove_handle(c->multi, t->easy);
			if (t->prev)
				t->prev->next = t->next;
			else
				c->transfers = t->next;
			if (t->next)
				t->next->prev = t->prev;
			t->done(t->easy, CURLE_ABORTED_BY_CALLBACK, t->arg);
			free(t);
		}
		t = next;
	}
}

void sp_curl_free(struct sp_curl *c)
{
	if (!c)
		return;
	sp_curl_cancel(c, NULL);
	curl_multi_cleanup(c->multi); /* removes the remaining socket watches */
	event_free(c->timer);
	free(c);
}

int sp_curl_add(struct sp_curl *c, struct sp_plugin *plugin, void *easy, sp_curl_done_fn *done,
                void *arg)
{
	if (!c || !easy || !done)
		return -1;
	struct transfer *t = sp_calloc(1, sizeof(*t));
	t->owner = c;
	t->plugin = plugin;
	t->easy = easy;
	t->done = done;
	t->arg = arg;
	curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
	if (curl_multi_add_handle(c->multi, easy) != CURLM_OK) {
		free(t);
		return -1;
	}
	t->next = c->transfers;
	if (t->next)
		t->next->prev = t;
	c->transfers = t;
	return 0;
}
