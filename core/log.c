/* log.c — logfmt lines on stderr: ts, level, worker, rid, plugin, msg. Each write()
 * holds whole lines and at most PIPE_BUF bytes, so lines from several workers sharing
 * a pipe never interleave. */
#include "log.h"
#include "util.h"

#include <event2/event.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum sp_log_level current_level = SP_LOG_INFO;
static const char *ctx_rid;
static const char *ctx_plugin;
static int worker_id;

/* In a worker's event loop, info and debug lines (one access line per request) are
 * gathered and written together once per loop pass: a write() per request cost more
 * than the rest of a /health answer. Warnings and errors flush them first and go out
 * at once, so order is kept and nothing important waits. */
static struct event *flush_timer;
static char pending[PIPE_BUF];
static size_t pending_len;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void sp_log_set_level(enum sp_log_level level)
{
	current_level = level;
}

enum sp_log_level sp_log_get_level(void)
{
	return current_level;
}

int sp_log_parse_level(const char *name, enum sp_log_level *out)
{
	for (size_t i = 0; i < SP_ARRAY_LEN(level_names); i++) {
		if (name && strcmp(name, level_names[i]) == 0) {
			*out = (enum sp_log_level)i;
			return 0;
		}
	}
	if (name && strcmp(name, "warning") == 0) {
		*out = SP_LOG_WARN;
		return 0;
	}
	return -1;
}

const char *sp_log_level_name(enum sp_log_level level)
{
	return (unsigned)level < SP_ARRAY_LEN(level_names) ? level_names[level] : "?";
}

void sp_log_set_context(const char *request_id, const char *plugin)
{
	ctx_rid = request_id;
	ctx_plugin = plugin;
}

void sp_log_get_context(const char **request_id, const char **plugin)
{
	*request_id = ctx_rid;
	*plugin = ctx_plugin;
}

void sp_log_set_worker(int worker)
{
	worker_id = worker;
}

/* Appends s quoted for logfmt (escape quote, backslash, control characters). */
static size_t put_quoted(char *buf, size_t pos, size_t cap, const char *s)
{
	if (pos + 1 < cap)
		buf[pos++] = '"';
	for (; s && *s && pos + 6 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[pos++] = '\\';
			buf[pos++] = (char)c;
		} else if (c == '\n') {
			buf[pos++] = '\\';
			buf[pos++] = 'n';
		} else if (c < 0x20 || c == 0x7f) {
			pos += (size_t)snprintf(buf + pos, cap - pos, "\\x%02x", c);
		} else {
			buf[pos++] = (char)c;
		}
	}
	if (pos + 1 < cap)
		buf[pos++] = '"';
	return pos;
}

static size_t put_fmt(char *buf, size_t pos, size_t cap, const char *fmt, ...) SP_PRINTF(4, 5);
static size_t put_fmt(char *buf, size_t pos, size_t cap, const char *fmt, ...)
{
	if (pos >= cap)
		return pos;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf + pos, cap - pos, fmt, ap);
	va_end(ap);
	if (n < 0)
		return pos;
	pos += (size_t)n;
	return pos < cap ? pos : cap - 1;
}

static void write_all(const char *buf, size_t len)
{
	ssize_t ignored = write(STDERR_FILENO, buf, len);
	(void)ignored;
}

void sp_log_flush(void)
{
	if (pending_len)
		write_all(pending, pending_len);
	pending_len = 0;
}

static void on_flush_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sp_log_flush();
}

void sp_log_attach(struct event_base *base)
{
	sp_log_detach();
	flush_timer = evtimer_new(base, on_flush_timer, NULL);
}

void sp_log_detach(void)
{
	sp_log_flush();
	if (flush_timer)
		event_free(flush_timer);
	flush_timer = NULL;
}

static void emit(char *buf, size_t pos, size_t cap, bool deferrable)
{
	if (pos >= cap - 1)
		pos = cap - 2;
	buf[pos++] = '\n';
	if (!deferrable || !flush_timer || pos > sizeof(pending)) {
		sp_log_flush();
		write_all(buf, pos);
		return;
	}
	if (pending_len + pos > sizeof(pending))
		sp_log_flush();
	memcpy(pending + pending_len, buf, pos);
	pending_len += pos;
	if (!evtimer_pending(flush_timer, NULL)) {
		/* A zero timeout runs after the callbacks of this loop pass. */
		static const struct timeval now = { 0, 0 };
		evtimer_add(flush_timer, &now);
	}
}

/* "2026-12-03T06:01:02.345Z": the part up to the seconds is formatted once a second. */
static void put_timestamp(char *buf, size_t cap)
{
	static time_t cached_sec = -1;
	static char cached[24];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != cached_sec) {
		struct tm tm;
		gmtime_r(&ts.tv_sec, &tm);
		strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
		cached_sec = ts.tv_sec;
	}
	snprintf(buf, cap, "%s.%03ldZ", cached, ts.tv_nsec / 1000000L);
}

static size_t put_head(char *buf, size_t cap, const char *level)
{
	char ts[40];
	put_timestamp(ts, sizeof(ts));
	size_t pos = put_fmt(buf, 0, cap, "ts=%s level=%s", ts, level);
	if (worker_id)
		pos = put_fmt(buf, pos, cap, " worker=%d", worker_id);
	return pos;
}

void sp_logv(enum sp_log_level level, const char *plugin, const char *fmt, va_list ap)
{
	if (level > current_level)
		return;
	char msg[2048];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	char buf[4096];
	size_t pos = put_head(buf, sizeof(buf), sp_log_level_name(level));
	if (!plugin)
		plugin = ctx_plugin;
	if (plugin)
		pos = put_fmt(buf, pos, sizeof(buf), " plugin=%s", plugin);
	if (ctx_rid)
		pos = put_fmt(buf, pos, sizeof(buf), " rid=%s", ctx_rid);
	pos = put_fmt(buf, pos, sizeof(buf), " msg=");
	pos = put_quoted(buf, pos, sizeof(buf), msg);
	emit(buf, pos, sizeof(buf), level >= SP_LOG_INFO);
}

void sp_log(enum sp_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sp_logv(level, NULL, fmt, ap);
	va_end(ap);
}

void sp_log_access(const char *method, const char *path, int status, double ms, const char *rid,
                   const char *peer)
{
	if (SP_LOG_INFO > current_level)
		return;
	char buf[4096];
	size_t pos = put_head(buf, sizeof(buf), "info");
	pos = put_fmt(buf, pos, sizeof(buf), " msg=request method=%s path=", method);
	pos = put_quoted(buf, pos, sizeof(buf), path);
	pos = put_fmt(buf, pos, sizeof(buf), " status=%d duration_ms=%.3f rid=%s peer=%s", status,
	              ms, rid ? rid : "-", peer ? peer : "-");
	emit(buf, pos, sizeof(buf), true);
}
