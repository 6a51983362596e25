/* webhook_receiver.c — the receiving end of the webhook benchmark: bare libevent evhttp
 * answering every POST with 200 {} and counting them (requests, body bytes, distinct
 * event ids are not tracked: the count is what the benchmark waits for). GET /count
 * answers {"count": n, "bytes": b, "first_ms": t0, "last_ms": t1} with monotonic
 * milliseconds of the first and last POST; POST /reset zeroes the counters.
 *
 *   webhook_receiver PORT_FILE
 *
 * Listens on 127.0.0.1 on a free port, writes the port to PORT_FILE once it listens,
 * and runs until SIGTERM or SIGINT. */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>

static unsigned long long count, bytes;
static double first_ms, last_ms;

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void reply(struct evhttp_request *req, const char *text)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	evbuffer_add(out, text, strlen(text));
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  "application/json");
	evhttp_send_reply(req, 200, "OK", NULL);
}

static void request_cb(struct evhttp_request *req, void *arg)
{
	const char *uri = evhttp_request_get_uri(req);
	if (evhttp_request_get_command(req) == EVHTTP_REQ_GET && strcmp(uri, "/count") == 0) {
		char text[256];
		snprintf(text, sizeof(text),
		         "{\"count\":%llu,\"bytes\":%llu,\"first_ms\":%.3f,\"last_ms\":%.3f}",
		         count, bytes, first_ms, last_ms);
		reply(req, text);
		return;
	}
	if (evhttp_request_get_command(req) == EVHTTP_REQ_POST && strcmp(uri, "/reset") == 0) {
		count = bytes = 0;
		first_ms = last_ms = 0;
		reply(req, "{}");
		return;
	}
	last_ms = now_ms();
	if (count++ == 0)
		first_ms = last_ms;
	bytes += evbuffer_get_length(evhttp_request_get_input_buffer(req));
	reply(req, "{}");
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

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s PORT_FILE\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	struct event_base *base = event_base_new();
	struct evhttp *http = base ? evhttp_new(base) : NULL;
	if (!http) {
		fprintf(stderr, "webhook_receiver: cannot create the event loop\n");
		return 1;
	}
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	evhttp_set_gencb(http, request_cb, NULL);
	struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
	if (!bound || write_port(argv[1], evhttp_bound_socket_get_fd(bound)) < 0) {
		fprintf(stderr, "webhook_receiver: cannot listen on 127.0.0.1\n");
		return 1;
	}
	struct event *term = evsignal_new(base, SIGTERM, stop_cb, base);
	struct event *intr = evsignal_new(base, SIGINT, stop_cb, base);
	event_add(term, NULL);
	event_add(intr, NULL);
	event_base_dispatch(base);
	event_free(term);
	event_free(intr);
	evhttp_free(http);
	event_base_free(base);
	return 0;
}
