/* serve.c — `spearhead serve`: configuration, database (embedded or URL),
 * migrations, the listening socket, then one worker in-process or N forked workers
 * supervised by a master that forwards signals and restarts crashed workers. */
#include "build-config.h"
#include "serve.h"
#include "api.h"
#include "bus.h"
#include "cli.h"
#include "curl.h"
#include "config.h"
#include "db.h"
#include "demo.h"
#include "loader.h"
#include "log.h"
#include "metrics.h"
#include "metrics_share.h"
#include "migrate.h"
#include "pgembed.h"
#include "router.h"
#include "routes.h"
#include "server.h"
#include "util.h"
#include "identity.h"
#include "jobs.h"
#include "orgs.h"
#include "prefs.h"
#include "topics.h"
#include "workpool.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <libpq-fe.h>

/* ---- shared setup (also used by the other database commands) ---- */

int sp_open_database(const struct sp_config *cfg, struct sp_pgembed **pg, const char **url,
                     char *err, size_t errlen)
{
	*pg = NULL;
	if (cfg->database_url[0]) {
		*url = cfg->database_url;
		return 0;
	}
	*pg = sp_pgembed_start(cfg->state_dir, err, errlen);
	if (!*pg)
		return -1;
	*url = sp_pgembed_url(*pg);
	return 0;
}

int sp_run_migrations(const char *url, struct sp_plugins *plugins, bool retry_failed, int *applied)
{
	char err[1024];
	PGconn *conn = sp_migrate_begin(url, err, sizeof(err));
	if (!conn) {
		sp_error("%s", err);
		return -1;
	}
	int total = 0;
	int n =
	    sp_migrate_component(conn, "core", sp_core_migrations, retry_failed, err, sizeof(err));
	if (n < 0) {
		sp_error("%s", err);
		sp_migrate_end(conn);
		return -1;
	}
	total += n;
	for (size_t i = 0; i < sp_plugins_len(plugins); i++) {
		struct sp_plugin *p = sp_plugins_at(plugins, i);
		const struct sp_plugin_desc *d = sp_plugin_desc(p);
		if (!d || !d->migrations || sp_plugin_status(p) != SP_PLUGIN_LOADED)
			continue;
		char component[128];
		snprintf(component, sizeof(component), "plugin:%s", sp_plugin_name(p));
		n = sp_migrate_component(conn, component, d->migrations, retry_failed, err,
		                         sizeof(err));
		if (n < 0) {
			sp_error("plugin %s is left out: %s", sp_plugin_name(p), err);
			sp_plugin_mark_failed(p, err);
			continue;
		}
		total += n;
	}
	sp_migrate_end(conn);
	if (applied)
		*applied = total;
	return 0;
}

/* Settings stored through the API, read once before the loop starts. */
static json_t *load_stored_settings(const char *url)
{
	json_t *out = json_object();
	const char *keys[] = { "dbname", NULL };
	const char *vals[] = { url, NULL };
	PGconn *conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(conn) == CONNECTION_OK) {
		PGresult *r = PQexec(conn, "SELECT plugin, settings::text FROM sp_plugin_settings");
		if (PQresultStatus(r) == PGRES_TUPLES_OK) {
			for (int i = 0; i < PQntuples(r); i++) {
				json_t *v = json_loads(PQgetvalue(r, i, 1), 0, NULL);
				if (v)
					json_object_set_new(out, PQgetvalue(r, i, 0), v);
			}
		}
		PQclear(r);
	}
	PQfinish(conn);
	return out;
}

/* ---- one worker ---- */

struct worker_ctx {
	struct sp_core *core;
	const char *config_path;
	struct sp_cli_overrides *overrides;
	struct event *sigterm, *sigint, *sighup;
};

static void drained(void *arg)
{
	struct sp_core *core = arg;
	event_base_loopexit(core->base, NULL);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	struct worker_ctx *w = arg;
	if (w->core->draining)
		return;
	sp_info("signal %d: finishing in-flight requests, then stopping", (int)sig);
	w->core->draining = true;
	sp_server_drain(w->core->server, (int)w->core->cfg->shutdown_timeout_s, drained, w->core);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
	struct worker_ctx *w = arg;
	char err[1024];
	struct sp_config *cfg = sp_cli_load_config(w->config_path, w->overrides, err, sizeof(err));
	if (!cfg) {
		sp_error("reload refused, keeping the running configuration: %s", err);
		return;
	}
	struct sp_core *core = w->core;
	sp_server_apply_limits(core->server, cfg);
	sp_config_free(core->cfg);
	core->cfg = cfg;
	sp_plugins_reload_file_settings(core->plugins, cfg);
	for (size_t i = 0; i < sp_plugins_len(core->plugins); i++) {
		struct sp_plugin *p = sp_plugins_at(core->plugins, i);
		if (sp_plugin_status(p) == SP_PLUGIN_RUNNING)
			sp_plugin_apply_settings(p,
			                         sp_api_stored_settings(core, sp_plugin_name(p)));
	}
	/* Said before the new level applies, so it is seen whatever the level. */
	sp_info("configuration reloaded (log level %s)", cfg->log_level);
	enum sp_log_level lvl;
	sp_log_parse_level(cfg->log_level, &lvl);
	sp_log_set_level(lvl);
}

