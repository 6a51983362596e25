/* email.c — the "email" delivery channel: each outbox row's "deliver.email" job renders
 * the notification from templates (plain text and HTML, by language and type), builds
 * a MIME message and hands it to the SMTP relay through libcurl on the event loop.
 * Transient failures (no connection, timeouts, 4xx replies) are retried by the job
 * queue; permanent ones (5xx replies) end the job as dead with the relay's answer. */
#include "mime.h"
#include "render.h"

#include <spearhead/plugin.h>

#include <curl/curl.h>
#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef EMAIL_TEMPLATEDIR /* set by the build: $(pkgdatadir)/email/templates */
#define EMAIL_TEMPLATEDIR "/usr/local/share/spearhead/email/templates"
#endif

extern const struct sp_migration email_migrations[];      /* generated from sql/ */
extern const struct em_builtin email_builtin_templates[]; /* generated from templates/ */

#define TEMPLATE_MAX_BYTES (256 * 1024)
#define TS(col)            "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* The effective settings, checked and prepared. Replaced whole on reload. */
struct config {
	char *url; /* smtp://host:port or smtps://host:port */
	long use_ssl;
	bool verify;
	char *username, *password; /* NULL: no authentication */
	char *from_addr, *from_name, *site_name, *base_url;
	char *unsubscribe_url;  /* shown in non-essential mail */
	char *list_unsubscribe; /* the List-Unsubscribe value */
	char *language;
	json_t *essential; /* type patterns: "x.y", "x.*", "*" */
	json_t *templates; /* "lang/name.part" → text */
	long timeout_s, retry_s;
};

struct email {
	const struct sp_api *api; /* borrowed from the core until shutdown() */
	struct sp_plugin *plugin;
	struct config *cfg;
	struct sp_metric *m_sent, *m_retried, *m_failed;
};

/* One delivery in flight: from the job to the record of the sent mail. */
struct send {
	struct email *email;
	struct sp_job *job;
	char outbox_id[40];
	char recipient[256];
	char message_id[320];
	CURL *curl;
	struct curl_slist *rcpt;
	char *msg; /* the whole message */
	size_t len, off;
	char errbuf[CURL_ERROR_SIZE];
};

/* ---- settings ---- */

static void config_free(struct config *c)
{
	if (!c)
		return;
	free(c->url);
	free(c->username);
	free(c->password);
	free(c->from_addr);
	free(c->from_name);
	free(c->site_name);
	free(c->base_url);
	free(c->unsubscribe_url);
	free(c->list_unsubscribe);
	free(c->language);
	json_decref(c->essential);
	json_decref(c->templates);
	free(c);
}

static const char *str_setting(const json_t *settings, const char *name)
{
	const char *s = json_string_value(json_object_get(settings, name));
	return s ? s : "";
}

static bool has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* An http(s) URL that can stand in a header between angle brackets. */
static bool url_ok(const char *u)
{
	if (strncmp(u, "https://", 8) != 0 && strncmp(u, "http://", 7) != 0)
		return false;
	for (; *u; u++)
		if ((unsigned char)*u <= 0x20 || (unsigned char)*u > 0x7e || strchr("<>\"", *u))
			return false;
	return true;
}

static bool host_ok(const char *h)
{
	if (!*h || strlen(h) > 253)
		return false;
	for (; *h; h++)
		if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') ||
		      (*h >= '0' && *h <= '9') || *h == '.' || *h == '-' || *h == ':'))
			return false;
	return true;
}

static bool pattern_ok(const char *p)
{
	if (strcmp(p, "*") == 0)
		return true;
	size_t n = strlen(p);
	if (n >= 2 && strcmp(p + n - 2, ".*") == 0)
		n -= 2;
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '_' ||
		      p[i] == '.'))
			return false;
	return true;
}

static bool template_file_name(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > 200 || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
		      name[i] == '_' || name[i] == '.' || name[i] == '-'))
			return false;
	const char *dot = strrchr(name, '.');
	return dot && dot != name &&
	       (strcmp(dot, ".subject") == 0 || strcmp(dot, ".txt") == 0 ||
	        strcmp(dot, ".html") == 0);
}

/* Reads one template file into set under key; -1 with err on a file that cannot be
 * read or is not a valid template. */
