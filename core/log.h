/* log.h — structured (logfmt) logging to stderr with levels and request context. */
#ifndef SP_CORE_LOG_H
#define SP_CORE_LOG_H

#include <spearhead/plugin.h>
#include <stdarg.h>

/* Current level; messages above it are dropped. */
void sp_log_set_level(enum sp_log_level level);
enum sp_log_level sp_log_get_level(void);
/* Parses "error|warn|info|debug"; returns 0 or -1. */
int sp_log_parse_level(const char *name, enum sp_log_level *out);
const char *sp_log_level_name(enum sp_log_level level);
/* Context added to every line while set (borrowed; caller keeps it alive):
 * the request id being handled and the plugin running. */
void sp_log_set_context(const char *request_id, const char *plugin);
void sp_log_get_context(const char **request_id, const char **plugin);
/* While attached to a worker's event loop, info and debug lines are written together
 * once per loop pass; detach (or flush) before the loop goes and before exiting. */
struct event_base;
void sp_log_attach(struct event_base *base);
void sp_log_detach(void);
void sp_log_flush(void);
/* Identifies the process in multi-worker mode (0 = master / single). */
void sp_log_set_worker(int worker);

void sp_log(enum sp_log_level level, const char *fmt, ...) SP_PRINTF(2, 3);
void sp_logv(enum sp_log_level level, const char *plugin, const char *fmt, va_list ap);
/* One access line: method, path, status, duration, request id. */
void sp_log_access(const char *method, const char *path, int status, double ms, const char *rid,
                   const char *peer);

#define sp_error(...) sp_log(SP_LOG_ERROR, __VA_ARGS__)
#define sp_warn(...)  sp_log(SP_LOG_WARN, __VA_ARGS__)
#define sp_info(...)  sp_log(SP_LOG_INFO, __VA_ARGS__)
#define sp_debug(...) sp_log(SP_LOG_DEBUG, __VA_ARGS__)

#endif
