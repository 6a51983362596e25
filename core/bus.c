/* bus.c — event bus. Local delivery is deferred to the next loop turn so an emitter
 * never re-enters itself; remote delivery rides on NOTIFY with our instance id, so a
 * process ignores its own notifications (it already delivered them locally). */
#include "bus.h"
#include "db.h"
#include "log.h"
#include "loader.h"
#include "serve.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

struct sub {
	struct sp_plugin *owner;
	char *pattern;
	sp_bus_fn *cb;
	void *arg;
	struct sub *next;
};

struct pending {
	char *type;
	json_t *data;
	struct pending *next;
};

struct sp_bus {
	struct sp_core *core;
	struct sub *subs;
	struct pending *head, *tail;
	struct event *flush;
};

static void deliver(struct sp_bus *bus, const char *type, json_t *data)
{
	for (struct sub *s = bus->subs; s; s = s->next) {
		if (!sp_bus_matches(s->pattern, type))
			continue;
		sp_log_set_context(NULL, s->owner ? sp_plugin_name(s->owner) : NULL);
		s->cb(type, data, s->arg);
		sp_log_set_context(NULL, NULL);
	}
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sp_bus *bus = arg;
	struct pending *p = bus->head;
	bus->head = bus->tail = NULL;
	while (p) {
		struct pending *next = p->next;
		deliver(bus, p->type, p->data);
		free(p->type);
		json_decref(p->data);
		free(p);
		p = next;
	}
}

static void enqueue(struct sp_bus *bus, const char *type, json_t *data)
{
	struct pending *p = sp_calloc(1, sizeof(*p));
	p->type = sp_strdup(type);
	/* A copy: what the emitter does with its object afterwards must not leak into
	 * what subscribers see on the next loop turn. */
	p->data = data ? json_deep_copy(data) : json_object();
	if (bus->tail)
		bus->tail->next = p;
	else
		bus->head = p;
	bus->tail = p;
	event_active(bus->flush, EV_TIMEOUT, 0);
}

struct sp_bus *sp_bus_new(struct sp_core *core)
{
	struct sp_bus *bus = sp_calloc(1, sizeof(*bus));
	bus->core = core;
	bus->flush = event_new(core->base, -1, 0, flush_cb, bus);
	return bus;
}

void sp_bus_free(struct sp_bus *bus)
{
	if (!bus)
		return;
	while (bus->subs) {
		struct sub *n = bus->subs->next;
		free(bus->subs->pattern);
		free(bus->subs);
		bus->subs = n;
	}
	while (bus->head) {
		struct pending *n = bus->head->next;
		free(bus->head->type);
		json_decref(bus->head->data);
		free(bus->head);
		bus->head = n;
	}
	event_free(bus->flush);
	free(bus);
}

bool sp_bus_matches(const char *pattern, const char *type)
{
	if (strcmp(pattern, "*") == 0)
		return true;
	size_t n = strlen(pattern);
	if (n >= 2 && pattern[n - 1] == '*' && pattern[n - 2] == '.')
		return strncmp(pattern, type, n - 1) == 0;
	return strcmp(pattern, type) == 0;
}

static bool valid_type(const char *t)
{
	if (!t || !*t || strlen(t) > 100)
		return false;
	for (; *t; t++)
		if (!((*t >= 'a' && *t <= 'z') || (*t >= '0' && *t <= '9') || *t == '_' ||
		      *t == '.'))
			return false;
	return true;
}

int sp_bus_subscribe(struct sp_bus *bus, struct sp_plugin *owner, const char *pattern,
                     sp_bus_fn *cb, void *arg)
{
	if (!cb || !pattern ||
	    (strcmp(pattern, "*") != 0 && !valid_type(pattern) &&
	     !(strlen(pattern) > 2 && strcmp(pattern + strlen(pattern) - 2, ".*") == 0)))
		return -1;
	struct sub *s = sp_calloc(1, sizeof(*s));
	s->owner = owner;
	s->pattern = sp_strdup(pattern);
	s->cb = cb;
	s->arg = arg;
	s->next = bus->subs;
	bus->subs = s;
	return 0;
}

void sp_bus_remove_owner(struct sp_bus *bus, struct sp_plugin *owner)
{
	if (!bus)
		return;
	struct sub **p = &bus->subs;
	while (*p) {
		if ((*p)->owner == owner) {
			struct sub *dead = *p;
			*p = dead->next;
			free(dead->pattern);
			free(dead);
		} else {
			p = &(*p)->next;
		}
	}
}

int sp_bus_emit(struct sp_bus *bus, const char *type, json_t *data)
{
	if (!valid_type(type))
		return -1;
	json_t *d = data ? json_incref(data) : json_object();
	enqueue(bus, type, d);
	if (bus->core->db) {
		json_t *msg = json_pack("{s:s, s:s, s:O}", "origin", bus->core->instance_id, "type",
		                        type, "data", d);
		char *text = json_dumps(msg, JSON_COMPACT);
		json_decref(msg);
		if (text && strlen(text) < 7900) /* NOTIFY payloads stop at 8000 bytes */
			sp_db_notify(bus->core->db, SP_BUS_CHANNEL, text);
		else
			sp_warn("bus event %s too large to reach other instances", type);
		free(text);
	}
	json_decref(d);
	return 0;
}

static void on_notify(const char *channel, const char *payload, void *arg)
{
	struct sp_bus *bus = arg;
	json_t *msg = json_loads(payload, 0, NULL);
	const char *origin = json_string_value(json_object_get(msg, "origin"));
	const char *type = json_string_value(json_object_get(msg, "type"));
	if (origin && type && valid_type(type) && strcmp(origin, bus->core->instance_id) != 0)
		enqueue(bus, type, json_object_get(msg, "data")); /* NULL → {} */
	json_decref(msg);
}

int sp_bus_listen(struct sp_bus *bus)
{
	return sp_db_listen(bus->core->db, SP_BUS_CHANNEL, on_notify, bus);
}