static int load_file(json_t *set, const char *path, const char *key, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	if (!f || fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > TEMPLATE_MAX_BYTES) {
		snprintf(err, errlen, "template %.200s: cannot read it (or over %d bytes)", path,
		         TEMPLATE_MAX_BYTES);
		if (f)
			fclose(f);
		return -1;
	}
	char *text = calloc(1, (size_t)st.st_size + 1);
	size_t n = text ? fread(text, 1, (size_t)st.st_size, f) : 0;
	fclose(f);
	if (!text || n != (size_t)st.st_size) {
		snprintf(err, errlen, "template %.200s: cannot read it", path);
		free(text);
		return -1;
	}
	char why[160];
	json_t *s = json_string(text); /* NULL unless valid UTF-8 */
	int rc = 0;
	if (!s) {
		snprintf(err, errlen, "template %.200s: not valid UTF-8", path);
		rc = -1;
	} else if (em_template_check(text, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "template %.200s: %s", path, why);
		rc = -1;
	} else {
		json_object_set(set, key, s);
	}
	json_decref(s);
	free(text);
	return rc;
}

/* Templates found under dir/LANG/NAME.PART override the built-in ones. Read once, at
 * start and on reload (this runs on the loop, but only then). */
static int load_dir(json_t *set, const char *dir, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	if (!d) {
		snprintf(err, errlen, "template_dir %.200s cannot be opened", dir);
		return -1;
	}
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (de = readdir(d))) {
		if (!em_valid_language(de->d_name))
			continue;
		char sub[4096];
		snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name);
		DIR *l = opendir(sub);
		if (!l)
			continue;
		struct dirent *fe;
		while (rc == 0 && (fe = readdir(l))) {
			if (!template_file_name(fe->d_name))
				continue;
			char path[8192], key[600];
			snprintf(path, sizeof(path), "%s/%s", sub, fe->d_name);
			snprintf(key, sizeof(key), "%.255s/%.255s", de->d_name, fe->d_name);
			rc = load_file(set, path, key, err, errlen);
		}
		closedir(l);
	}
	closedir(d);
	return rc;
}

