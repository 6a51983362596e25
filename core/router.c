/* router.c — a flat table of routes matched segment by segment. A few hundred routes
 * at most, so a linear scan beats a trie in simplicity and is fast enough. */
#include "router.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

struct sp_router {
	struct sp_route_entry **entries;
	size_t count, cap;
};

static const char *const known_methods[] = { "GET", "POST", "PUT", "PATCH", "DELETE" };

struct sp_router *sp_router_new(void)
{
	return sp_calloc(1, sizeof(struct sp_router));
}

static void entry_free(struct sp_route_entry *e)
{
	free((char *)e->route.method);
	free((char *)e->route.pattern);
	free((char *)e->route.summary);
	free((char *)e->route.request_schema);
	free((char *)e->route.response_schema);
	for (int i = 0; i < e->nsegs; i++)
		free(e->segs[i]);
	free(e);
}

void sp_router_free(struct sp_router *router)
{
	if (!router)
		return;
	for (size_t i = 0; i < router->count; i++)
		entry_free(router->entries[i]);
	free(router->entries);
	free(router);
}

static bool is_param_seg(const char *s)
{
	size_t n = strlen(s);
	return n >= 3 && s[0] == '{' && s[n - 1] == '}';
}

/* Splits pattern "/a/{b}/c" into segments; -1 when malformed. */
static int split_pattern(const char *pattern, struct sp_route_entry *e, char *err, size_t errlen)
{
	if (pattern[0] != '/') {
		snprintf(err, errlen, "pattern must start with '/': %s", pattern);
		return -1;
	}
	const char *p = pattern + 1;
	int nparams = 0;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (len == 0 || e->nsegs >= SP_ROUTE_MAX_SEGS) {
			snprintf(err, errlen, "bad pattern (empty or too many segments): %s",
			         pattern);
			return -1;
		}
		char *seg = strndup(p, len);
		if (!seg)
			abort();
		e->segs[e->nsegs++] = seg;
		if (strchr(seg, '{') || strchr(seg, '}')) {
			if (!is_param_seg(seg)) {
				snprintf(err, errlen, "bad parameter segment '%s' in %s", seg,
				         pattern);
				return -1;
			}
			char name[64];
			snprintf(name, sizeof(name), "%.*s", (int)(len - 2), seg + 1);
			if (!sp_is_ident(name) || ++nparams > SP_ROUTE_MAX_PARAMS) {
				snprintf(err, errlen, "bad parameter name '%s' in %s", seg,
				         pattern);
				return -1;
			}
		}
		p += len;
		if (*p == '/') {
			p++;
			if (!*p) {
				snprintf(err, errlen, "pattern must not end with '/': %s", pattern);
				return -1;
			}
		}
	}
	return 0;
}

static bool same_shape(const struct sp_route_entry *a, const struct sp_route_entry *b)
{
	if (a->nsegs != b->nsegs)
		return false;
	for (int i = 0; i < a->nsegs; i++) {
		bool pa = is_param_seg(a->segs[i]), pb = is_param_seg(b->segs[i]);
		if (pa != pb || (!pa && strcmp(a->segs[i], b->segs[i]) != 0))
			return false;
	}
	return true;
}

static char *dup_or_null(const char *s)
{
	return s ? sp_strdup(s) : NULL;
}

int sp_router_add(struct sp_router *router, const struct sp_route *route, struct sp_plugin *owner,
                  void *arg, char *err, size_t errlen)
{
	if (!route || !route->method || !route->pattern || !route->handler) {
		snprintf(err, errlen, "route needs a method, a pattern and a handler");
		return -1;
	}
	bool method_ok = false;
	for (size_t i = 0; i < SP_ARRAY_LEN(known_methods); i++)
		method_ok |= strcmp(route->method, known_methods[i]) == 0;
	if (!method_ok) {
		snprintf(err, errlen, "unsupported method '%s'", route->method);
		return -1;
	}
	struct sp_route_entry *e = sp_calloc(1, sizeof(*e));
	e->route = *route;
	e->route.method = sp_strdup(route->method);
	e->route.pattern = sp_strdup(route->pattern);
	e->route.summary = dup_or_null(route->summary);
	e->route.request_schema = dup_or_null(route->request_schema);
	e->route.response_schema = dup_or_null(route->response_schema);
	e->owner = owner;
	e->arg = arg;
	if (split_pattern(route->pattern, e, err, errlen) < 0) {
		entry_free(e);
		return -1;
	}
	for (size_t i = 0; i < router->count; i++) {
		const struct sp_route_entry *o = router->entries[i];
		if (strcmp(o->route.method, e->route.method) == 0 && same_shape(o, e)) {
			snprintf(err, errlen, "route %s %s conflicts with %s", e->route.method,
			         e->route.pattern, o->route.pattern);
			entry_free(e);
			return -1;
		}
	}
	if (router->count == router->cap) {
		size_t cap = router->cap ? router->cap * 2 : 32;
		void *n = realloc(router->entries, cap * sizeof(*router->entries));
		if (!n)
			abort();
		router->entries = n;
		router->cap = cap;
	}
	router->entries[router->count++] = e;
	return 0;
}

