/* test_config.c — defaults, file parsing, environment and flag precedence, errors. */
#include "config.h"
#include "tap.h"

#include <stdlib.h>
#include <unistd.h>

static char path[64];

static void write_file(const char *text)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

int main(void)
{
	char err[512];
	snprintf(path, sizeof(path), "/tmp/sp-test-config-%d.conf", (int)getpid());
	unsetenv("SPEARHEAD_LISTEN");
	unsetenv("SPEARHEAD_WORKERS");

	struct sp_config *c = sp_config_load(NULL, err, sizeof(err));
	ok(c != NULL, "defaults load");
	is_str(c->listen, "127.0.0.1:8080", "default listen");
	is_int(c->max_body_bytes, 1048576, "default body limit");
	is_int(c->json_max_depth, 32, "default JSON depth");
	is_int(c->header_timeout_s, 10, "default head deadline");
	ok(c->migrate_on_start, "migrate on start by default");
	ok(sp_config_validate(c, err, sizeof(err)) == 0, "defaults validate");
	sp_config_free(c);

	write_file("# comment\n; another\n[server]\nlisten = 0.0.0.0:9000\nworkers = 3\n"
	           "[database]\nmigrate_on_start = no\n[plugin.example]\ngreeting = Hi there\n");
	c = sp_config_load(path, err, sizeof(err));
	ok(c != NULL, "file loads (%s)", c ? "" : err);
	is_str(c->listen, "0.0.0.0:9000", "file sets listen");
	is_int(c->workers, 3, "file sets workers");
	ok(!c->migrate_on_start, "boolean 'no'");
	is_str(json_string_value(
	           json_object_get(json_object_get(c->plugin_settings, "example"), "greeting")),
	       "Hi there", "plugin section kept as strings");
	sp_config_free(c);

	setenv("SPEARHEAD_WORKERS", "5", 1);
	c = sp_config_load(path, err, sizeof(err));
	is_int(c->workers, 5, "environment overrides the file");
	ok(sp_config_set(c, "workers", "7", err, sizeof(err)) == 0, "flag sets workers");
	is_int(c->workers, 7, "flag overrides the environment");
	ok(sp_config_set(c, "database_url", "postgresql:///x", err, sizeof(err)) == 0,
	   "section_key names work for flags");
	is_str(c->database_url, "postgresql:///x", "database url set");
	ok(sp_config_set(c, "nope", "1", err, sizeof(err)) < 0, "unknown flag option refused");
	sp_config_free(c);
	unsetenv("SPEARHEAD_WORKERS");

	setenv("SPEARHEAD_WORKERS", "many", 1);
	c = sp_config_load(NULL, err, sizeof(err));
	ok(c == NULL, "bad environment value refused");
	ok(strstr(err, "SPEARHEAD_WORKERS") != NULL, "error names the variable (%s)", err);
	unsetenv("SPEARHEAD_WORKERS");

	write_file("[server]\nlisten = 1.2.3.4:80\nbogus = 1\n");
	c = sp_config_load(path, err, sizeof(err));
	ok(c == NULL, "unknown key refused");
	ok(strstr(err, "bogus") && strstr(err, ":3"), "error names key and line (%s)", err);

	write_file("[server]\nmax_body_bytes = 12\n");
	c = sp_config_load(path, err, sizeof(err));
	ok(c == NULL, "out-of-range value refused");
	ok(strstr(err, "max_body_bytes") != NULL, "error names the option (%s)", err);

	write_file("[server]\nthis is not ini\n");
	c = sp_config_load(path, err, sizeof(err));
	ok(c == NULL, "syntax error refused (%s)", err);

	c = sp_config_load("/nonexistent/sp.conf", err, sizeof(err));
	ok(c == NULL && strstr(err, "/nonexistent/sp.conf"), "missing file named in the error");

	c = sp_config_load(NULL, err, sizeof(err));
	sp_config_set(c, "listen", "nocolon", err, sizeof(err));
	ok(sp_config_validate(c, err, sizeof(err)) < 0, "listen without port refused");
	sp_config_set(c, "listen", "[::1]:8080", err, sizeof(err));
	ok(sp_config_validate(c, err, sizeof(err)) == 0, "IPv6 listen accepted");
	sp_config_set(c, "database_url", "mysql://x", err, sizeof(err));
	ok(sp_config_validate(c, err, sizeof(err)) < 0, "non-PostgreSQL URL refused");
	sp_config_set(c, "database_url", "", err, sizeof(err));
	sp_config_set(c, "trusted_proxies", "10.0.0.0/8, ::1", err, sizeof(err));
	ok(sp_config_validate(c, err, sizeof(err)) == 0, "trusted proxies accepted");
	sp_config_set(c, "trusted_proxies", "10.0.0.0/8, lb.example", err, sizeof(err));
	ok(sp_config_validate(c, err, sizeof(err)) < 0 && strstr(err, "trusted_proxies") &&
	       strstr(err, "lb.example"),
	   "a trusted proxy that is not an address is refused, named: %s", err);
	sp_config_free(c);

	char host[256];
	unsigned port;
	ok(sp_parse_listen("[::1]:80", host, sizeof(host), &port) == 0 && !strcmp(host, "::1") &&
	       port == 80,
	   "parse IPv6 listen");
	ok(sp_parse_listen("h:70000", host, sizeof(host), &port) < 0, "port out of range");
	unlink(path);
	return tap_done();
}
