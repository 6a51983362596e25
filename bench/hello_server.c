/* hello_server.c — the "hello JSON" ceiling: bare libevent evhttp answering every request
 * with {"status":"ok"}. One process, one event loop, nothing else (no routing, no JSON
 * library, no logging): what evhttp alone costs on this machine.
 *
 *   hello_server PORT_FILE
 *
 * Listens on 127.0.0.1 on a free port, writes the port number to PORT_FILE once it
 * listens, and runs until SIGTERM or SIGINT.
 */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>

static const char body[] = "{\"status\":\"ok\"}";

static void hello_cb(struct evhttp_request *req, void *arg)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	evbuffer_add_reference(out, body, sizeof(body) - 1, NULL, NULL);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  "application/json");
	evhttp_send_reply(req, 200, "OK", NULL);
}

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopexit(arg, NULL);
}

/* Writes the bound port to path (via a temporary file and rename, so that a reader never
 * sees a partial number). */
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
		fprintf(stderr, "hello_server: cannot create the event loop\n");
		return 1;
	}
	evhttp_set_gencb(http, hello_cb, NULL);
	struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
	if (!bound) {
		fprintf(stderr, "hello_server: cannot listen on 127.0.0.1\n");
		return 1;
	}
	if (write_port(argv[1], evhttp_bound_socket_get_fd(bound)) < 0) {
		perror("hello_server: port file");
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