static char *dup_or_null(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

/* The configuration from validated settings (borrowed), or NULL with a reason. */
static struct config *config_new(const json_t *settings, char *err, size_t errlen)
{
	struct config *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	const char *host = str_setting(settings, "smtp_host");
	long port = (long)json_integer_value(json_object_get(settings, "smtp_port"));
	const char *tls = str_setting(settings, "smtp_tls");
	const char *from = str_setting(settings, "from_address");
	const char *base = str_setting(settings, "base_url");
	const char *unsub = str_setting(settings, "unsubscribe_url");
	const char *mailto = str_setting(settings, "unsubscribe_mailto");
	const char *lang = str_setting(settings, "language");
	const char *dir = str_setting(settings, "template_dir");
	const char *essential = str_setting(settings, "essential_types");
	if (!host_ok(host)) {
		snprintf(err, errlen, "smtp_host: a host name or an IP address");
		goto fail;
	}
	if (strcmp(tls, "none") == 0 || strcmp(tls, "tls") == 0)
		c->use_ssl = CURLUSESSL_NONE; /* "tls": implicit TLS through smtps:// */
	else if (strcmp(tls, "try") == 0)
		c->use_ssl = CURLUSESSL_TRY;
	else if (strcmp(tls, "starttls") == 0)
		c->use_ssl = CURLUSESSL_ALL;
	else {
		snprintf(err, errlen, "smtp_tls: none, try, starttls or tls");
		goto fail;
	}
	char url[300];
	snprintf(url, sizeof(url), "%s://%s%s%s:%ld", strcmp(tls, "tls") == 0 ? "smtps" : "smtp",
	         strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", port);
	c->url = strdup(url);
	c->verify = !json_is_false(json_object_get(settings, "smtp_tls_verify"));
	c->username = dup_or_null(str_setting(settings, "smtp_username"));
	const char *pw = str_setting(settings, "smtp_password");
	if (!*pw && getenv("SPEARHEAD_EMAIL_SMTP_PASSWORD"))
		pw = getenv("SPEARHEAD_EMAIL_SMTP_PASSWORD");
	c->password = dup_or_null(pw);
	if (!em_valid_address(from)) {
		snprintf(err, errlen, "from_address: a plain address such as noreply@example.org");
		goto fail;
	}
	c->from_addr = strdup(from);
	c->from_name = strdup(str_setting(settings, "from_name"));
	c->site_name = strdup(str_setting(settings, "site_name"));
	if (has_control(c->from_name ? c->from_name : "") ||
	    has_control(c->site_name ? c->site_name : "")) {
		snprintf(err, errlen, "from_name and site_name: one line of text");
		goto fail;
	}
	if (!url_ok(base)) {
		snprintf(err, errlen, "base_url: an http:// or https:// URL");
		goto fail;
	}
	c->base_url = strdup(base);
	for (size_t n = c->base_url ? strlen(c->base_url) : 0; n > 8 && c->base_url[n - 1] == '/';)
		c->base_url[--n] = '\0';
	if (*unsub && !url_ok(unsub)) {
		snprintf(err, errlen, "unsubscribe_url: an http:// or https:// URL");
		goto fail;
	}
	char buf[1200];
	if (*unsub)
		snprintf(buf, sizeof(buf), "%s", unsub);
	else
		snprintf(buf, sizeof(buf), "%s/settings/notifications",
		         c->base_url ? c->base_url : "");
	c->unsubscribe_url = strdup(buf);
	if (*mailto && !em_valid_address(mailto)) {
		snprintf(err, errlen, "unsubscribe_mailto: a plain address, or empty");
		goto fail;
	}
	if (*mailto)
		snprintf(buf, sizeof(buf), "<%s>, <mailto:%s?subject=unsubscribe>",
		         c->unsubscribe_url, mailto);
	else
		snprintf(buf, sizeof(buf), "<%s>", c->unsubscribe_url);
	c->list_unsubscribe = strdup(buf);
	if (!em_valid_language(lang)) {
		snprintf(err, errlen, "language: a language tag such as en, fr or pt-br");
		goto fail;
	}
	c->language = strdup(lang);
	c->essential = json_array();
	char *list = strdup(essential), *save = NULL;
	for (char *p = list ? strtok_r(list, ", ", &save) : NULL; p;
	     p = strtok_r(NULL, ", ", &save)) {
		if (!pattern_ok(p)) {
			snprintf(err, errlen,
			         "essential_types: '%s' is not a type, a 'prefix.*' or '*'", p);
			free(list);
			goto fail;
		}
		json_array_append_new(c->essential, json_string(p));
	}
	free(list);
	c->timeout_s = (long)json_integer_value(json_object_get(settings, "timeout_s"));
	c->retry_s = (long)json_integer_value(json_object_get(settings, "retry_s"));
	c->templates = json_object();
	for (const struct em_builtin *t = email_builtin_templates; t->name; t++)
		json_object_set_new(c->templates, t->name, json_string(t->text));
	struct stat st;
	if (*dir) {
		if (load_dir(c->templates, dir, err, errlen) < 0)
			goto fail;
	} else if (stat(EMAIL_TEMPLATEDIR, &st) == 0 && S_ISDIR(st.st_mode)) {
		if (load_dir(c->templates, EMAIL_TEMPLATEDIR, err, errlen) < 0)
			goto fail;
	}
	if (!c->url || !c->from_addr || !c->from_name || !c->site_name || !c->base_url ||
	    !c->unsubscribe_url || !c->list_unsubscribe || !c->language) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	return c;
fail:
	config_free(c);
	return NULL;
}

static const char *tls_name(const struct config *c)
{
	if (strncmp(c->url, "smtps:", 6) == 0)
		return "implicit TLS";
	return c->use_ssl == CURLUSESSL_ALL   ? "STARTTLS required"
	       : c->use_ssl == CURLUSESSL_TRY ? "STARTTLS when offered"
	                                      : "no TLS";
}

static bool essential(const struct config *c, const char *type)
{
	size_t i;
	json_t *v;
	json_array_foreach(c->essential, i, v)
	{
		const char *p = json_string_value(v);
		size_t n = strlen(p);
		if (strcmp(p, "*") == 0 || strcmp(p, type) == 0 ||
		    (n >= 2 && strcmp(p + n - 2, ".*") == 0 && strncmp(type, p, n - 1) == 0))
			return true;
	}
	return false;
}

/* ---- one delivery ---- */

static void send_free(struct send *s)
{
	if (s->curl)
		curl_easy_cleanup(s->curl);
	curl_slist_free_all(s->rcpt);
	free(s->msg);
	free(s);
}

static size_t read_message(char *buf, size_t size, size_t nitems, void *arg)
{
	struct send *s = arg;
	size_t room = size * nitems, left = s->len - s->off;
	size_t n = left < room ? left : room;
	memcpy(buf, s->msg + s->off, n);
	s->off += n;
	return n;
}

static void recorded(const struct sp_db_result *res, void *arg)
{
	struct send *s = arg;
	struct email *e = s->email;
	/* The mail is out: done even if the record failed (a rerun would send it again). */
	if (!e->api->db_ok(res))
		e->api->log(e->plugin, SP_LOG_WARN, "outbox %s: sent, but not recorded",
		            s->outbox_id);
	e->api->job_finish(s->job, SP_JOB_DONE, 0, NULL);
	send_free(s);
}

static void transferred(void *easy, int code, void *arg)
{
	struct send *s = arg;
	struct email *e = s->email;
	const struct sp_api *api = e->api;
	if (code == CURLE_ABORTED_BY_CALLBACK) {
		/* The plugin is stopping: the job's lease brings it back to some worker. */
		send_free(s);
		return;
	}
	long reply = 0;
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &reply);
	if (code == CURLE_OK) {
		api->metric_add(e->m_sent, 1);
		char attempt[16];
		snprintf(attempt, sizeof(attempt), "%d", api->job_attempt(s->job));
		const char *params[] = { s->outbox_id, s->recipient, s->message_id, attempt };
		if (api->db_query_prepared(
		        e->plugin, "email_record",
		        "INSERT INTO email_sent (outbox_id, recipient, message_id, "
		        "attempts) VALUES ($1::uuid, $2, $3, $4::int) ON CONFLICT "
		        "DO NOTHING",
		        4, params, recorded, s) < 0) {
			api->job_finish(s->job, SP_JOB_DONE, 0, NULL);
			send_free(s);
		}
		return;
	}
	char why[CURL_ERROR_SIZE + 96];
	const char *what = s->errbuf[0] ? s->errbuf : curl_easy_strerror((CURLcode)code);
	if (reply)
		snprintf(why, sizeof(why), "%s; SMTP reply %ld", what, reply);
	else
		snprintf(why, sizeof(why), "%s", what);
	/* A 5xx reply is permanent (RFC 5321), except a refused login, which is the relay
	 * settings' fault and may be fixed meanwhile. */
	bool permanent = code != CURLE_LOGIN_DENIED && reply >= 500 && reply <= 599;
	api->log(e->plugin, SP_LOG_WARN, "outbox %s: attempt %d failed (%s): %s", s->outbox_id,
	         api->job_attempt(s->job), permanent ? "permanent" : "will retry", why);
	api->metric_add(permanent ? e->m_failed : e->m_retried, 1);
	api->job_finish(s->job, permanent ? SP_JOB_FAIL : SP_JOB_RETRY,
	                permanent ? 0 : (unsigned)e->cfg->retry_s, why);
	send_free(s);
}

/* Collapses whitespace (line breaks included) to single spaces and trims. */
static void one_spaced_line(char *s)
{
	char *o = s;
	bool space = true;
	for (char *p = s; *p; p++) {
		bool ws = *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n';
		if (ws && space)
			continue;
		*o++ = ws ? ' ' : *p;
		space = ws;
	}
	if (o > s && o[-1] == ' ')
		o--;
	*o = '\0';
}

/* Builds the message of an outbox row; 0, or -1 (out of memory, broken template). */
static int compose(struct send *s, const struct config *c, const struct sp_api *api,
                   const struct sp_db_result *res)
{
	const char *type = api->db_value(res, 0, 1);
	const char *title = api->db_value(res, 0, 2);
	const char *body = api->db_value(res, 0, 3);
	json_t *data = json_loads(api->db_value(res, 0, 4), 0, NULL);
	if (!json_is_object(data)) {
		json_decref(data);
		data = json_object();
	}
	long long created = strtoll(api->db_value(res, 0, 5), NULL, 10);
	const char *name = api->db_value(res, 0, 8);
	/* Copied: data goes with vars, before the message is built. */
	char lang[16];
	const char *want = json_string_value(json_object_get(data, "language"));
	snprintf(lang, sizeof(lang), "%s", em_valid_language(want) ? want : c->language);
	const char *url = json_string_value(json_object_get(data, "url"));
	bool is_essential = essential(c, type);
	char *body_html = em_text_to_html(body);
	json_t *vars = json_pack(
	    "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s?, s:s, s:s, s:s, s:s, s:s, s:b, s:O}",
	    "site_name", c->site_name, "base_url", c->base_url, "lang", lang, "type", type, "id",
	    s->outbox_id, "title", title, "body", body, "body_html", body_html, "created_at",
	    api->db_value(res, 0, 6), "recipient_email", s->recipient, "recipient_name", name,
	    "link", url && url_ok(url) ? url : "", "unsubscribe_url",
	    is_essential ? "" : c->unsubscribe_url, "essential", is_essential, "data", data);
	free(body_html);
	json_decref(data);
	if (!vars)
		return -1;
	const char *ts = em_template_find(c->templates, lang, type, "subject");
	const char *tt = em_template_find(c->templates, lang, type, "txt");
	const char *th = em_template_find(c->templates, lang, type, "html");
	char *subject = em_render(ts ? ts : "{{title}}", vars, false);
	char *text = em_render(tt ? tt : "{{title}}\n\n{{body}}\n", vars, false);
	char *html = em_render(th ? th : "{{{body_html}}}", vars, true);
	json_decref(vars);
	int rc = -1;
	if (subject && text && html) {
		one_spaced_line(subject);
		char boundary[64];
		snprintf(boundary, sizeof(boundary), "=_sp_");
		size_t k = strlen(boundary);
		for (const char *p = s->outbox_id; *p && k + 1 < sizeof(boundary); p++)
			if (*p != '-')
				boundary[k++] = *p;
		boundary[k] = '\0';
		struct em_message m = {
			.from_name = c->from_name,
			.from_addr = c->from_addr,
			.to_name = name,
			.to_addr = s->recipient,
			.subject = *subject ? subject : (*title ? title : type),
			.message_id = s->message_id,
			.date = created,
			.list_unsubscribe = is_essential ? NULL : c->list_unsubscribe,
			.language = lang,
			.event_id = s->outbox_id,
			.event_type = type,
			.text = text,
			.html = html,
			.boundary = boundary,
		};
		s->msg = em_message_build(&m);
		s->len = s->msg ? strlen(s->msg) : 0;
		rc = s->msg ? 0 : -1;
	}
	free(subject);
	free(text);
	free(html);
	return rc;
}

static int start_transfer(struct send *s, const struct config *c)
{
	char from[300], to[300];
	snprintf(from, sizeof(from), "<%s>", c->from_addr);
	snprintf(to, sizeof(to), "<%s>", s->recipient);
	s->curl = curl_easy_init();
	s->rcpt = curl_slist_append(NULL, to);
	if (!s->curl || !s->rcpt)
		return -1;
	CURL *h = s->curl;
	curl_easy_setopt(h, CURLOPT_URL, c->url);
	curl_easy_setopt(h, CURLOPT_MAIL_FROM, from);
	curl_easy_setopt(h, CURLOPT_MAIL_RCPT, s->rcpt);
	curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(h, CURLOPT_READFUNCTION, read_message);
	curl_easy_setopt(h, CURLOPT_READDATA, s);
	curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)s->len);
	curl_easy_setopt(h, CURLOPT_USE_SSL, c->use_ssl);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, c->verify ? 1L : 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, c->verify ? 2L : 0L);
	if (c->username) {
		curl_easy_setopt(h, CURLOPT_USERNAME, c->username);
		curl_easy_setopt(h, CURLOPT_PASSWORD, c->password ? c->password : "");
	}
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->timeout_s);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, c->timeout_s);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	/* One SMTP session per e-mail: a pooled connection would skip the TLS and login
	 * checks of settings changed since it was opened. */
	curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, s->errbuf);
	return s->email->api->curl_add(s->email->plugin, h, transferred, s);
}