static int run_worker(struct sp_config *cfg, const char *config_path,
                      struct sp_cli_overrides *overrides, const char *db_url,
                      struct sp_plugins *plugins, evutil_socket_t listen_fd, int worker,
                      struct sp_metrics_share *metrics_share)
{
	struct sp_core core = { 0 };
	core.cfg = cfg;
	core.worker = worker;
	core.metrics_share = metrics_share;
	core.plugins = plugins;
	sp_random_hex(core.instance_id, 16);
	sp_log_set_worker(worker);
	struct event_config *ecfg = event_config_new();
	core.base = event_base_new_with_config(ecfg);
	event_config_free(ecfg);
	if (!core.base) {
		sp_error("cannot create the event loop");
		return 1;
	}
	sp_log_attach(core.base);
	struct sp_db_options dbo = {
		.url = db_url,
		.pool_size = (int)cfg->pool_size,
		.queue_timeout_ms = (int)cfg->queue_timeout_ms,
		.statement_timeout_ms = (int)cfg->statement_timeout_ms,
		.lock_timeout_ms = (int)cfg->lock_timeout_ms,
		.application_name = "spearhead",
	};
	int rc = 1;
	core.db = sp_db_new(core.base, &dbo);
	core.router = sp_router_new();
	core.metrics = sp_metrics_new();
	core.bus = sp_bus_new(&core);
	core.stored_settings = load_stored_settings(db_url);
	core.workpool = sp_workpool_new(core.base, (int)cfg->password_threads);
	core.jobs = core.db ? sp_jobs_new(&core) : NULL;
	core.curl = sp_curl_new(core.base);
	if (!core.db || !core.workpool || !core.curl || sp_routes_register(&core) < 0 ||
	    sp_identity_register(&core) < 0 || sp_orgs_register(&core) < 0 ||
	    sp_topics_register(&core) < 0 || sp_jobs_register_routes(&core) < 0 ||
	    sp_prefs_register(&core) < 0)
		goto out;
	sp_plugins_init(plugins, &core);
	core.server = sp_server_new(&core, listen_fd);
	if (!core.server)
		goto out;
	sp_bus_listen(core.bus);
	sp_jobs_start(core.jobs);
	sp_routes_listen_settings(&core);
	sp_routes_publish_metrics(&core);

	struct worker_ctx w = { .core = &core, .config_path = config_path, .overrides = overrides };
	w.sigterm = evsignal_new(core.base, SIGTERM, on_stop_signal, &w);
	w.sigint = evsignal_new(core.base, SIGINT, on_stop_signal, &w);
	w.sighup = evsignal_new(core.base, SIGHUP, on_hup, &w);
	event_add(w.sigterm, NULL);
	event_add(w.sigint, NULL);
	event_add(w.sighup, NULL);
	sp_info("worker ready: %d plugin(s) running, %d left out", sp_plugins_count(plugins, true),
	        sp_plugins_count(plugins, false));

	event_base_dispatch(core.base);

	event_free(w.sigterm);
	event_free(w.sigint);
	event_free(w.sighup);
	rc = 0;
out:
	/* Order matters: the pool fails pending queries first, so their handlers still
	 * find their plugin state and can answer; then plugins go; then HTTP. */
	sp_workpool_free(core.workpool);
	sp_db_free(core.db);
	core.db = NULL;
	if (core.server)
		sp_server_end_streams(core.server); /* streams opened while draining */
	sp_curl_cancel(core.curl, NULL); /* their done callbacks still find the plugins */
	sp_plugins_shutdown(plugins);
	sp_jobs_free(core.jobs);
	sp_curl_free(core.curl);
	if (core.settings_timer)
		event_free(core.settings_timer);
	if (core.metrics_timer)
		event_free(core.metrics_timer);
	sp_server_free(core.server);
	sp_bus_free(core.bus);
	sp_router_free(core.router);
	sp_metrics_free(core.metrics);
	json_decref(core.stored_settings);
	sp_config_free(core.cfg);
	sp_log_detach();
	event_base_free(core.base);
	sp_info("worker stopped");
	return rc;
}

