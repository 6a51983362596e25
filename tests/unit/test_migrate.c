/* test_migrate.c — migration ordering and checksums (no database needed). */
#include "migrate.h"
#include "tap.h"

int main(void)
{
	char err[256];
	ok(sp_migrate_check_order(sp_core_migrations, err, sizeof(err)) == 0,
	   "embedded core migrations are in order");
	ok(sp_core_migrations[0].name != NULL, "at least one core migration is embedded");
	is_str(sp_core_migrations[0].name, "0001_core", "first core migration");

	const struct sp_migration ordered[] = { { "0001_a", "SELECT 1" },
		                                { "0002_b", "SELECT 2" },
		                                { "0010_c", "SELECT 3" },
		                                { NULL, NULL } };
	ok(sp_migrate_check_order(ordered, err, sizeof(err)) == 0, "increasing names accepted");
	const struct sp_migration swapped[] = { { "0002_b", "SELECT 2" },
		                                { "0001_a", "SELECT 1" },
		                                { NULL, NULL } };
	ok(sp_migrate_check_order(swapped, err, sizeof(err)) < 0, "out of order refused");
	ok(strstr(err, "0001_a") != NULL, "error names the migration (%s)", err);
	const struct sp_migration dup[] = { { "0001_a", "SELECT 1" },
		                            { "0001_a", "SELECT 1" },
		                            { NULL, NULL } };
	ok(sp_migrate_check_order(dup, err, sizeof(err)) < 0, "duplicates refused");
	const struct sp_migration nosql[] = { { "0001_a", NULL }, { NULL, NULL } };
	ok(sp_migrate_check_order(nosql, err, sizeof(err)) < 0, "missing SQL refused");
	ok(sp_migrate_check_order(NULL, err, sizeof(err)) == 0, "no migrations is fine");

	char a[65], b[65];
	sp_migrate_checksum("SELECT 1", a);
	sp_migrate_checksum("SELECT 1", b);
	is_str(a, b, "checksum is stable");
	is_int((long)strlen(a), 64, "checksum is 64 hex characters");
	sp_migrate_checksum("SELECT 2", b);
	ok(strcmp(a, b) != 0, "checksum changes with the SQL");
	is_str(a, "e004ebd5b5532a4b85984a62f8ad48a81aa3460c1ca07701f386135d72cdecf5",
	       "checksum is SHA-256 (matches sha256sum)");
	return tap_done();
}