static void loaded(const struct sp_db_result *res, void *arg)
{
	struct send *s = arg;
	struct email *e = s->email;
	const struct sp_api *api = e->api;
	if (!api->db_ok(res)) {
		api->job_finish(s->job, SP_JOB_RETRY, (unsigned)e->cfg->retry_s,
		                "could not read the outbox row");
		send_free(s);
		return;
	}
	/* No row: its person was deleted. Sent already: a rerun after a lost lease. */
	if (api->db_ntuples(res) == 0 || strcmp(api->db_value(res, 0, 9), "t") == 0) {
		api->job_finish(s->job, SP_JOB_DONE, 0, NULL);
		send_free(s);
		return;
	}
	const char *to = api->db_value(res, 0, 7);
	if (!em_valid_address(to)) {
		api->job_finish(s->job, SP_JOB_FAIL, 0, "the recipient's address cannot be used");
		send_free(s);
		return;
	}
	snprintf(s->recipient, sizeof(s->recipient), "%s", to);
	/* Stable across retries, so receivers can deduplicate. */
	snprintf(s->message_id, sizeof(s->message_id), "%s@%s", s->outbox_id,
	         em_address_domain(e->cfg->from_addr));
	if (compose(s, e->cfg, api, res) < 0) {
		api->job_finish(s->job, SP_JOB_RETRY, (unsigned)e->cfg->retry_s,
		                "could not build the message");
		send_free(s);
		return;
	}
	if (start_transfer(s, e->cfg) < 0) {
		api->job_finish(s->job, SP_JOB_RETRY, (unsigned)e->cfg->retry_s,
		                "could not start the SMTP transfer");
		send_free(s);
	}
}

