/* users.h — the `user` and `token` commands. */
#ifndef SP_CORE_USERS_H
#define SP_CORE_USERS_H

int sp_cmd_user(int argc, char **argv);
int sp_cmd_token(int argc, char **argv);

#endif
