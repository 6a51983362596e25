/* serve.h — the running core of one worker, and the `serve` command. */
#ifndef SP_CORE_SERVE_H
#define SP_CORE_SERVE_H

#include <stdbool.h>
#include <event2/event.h>
#include <jansson.h>

struct sp_config;
struct sp_db;
struct sp_router;
struct sp_bus;
struct sp_metrics;
struct sp_plugins;
struct sp_server;
struct sp_workpool;
struct sp_jobs;
struct sp_curl;

/* Everything one worker process runs; there is one per process. */
struct sp_core {
	struct event_base *base;
	struct sp_config *cfg; /* owned; replaced on SIGHUP */
	struct sp_db *db;
	struct sp_router *router;
	struct sp_bus *bus;
	struct sp_metrics *metrics;
	struct sp_plugins *plugins;
	struct sp_server *server;
	struct sp_workpool *workpool; /* argon2id off the loop */
	struct sp_jobs *jobs;         /* durable jobs and notification channels */
	struct sp_curl *curl;         /* outgoing transfers of plugins */
	char instance_id[33];         /* random per process: tells our own NOTIFYs apart */
	int worker;                   /* 1..N, or 0 when single-process */
	bool draining;
	json_t *stored_settings;      /* plugin name → settings saved through the API */
	struct event *settings_timer; /* re-reads stored settings (NOTIFY can be missed) */
	struct sp_metrics_share *metrics_share; /* several workers: one /metrics for all */
	struct event *metrics_timer;            /* publishes this worker's metrics there */
};

int sp_cmd_serve(int argc, char **argv);

#endif