/* A UUID in canonical text form (so the query cannot fail on a malformed one). */
static bool valid_uuid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]) || !s[i])
			return false;
	}
	return true;
}

static void deliver(struct sp_job *job, const json_t *payload, void *arg)
{
	struct email *e = arg;
	const struct sp_api *api = e->api;
	const char *id = json_string_value(json_object_get(payload, "outbox_id"));
	if (!valid_uuid(id)) {
		api->job_finish(job, SP_JOB_FAIL, 0, "payload without a valid outbox_id");
		return;
	}
	struct send *s = calloc(1, sizeof(*s));
	if (!s) {
		api->job_finish(job, SP_JOB_RETRY, 0, "out of memory");
		return;
	}
	s->email = e;
	s->job = job;
	snprintf(s->outbox_id, sizeof(s->outbox_id), "%s", id);
	const char *params[] = { id };
	if (api->db_query_prepared(
	        e->plugin, "email_load",
	        "SELECT o.id::text, o.type, o.title, o.body, o.data::text, extract(epoch FROM "
	        "o.created_at)::bigint, " TS(
	            "o.created_at") ", u.email, u.display_name, EXISTS "
	                            "(SELECT 1 FROM email_sent s WHERE s.outbox_id = o.id) FROM "
	                            "sp_outbox o JOIN "
	                            "sp_users u ON u.id = o.user_id WHERE o.id = $1::uuid AND "
	                            "o.channel = 'email'",
	        1, params, loaded, s) < 0) {
		free(s);
		api->job_finish(job, SP_JOB_RETRY, 0, "the database is unavailable");
	}
}

