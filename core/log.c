/* log.c — logfmt lines on stderr: ts, level, worker, rid, plugin, msg. One write()
 * per line so lines from several workers never interleave. */
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static enum sp_log_level current_level = SP_LOG_INFO;
static const char *ctx_rid;
static const char *ctx_plugin;
static int worker_id;

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

static void emit(char *buf, size_t pos, size_t cap)
{
	if (pos >= cap - 1)
		pos = cap - 2;
	buf[pos++] = '\n';
	ssize_t ignored = write(STDERR_FILENO, buf, pos);
	(void)ignored;
}

static size_t put_head(char *buf, size_t cap, const char *level)
{
	char ts[40];
	sp_rfc3339_now(ts, sizeof(ts));
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
	emit(buf, pos, sizeof(buf));
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
	emit(buf, pos, sizeof(buf));
}
