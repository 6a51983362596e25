/* webhook_client.c — the ceiling of the webhook benchmark: a bare libevent HTTP client
 * posting N webhook-shaped JSON bodies (the same size and headers as Spearhead's
 * deliveries, without database, signing or bookkeeping) over C keep-alive connections,
 * each sending its next request when the previous one is answered.
 *
 *   webhook_client PORT N C
 *
 * Prints "sent=N ok=M seconds=S" and exits 0 when every answer was 2xx. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>

struct conn {
	struct evhttp_connection *http;
};

static struct event_base *base;
static long total, sent, answered, good;
static int port;

static void send_next(struct conn *c);

static void done_cb(struct evhttp_request *req, void *arg)
{
	struct conn *c = arg;
	answered++;
	int status = req ? evhttp_request_get_response_code(req) : 0;
	if (status >= 200 && status < 300)
		good++;
	if (answered == total)
		event_base_loopexit(base, NULL);
	else
		send_next(c);
}

static void send_next(struct conn *c)
{
	if (sent >= total)
		return;
	long n = sent++;
	char id[40], body[512], ts[24];
	snprintf(id, sizeof(id), "%08lx-0000-4000-8000-%012lx", n, n);
	snprintf(ts, sizeof(ts), "%ld", (long)time(NULL));
	int len = snprintf(body, sizeof(body),
	                   "{\"id\":\"%s\",\"type\":\"bench.item\",\"created_at\":"
	                   "\"2026-11-23T18:30:39Z\",\"title\":\"Item %ld\",\"data\":{\"n\": %ld}}",
	                   id, n, n);
	struct evhttp_request *req = evhttp_request_new(done_cb, c);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Host", "127.0.0.1");
	evhttp_add_header(h, "Content-Type", "application/json");
	evhttp_add_header(h, "User-Agent", "Spearhead-Webhooks/1.0.0");
	evhttp_add_header(h, "webhook-id", id);
	evhttp_add_header(h, "webhook-timestamp", ts);
	evhttp_add_header(h, "webhook-signature",
	                  "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
	evbuffer_add(evhttp_request_get_output_buffer(req), body, (size_t)len);
	if (evhttp_make_request(c->http, req, EVHTTP_REQ_POST, "/hook") < 0) {
		fprintf(stderr, "webhook_client: cannot send\n");
		event_base_loopexit(base, NULL);
	}
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s PORT N C\n", argv[0]);
		return 2;
	}
	port = atoi(argv[1]);
	total = atol(argv[2]);
	int nconn = atoi(argv[3]);
	if (port <= 0 || total <= 0 || nconn <= 0 || nconn > 4096)
		return 2;
	base = event_base_new();
	struct conn *conns = calloc((size_t)nconn, sizeof(*conns));
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < nconn; i++) {
		conns[i].http =
		    evhttp_connection_base_new(base, NULL, "127.0.0.1", (unsigned short)port);
		send_next(&conns[i]);
	}
	event_base_dispatch(base);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("sent=%ld ok=%ld seconds=%.6f\n", sent, good, s);
	for (int i = 0; i < nconn; i++)
		evhttp_connection_free(conns[i].http);
	free(conns);
	event_base_free(base);
	return good == total ? 0 : 1;
}
