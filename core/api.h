/* api.h — the table of core services handed to plugins (struct sp_api). */
#ifndef SP_CORE_API_H
#define SP_CORE_API_H

#include <spearhead/plugin.h>

struct sp_core;

const struct sp_api *sp_api_table(void);
/* Removes what the plugin registered here (scorers). */
void sp_api_remove_owner(struct sp_plugin *plugin);
/* Cancels and frees every timer in the list (a plugin's). */
void sp_api_cancel_timers(struct sp_timer **list);
/* The settings stored through the API for plugin name (borrowed, may be NULL). */
const json_t *sp_api_stored_settings(struct sp_core *core, const char *name);
/* The plugin's timer list head (owned by the plugin record). */
struct sp_timer **sp_plugin_timers(struct sp_plugin *p);

#endif