/* ---- lifecycle ---- */

static int email_init(const struct sp_api *api, struct sp_plugin *plugin, const json_t *settings,
                      void **state)
{
	if (api->size < offsetof(struct sp_api, curl_add) + sizeof(api->curl_add)) {
		api->log(plugin, SP_LOG_ERROR, "this core lacks durable jobs, channels or libcurl");
		return -1;
	}
	char err[512];
	struct config *cfg = config_new(settings, err, sizeof(err));
	if (!cfg) {
		api->log(plugin, SP_LOG_ERROR, "bad settings: %s", err);
		return -1;
	}
	struct email *e = calloc(1, sizeof(*e));
	if (!e) {
		config_free(cfg);
		return -1;
	}
	e->api = api;
	e->plugin = plugin;
	e->cfg = cfg;
	e->m_sent = api->metric_counter(plugin, "sent_total", "E-mails accepted by the relay");
	e->m_retried = api->metric_counter(plugin, "retried_total",
	                                   "Deliveries that failed and will be retried");
	e->m_failed = api->metric_counter(plugin, "failed_total",
	                                  "Deliveries refused for good by the relay (5xx)");
	int concurrency = (int)json_integer_value(json_object_get(settings, "concurrency"));
	if (api->channel_register(plugin, "email", SP_CHANNEL_USER) < 0 ||
	    api->job_handle(plugin, "deliver.email", concurrency, deliver, e) < 0) {
		api->log(plugin, SP_LOG_ERROR, "cannot register the email channel");
		config_free(cfg);
		free(e);
		return -1;
	}
	api->log(plugin, SP_LOG_INFO, "relay %s, %s, %zu template(s)", cfg->url, tls_name(cfg),
	         json_object_size(cfg->templates));
	*state = e;
	return 0;
}

