/* test_pgembed.c — TAP test of the embedded cluster: start, reuse, stop, restart. */
#include "pgembed.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

static int test_num;
static int failures;

static void ok(int cond, const char *desc)
{
	test_num++;
	if (!cond)
		failures++;
	printf("%sok %d - %s\n", cond ? "" : "not ", test_num, desc);
	fflush(stdout);
}

/* Runs SELECT 1 through url; returns 1 when the answer is "1". */
static int select_one(const char *url)
{
	PGconn *conn = PQconnectdb(url);
	PGresult *res;
	int good;

	if (PQstatus(conn) != CONNECTION_OK) {
		printf("# connect: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return 0;
	}
	res = PQexec(conn, "SELECT 1, current_database(), current_user");
	good = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	       strcmp(PQgetvalue(res, 0, 0), "1") == 0 &&
	       strcmp(PQgetvalue(res, 0, 1), "spearhead") == 0 &&
	       strcmp(PQgetvalue(res, 0, 2), "spearhead") == 0;
	if (!good)
		printf("# query: %s", PQerrorMessage(conn));
	PQclear(res);
	PQfinish(conn);
	return good;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int main(void)
{
	char tmpl[] = "/tmp/sp-pgembed-XXXXXX";
	char err[2048];
	char *dir, *pidfile;
	char url_copy[512];
	struct sp_pgembed *a, *b, *c;

	setvbuf(stdout, NULL, _IOLBF, 0);
	dir = mkdtemp(tmpl);
	if (dir == NULL) {
		printf("1..0 # SKIP cannot create a temporary directory\n");
		return 0;
	}
	pidfile = malloc(strlen(dir) + sizeof("/pg/postmaster.pid"));
	sprintf(pidfile, "%s/pg/postmaster.pid", dir);

	a = sp_pgembed_start(dir, err, sizeof(err));
	if (a == NULL) {
		printf("# %s\n", err);
		/* Without server binaries there is nothing to test here. */
		if (strstr(err, "not found") != NULL) {
			printf("1..0 # SKIP %s\n", err);
			nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
			free(pidfile);
			return 0;
		}
	}
	ok(a != NULL, "first start initialises and starts the cluster");
	if (a == NULL)
		goto out;
	ok(strncmp(sp_pgembed_url(a), "postgresql:///spearhead?host=/", 30) == 0,
	   "the URL is a libpq URL with the socket directory");
	printf("# url: %s\n", sp_pgembed_url(a));
	snprintf(url_copy, sizeof(url_copy), "%s", sp_pgembed_url(a));
	ok(select_one(sp_pgembed_url(a)), "SELECT 1 through the URL in database spearhead");

	b = sp_pgembed_start(dir, err, sizeof(err));
	if (b == NULL)
		printf("# %s\n", err);
	ok(b != NULL, "a second start on the same directory succeeds");
	ok(b != NULL && strcmp(sp_pgembed_url(b), sp_pgembed_url(a)) == 0,
	   "the second start gives the same URL");
	sp_pgembed_stop(b); /* not owned: the server keeps running */
	ok(select_one(url_copy), "stopping the reusing handle leaves the server running");

	sp_pgembed_stop(a);
	ok(PQping(url_copy) == PQPING_NO_RESPONSE, "the server is down after the owner stops it");
	ok(access(pidfile, F_OK) != 0, "postmaster.pid is gone");

	c = sp_pgembed_start(dir, err, sizeof(err));
	if (c == NULL)
		printf("# %s\n", err);
	ok(c != NULL, "starting again restarts the existing cluster");
	ok(c != NULL && select_one(sp_pgembed_url(c)), "SELECT 1 after the restart");
	sp_pgembed_stop(c);
	ok(PQping(url_copy) == PQPING_NO_RESPONSE, "the server is down again");

out:
	ok(nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0, "temporary directory removed");
	free(pidfile);
	printf("1..%d\n", test_num);
	return failures != 0;
}
