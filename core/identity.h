/* identity.h — routes for login, logout, /v1/me and API tokens. */
#ifndef SP_CORE_IDENTITY_H
#define SP_CORE_IDENTITY_H

struct sp_core;

int sp_identity_register(struct sp_core *core);

#endif
