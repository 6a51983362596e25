/* bus.h — typed events between core and plugins, in-process and across instances
 * (PostgreSQL NOTIFY on channel "sp_bus"). */
#ifndef SP_CORE_BUS_H
#define SP_CORE_BUS_H

#include <spearhead/plugin.h>

struct sp_bus;
struct sp_core;

#define SP_BUS_CHANNEL "sp_bus"

struct sp_bus *sp_bus_new(struct sp_core *core);
void sp_bus_free(struct sp_bus *bus);
/* Starts listening for other instances' events (needs core->db). */
int sp_bus_listen(struct sp_bus *bus);
int sp_bus_subscribe(struct sp_bus *bus, struct sp_plugin *owner, const char *pattern,
                     sp_bus_fn *cb, void *arg);
void sp_bus_remove_owner(struct sp_bus *bus, struct sp_plugin *owner);
/* data borrowed. Local subscribers run on the next loop turn; other processes get it
 * through NOTIFY. Returns 0 or -1 (bad type). */
int sp_bus_emit(struct sp_bus *bus, const char *type, json_t *data);
/* true when pattern ("a.b", "a.*", "*") matches type. */
bool sp_bus_matches(const char *pattern, const char *type);

#endif
