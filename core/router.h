/* router.h — method + path-pattern routing table shared by core and plugins. */
#ifndef SP_CORE_ROUTER_H
#define SP_CORE_ROUTER_H

#include <spearhead/plugin.h>

#define SP_ROUTE_MAX_PARAMS 8
#define SP_ROUTE_MAX_SEGS   16

struct sp_router;

/* One registered route; the router owns every string in it. */
struct sp_route_entry {
	struct sp_route route;   /* copied; strings owned by the entry */
	struct sp_plugin *owner; /* NULL for core routes */
	void *arg;               /* handed to the handler as its plugin_state */
	int nsegs;
	char *segs[SP_ROUTE_MAX_SEGS]; /* literal segment, or "{name}" */
};

struct sp_route_match {
	const struct sp_route_entry *entry;
	int nparams;
	const char *names[SP_ROUTE_MAX_PARAMS]; /* borrowed from the entry */
	char *values[SP_ROUTE_MAX_PARAMS];      /* owned, percent-decoded */
	char allow[80];                         /* for 405/OPTIONS: "GET, HEAD, POST" */
};

enum sp_match_status { SP_MATCH_OK = 0, SP_MATCH_NOT_FOUND = 1, SP_MATCH_BAD_METHOD = 2 };

struct sp_router *sp_router_new(void);
void sp_router_free(struct sp_router *router);
/* Copies route. Returns 0, or -1 with a reason in err (bad pattern or method, duplicate). */
int sp_router_add(struct sp_router *router, const struct sp_route *route, struct sp_plugin *owner,
                  void *arg, char *err, size_t errlen);
/* Removes every route of owner (used when a plugin is left out). */
void sp_router_remove_owner(struct sp_router *router, struct sp_plugin *owner);
/* Matches; HEAD matches GET routes. On SP_MATCH_BAD_METHOD, m->allow lists the methods
 * of the path. Always call sp_route_match_clear afterwards. */
enum sp_match_status sp_router_match(const struct sp_router *router, const char *method,
                                     const char *path, struct sp_route_match *m);
void sp_route_match_clear(struct sp_route_match *m);
const char *sp_route_match_param(const struct sp_route_match *m, const char *name);

size_t sp_router_count(const struct sp_router *router);
const struct sp_route_entry *sp_router_at(const struct sp_router *router, size_t i);

#endif