void sp_router_remove_owner(struct sp_router *router, struct sp_plugin *owner)
{
	size_t j = 0;
	for (size_t i = 0; i < router->count; i++) {
		if (owner && router->entries[i]->owner == owner)
			entry_free(router->entries[i]);
		else
			router->entries[j++] = router->entries[i];
	}
	router->count = j;
}

/* Splits a request path into segments (pointers into buf). -1 if too many/empty. */
static int split_path(char *buf, char **segs)
{
	if (buf[0] != '/')
		return -1;
	int n = 0;
	char *p = buf + 1;
	if (!*p)
		return 0;
	for (;;) {
		char *slash = strchr(p, '/');
		if (slash)
			*slash = '\0';
		if (!*p || n >= SP_ROUTE_MAX_SEGS)
			return -1; /* empty segment ("//" or trailing '/') */
		segs[n++] = p;
		if (!slash)
			return n;
		p = slash + 1;
	}
}

static bool path_matches(const struct sp_route_entry *e, char **segs, int n)
{
	if (e->nsegs != n)
		return false;
	for (int i = 0; i < n; i++)
		if (!is_param_seg(e->segs[i]) && strcmp(e->segs[i], segs[i]) != 0)
			return false;
	return true;
}

static void add_allow(char *allow, size_t len, const char *method)
{
	if (strstr(allow, method))
		return;
	size_t used = strlen(allow);
	snprintf(allow + used, len - used, "%s%s", used ? ", " : "", method);
}

enum sp_match_status sp_router_match(const struct sp_router *router, const char *method,
                                     const char *path, struct sp_route_match *m)
{
	memset(m, 0, sizeof(*m));
	if (!path || strlen(path) >= 2048)
		return SP_MATCH_NOT_FOUND;
	char buf[2048];
	sp_strlcpy(buf, path, sizeof(buf));
	char *segs[SP_ROUTE_MAX_SEGS];
	int n = split_path(buf, segs);
	if (n < 0)
		return SP_MATCH_NOT_FOUND;
	const char *want = strcmp(method, "HEAD") == 0 ? "GET" : method;
	const struct sp_route_entry *found = NULL;
	bool path_known = false;
	for (size_t i = 0; i < router->count; i++) {
		const struct sp_route_entry *e = router->entries[i];
		if (!path_matches(e, segs, n))
			continue;
		path_known = true;
		if (strcmp(e->route.method, want) != 0)
			continue;
		if (!found) {
			found = e;
			continue;
		}
		/* Prefer the route with more literal segments: /v1/x/me over /v1/x/{id}. */
		for (int s = 0; s < n; s++) {
			bool fp = is_param_seg(found->segs[s]), ep = is_param_seg(e->segs[s]);
			if (fp != ep) {
				if (fp)
					found = e;
				break;
			}
		}
	}
	if (!path_known)
		return SP_MATCH_NOT_FOUND;
	if (!found) {
		/* Only now, off the hot path: the methods of the path for 405 and OPTIONS. */
		for (size_t i = 0; i < router->count; i++) {
			const struct sp_route_entry *e = router->entries[i];
			if (!path_matches(e, segs, n))
				continue;
			add_allow(m->allow, sizeof(m->allow), e->route.method);
			if (strcmp(e->route.method, "GET") == 0)
				add_allow(m->allow, sizeof(m->allow), "HEAD");
		}
		add_allow(m->allow, sizeof(m->allow), "OPTIONS");
		return SP_MATCH_BAD_METHOD;
	}
	m->entry = found;
	for (int i = 0; i < n; i++) {
		if (!is_param_seg(found->segs[i]))
			continue;
		char *v = evhttp_uridecode(segs[i], 0, NULL);
		if (!v)
			abort();
		m->names[m->nparams] = found->segs[i];
		m->values[m->nparams++] = v;
	}
	return SP_MATCH_OK;
}

void sp_route_match_clear(struct sp_route_match *m)
{
	for (int i = 0; i < m->nparams; i++)
		free(m->values[i]);
	m->nparams = 0;
}

const char *sp_route_match_param(const struct sp_route_match *m, const char *name)
{
	size_t len = strlen(name);
	for (int i = 0; i < m->nparams; i++) {
		const char *seg = m->names[i]; /* "{name}" */
		if (strlen(seg) == len + 2 && strncmp(seg + 1, name, len) == 0)
			return m->values[i];
	}
	return NULL;
}

size_t sp_router_count(const struct sp_router *router)
{
	return router->count;
}

const struct sp_route_entry *sp_router_at(const struct sp_router *router, size_t i)
{
	return i < router->count ? router->entries[i] : NULL;
}