/* ---- master (several workers) ---- */

static pid_t spawn_worker(struct sp_config *cfg, const char *config_path,
                          struct sp_cli_overrides *overrides, const char *db_url,
                          struct sp_plugins *plugins, evutil_socket_t fd, int worker,
                          struct sp_metrics_share *metrics_share)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	sigset_t all;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	char err[512];
	/* The worker owns its own copy of the configuration. */
	struct sp_config *mine = sp_cli_load_config(config_path, overrides, err, sizeof(err));
	if (!mine)
		_exit(1);
	(void)cfg;
	int rc =
	    run_worker(mine, config_path, overrides, db_url, plugins, fd, worker, metrics_share);
	sp_metrics_share_free(metrics_share);
	sp_plugins_free(plugins);
	sp_cli_overrides_free(overrides);
	exit(rc);
}

static int run_master(struct sp_config *cfg, const char *config_path,
                      struct sp_cli_overrides *overrides, const char *db_url,
                      struct sp_plugins *plugins, evutil_socket_t fd, int nworkers)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	pid_t *pids = sp_calloc((size_t)nworkers, sizeof(pid_t));
	uint64_t *started = sp_calloc((size_t)nworkers, sizeof(uint64_t));
	struct sp_metrics_share *metrics_share = sp_metrics_share_new(nworkers);
	for (int i = 0; i < nworkers; i++) {
		pids[i] = spawn_worker(cfg, config_path, overrides, db_url, plugins, fd, i + 1,
		                       metrics_share);
		started[i] = sp_now_us();
	}
	sp_info("master: %d workers started", nworkers);
	bool stopping = false;
	int exit_code = 0;
	for (;;) {
		int alive = 0;
		for (int i = 0; i < nworkers; i++)
			alive += pids[i] > 0;
		if (stopping && alive == 0)
			break;
		struct timespec tick = { 1, 0 };
		siginfo_t si;
		int sig = sigtimedwait(&set, &si, &tick);
		if (sig == SIGTERM || sig == SIGINT) {
			if (!stopping)
				sp_info("master: signal %d, stopping workers", sig);
			stopping = true;
			for (int i = 0; i < nworkers; i++)
				if (pids[i] > 0)
					kill(pids[i], SIGTERM);
		} else if (sig == SIGHUP) {
			sp_info("master: reloading workers");
			for (int i = 0; i < nworkers; i++)
				if (pids[i] > 0)
					kill(pids[i], SIGHUP);
		}
		int status;
		pid_t dead;
		while ((dead = waitpid(-1, &status, WNOHANG)) > 0) {
			for (int i = 0; i < nworkers; i++) {
				if (pids[i] != dead)
					continue;
				pids[i] = 0;
				bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
				if (!clean)
					exit_code = 1;
				if (stopping)
					break;
				sp_error(
				    "worker %d (pid %d) ended unexpectedly (%s %d); restarting",
				    i + 1, (int)dead, WIFSIGNALED(status) ? "signal" : "status",
				    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
				/* Do not spin on a worker that dies at start. */
				if (sp_now_us() - started[i] < 1000000u)
					sleep(1);
				pids[i] = spawn_worker(cfg, config_path, overrides, db_url, plugins,
				                       fd, i + 1, metrics_share);
				started[i] = sp_now_us();
			}
		}
	}
	free(pids);
	free(started);
	sp_metrics_share_free(metrics_share);
	if (stopping)
		exit_code = 0;
	return exit_code;
}

/* ---- the command ---- */

static void serve_usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: spearhead serve [--config FILE] [--listen HOST:PORT] [--state-dir DIR]\n"
	    "                       [--database URL] [--demo] [--workers N] [--port-file FILE]\n"
	    "                       [--log-level LEVEL] [--no-migrate]\n"
	    "\n"
	    "Runs the HTTP/JSON server. Without a database URL, a private PostgreSQL is\n"
	    "created and run in the state directory (unix socket only) and stopped on exit.\n"
	    "Pending migrations are applied first unless --no-migrate is given.\n"
	    "\n"
	    "  --config FILE       configuration file (see `spearhead check-config --defaults`)\n"
	    "  --listen HOST:PORT  address to listen on (default 127.0.0.1:8080; port 0 = any)\n"
	    "  --state-dir DIR     state directory (default ./spearhead-state)\n"
	    "  --database URL      postgresql:// URL of an existing database\n"
	    "  --demo              load the demo cluster data before serving\n"
	    "  --workers N         worker processes (0 = number of CPUs)\n"
	    "  --port-file FILE    write the bound port to FILE once listening\n"
	    "  --log-level LEVEL   error, warn, info or debug\n"
	    "  --no-migrate        do not apply pending migrations at start\n"
	    "\n"
	    "Signals: SIGTERM/SIGINT stop gracefully; SIGHUP reloads the configuration.\n");
}

