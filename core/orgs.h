/* orgs.h — routes for organisations, their topic profiles and members. */
#ifndef SP_CORE_ORGS_H
#define SP_CORE_ORGS_H

struct sp_core;

int sp_orgs_register(struct sp_core *core);

#endif
