/* routes.h — the core's own HTTP routes: health, readiness, metrics, OpenAPI,
 * plugins and their settings. */
#ifndef SP_CORE_ROUTES_H
#define SP_CORE_ROUTES_H

struct sp_core;

/* Registers the core routes in core->router; returns 0 or -1. */
int sp_routes_register(struct sp_core *core);
/* Fetches stored plugin settings again and applies them (after a NOTIFY). */
void sp_routes_listen_settings(struct sp_core *core);
/* With several workers: publishes this worker's metrics for the others' /metrics, now
 * and once a second. */
void sp_routes_publish_metrics(struct sp_core *core);

#define SP_SETTINGS_CHANNEL "sp_settings"

#endif
