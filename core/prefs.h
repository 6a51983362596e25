/* prefs.h — routes for notification preferences (a person's, an organisation's). */
#ifndef SP_CORE_PREFS_H
#define SP_CORE_PREFS_H

struct sp_core;

int sp_prefs_register(struct sp_core *core);

#endif