static int email_reload(void *state, const json_t *settings)
{
	struct email *e = state;
	char err[512];
	struct config *cfg = config_new(settings, err, sizeof(err));
	if (!cfg) {
		e->api->log(e->plugin, SP_LOG_WARN, "new settings refused: %s", err);
		return -1;
	}
	config_free(e->cfg);
	e->cfg = cfg;
	e->api->log(e->plugin, SP_LOG_INFO, "settings applied: relay %s, %s, %zu template(s)",
	            cfg->url, tls_name(cfg), json_object_size(cfg->templates));
	return 0;
}

static void email_shutdown(void *state)
{
	struct email *e = state;
	/* Transfers and queries in flight have ended before: the core cancels transfers
	 * and closes the pool first. */
	config_free(e->cfg);
	free(e);
}

static const struct sp_setting email_settings[] = {
	{ "smtp_host", SP_SETTING_STRING, "\"localhost\"", 1, 253,
	  "SMTP relay host name or address" },
	{ "smtp_port", SP_SETTING_INT, "587", 1, 65535, "SMTP relay port" },
	{ "smtp_tls", SP_SETTING_STRING, "\"starttls\"", 0, 0,
	  "none, try (STARTTLS when offered), starttls (required) or tls (implicit, smtps)" },
	{ "smtp_tls_verify", SP_SETTING_BOOL, "true", 0, 0,
	  "Verify the relay's TLS certificate and host name" },
	{ "smtp_username", SP_SETTING_STRING, "\"\"", 0, 256,
	  "SMTP login; empty: no authentication" },
	{ "smtp_password", SP_SETTING_STRING, "\"\"", 0, 256,
	  "SMTP password; empty: SPEARHEAD_EMAIL_SMTP_PASSWORD from the environment" },
	{ "from_address", SP_SETTING_STRING, "\"noreply@localhost\"", 3, 254,
	  "Sender address (envelope and From)" },
	{ "from_name", SP_SETTING_STRING, "\"Spearhead\"", 0, 100, "Sender display name" },
	{ "site_name", SP_SETTING_STRING, "\"Spearhead\"", 1, 100,
	  "Platform name shown in e-mails" },
	{ "base_url", SP_SETTING_STRING, "\"http://localhost:8080\"", 8, 500,
	  "Public address of the platform, for links in e-mails" },
	{ "unsubscribe_url", SP_SETTING_STRING, "\"\"", 0, 500,
	  "Where people choose their e-mails (List-Unsubscribe); empty: "
	  "base_url/settings/notifications" },
	{ "unsubscribe_mailto", SP_SETTING_STRING, "\"\"", 0, 254,
	  "Also offer unsubscribing by mail to this address; empty: no" },
	{ "essential_types", SP_SETTING_STRING, "\"account.*,security.*,auth.*\"", 0, 1000,
	  "Notification types always sent, without List-Unsubscribe (type, prefix.* or *)" },
	{ "language", SP_SETTING_STRING, "\"en\"", 2, 11,
	  "Default template language (a notification's data.language overrides it)" },
	{ "template_dir", SP_SETTING_STRING, "\"\"", 0, 1000,
	  "Directory of LANG/NAME.PART templates overriding the built-in ones; empty: the "
	  "installed ones, if any" },
	{ "timeout_s", SP_SETTING_INT, "30", 1, 600,
	  "Seconds allowed to connect and to send one e-mail" },
	{ "retry_s", SP_SETTING_INT, "0", 0, 86400,
	  "Seconds before retrying a failed delivery; 0: the job queue's exponential backoff" },
	{ "concurrency", SP_SETTING_INT, "4", 1, 64,
	  "E-mails sent at once per worker process (read at start)" },
	{ NULL, 0, NULL, 0, 0, NULL },
};

SP_PLUGIN_DEFINE(email) = {
	SP_PLUGIN_DESC_HEADER,
	.name = "email",
	.version = "1.0.0",
	.description = "E-mail notifications through an SMTP relay, from templates",
	.settings = email_settings,
	.migrations = email_migrations,
	.init = email_init,
	.shutdown = email_shutdown,
	.reload = email_reload,
};
