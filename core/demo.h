/* demo.h — the demo data set (contrib/demo): `spearhead demo` and `serve --demo`. */
#ifndef SP_CORE_DEMO_H
#define SP_CORE_DEMO_H

#include <stdbool.h>

/* Where the data set is read from when none is given: $SPEARHEAD_DEMO_DIR, else the
 * installed copy (SP_DEMODIR), else the source tree's (SP_SRCDIR_DEMO). Borrowed. */
const char *sp_demo_default_dir(void);

/* Reads and validates topics.json, organizations.json and users.json from demo_dir
 * (NULL: the default), then inserts what is missing in one transaction: rows are
 * keyed by their fixed ids, existing rows (and the profiles of existing organisations,
 * and existing users' passwords) are left as they are, so loading twice changes
 * nothing. With print_credentials, lists the demo accounts on stderr. Blocking libpq;
 * the schema must be up to date. Returns 0, or -1 after logging why (nothing changed). */
int sp_demo_load(const char *url, const char *demo_dir, bool print_credentials);

/* spearhead demo [--config FILE] [--database URL | --state-dir DIR] [--demo-dir DIR] */
int sp_cmd_demo(int argc, char **argv);

#endif