int sp_cmd_serve(int argc, char **argv)
{
	struct sp_cli_common common;
	static const struct sp_cli_flag extra[] = {
		{ "--listen", "listen" },
		{ "--workers", "workers" },
		{ "--port-file", "port_file" },
		{ "--log-level", "log_level" },
		{ NULL, NULL },
	};
	bool demo = false, no_migrate = false;
	int rc = sp_cli_parse_common(argc, argv, extra, &common, serve_usage);
	if (rc >= 0)
		return rc;
	for (int i = 0; i < common.nrest; i++) {
		if (strcmp(common.rest[i], "--demo") == 0)
			demo = true;
		else if (strcmp(common.rest[i], "--no-migrate") == 0)
			no_migrate = true;
		else {
			fprintf(stderr, "spearhead serve: unknown argument '%s'\n", common.rest[i]);
			serve_usage(stderr);
			sp_cli_common_free(&common);
			return 2;
		}
	}
	char err[1024];
	struct sp_config *cfg =
	    sp_cli_load_config(common.config, common.overrides, err, sizeof(err));
	if (!cfg) {
		fprintf(stderr, "spearhead serve: %s\n", err);
		sp_cli_common_free(&common);
		return 2;
	}
	enum sp_log_level lvl;
	sp_log_parse_level(cfg->log_level, &lvl);
	sp_log_set_level(lvl);
	signal(SIGPIPE, SIG_IGN);

	int exit_code = 1;
	struct sp_pgembed *pg = NULL;
	struct sp_plugins *plugins = NULL;
	evutil_socket_t fd = -1;
	const char *url;
	if (sp_open_database(cfg, &pg, &url, err, sizeof(err)) < 0) {
		sp_error("%s", err);
		goto out;
	}
	char *db_url = sp_strdup(url);
	plugins = sp_plugins_discover(cfg);
	if ((cfg->migrate_on_start && !no_migrate) &&
	    sp_run_migrations(db_url, plugins, false, NULL) < 0) {
		sp_error("refusing to start: the database schema is not in a usable state");
		free(db_url);
		goto out;
	}
	/* Once, before workers fork; loading is idempotent, so every start may do it. */
	if (demo && sp_demo_load(db_url, NULL, true) < 0) {
		sp_error("refusing to start: the demo data set could not be loaded");
		free(db_url);
		goto out;
	}
	unsigned port = 0;
	fd = sp_listen_socket(cfg->listen, &port, err, sizeof(err));
	if (fd < 0) {
		sp_error("%s", err);
		free(db_url);
		goto out;
	}
	if (cfg->port_file[0]) {
		char tmp[4096];
		snprintf(tmp, sizeof(tmp), "%s.tmp", cfg->port_file);
		FILE *f = fopen(tmp, "w");
		if (!f || fprintf(f, "%u\n", port) < 0 || fclose(f) != 0 ||
		    rename(tmp, cfg->port_file) != 0) {
			sp_error("cannot write port file %s: %s", cfg->port_file, strerror(errno));
			free(db_url);
			goto out;
		}
	}
	long nworkers = cfg->workers > 0 ? cfg->workers : sysconf(_SC_NPROCESSORS_ONLN);
	if (nworkers < 1)
		nworkers = 1;
	char host[256];
	unsigned ignored;
	sp_parse_listen(cfg->listen, host, sizeof(host), &ignored);
	sp_info("spearhead %s listening on http://%s:%u/ with %ld worker(s); database %s",
	        PACKAGE_VERSION, host, port, nworkers, pg ? "embedded" : "external");
	if (nworkers == 1) {
		struct sp_config *mine = cfg;
		cfg = NULL; /* the worker owns it now */
		exit_code =
		    run_worker(mine, common.config, common.overrides, db_url, plugins, fd, 0, NULL);
	} else {
		exit_code = run_master(cfg, common.config, common.overrides, db_url, plugins, fd,
		                       (int)nworkers);
	}
	free(db_url);
out:
	if (fd >= 0)
		evutil_closesocket(fd);
	sp_plugins_free(plugins);
	if (pg)
		sp_pgembed_stop(pg);
	sp_config_free(cfg);
	sp_cli_common_free(&common);
	return exit_code;
}
