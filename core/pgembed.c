/* pgembed.c — the embedded PostgreSQL cluster kept in the state directory. */
#include "pgembed.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <locale.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#define SP_PGEMBED_PORT     "5432"
#define SP_PGEMBED_DB       "spearhead"
#define SP_PGEMBED_ROLE     "spearhead"
#define SP_PGEMBED_OSUSER   "postgres"
#define SP_PGEMBED_TIMEOUT  "60"
#define SP_PGEMBED_READY_MS 60000
#define SP_PGEMBED_OUTMAX   2048

#define SP_PGEMBED_NO_BINARIES                                                                     \
	"PostgreSQL server binaries (initdb, pg_ctl) not found: install them (Debian/Ubuntu: "     \
	"apt-get install postgresql) or set PG_BINDIR, or configure a database URL"

struct sp_pgembed {
	char *state_dir; /* absolute */
	char *pg_dir;    /* state_dir/pg: the cluster */
	char *run_dir;   /* state_dir/run: the unix socket */
	char *log_path;  /* state_dir/pg.log */
	char *bindir;
	char *initdb;
	char *pg_ctl;
	char *url;
	bool owned;     /* started by us: sp_pgembed_stop stops it */
	bool drop_priv; /* running as root: children run as SP_PGEMBED_OSUSER */
	uid_t uid;
	gid_t gid;
	gid_t *groups;
	int ngroups;
};

/* Exit code of a child for which exec or the privilege drop failed. */
#define SP_CHILD_FAILED 127

__attribute__((format(printf, 3, 4))) static void seterr(char *err, size_t errlen, const char *fmt,
                                                         ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
	va_list ap;

	fputs("spearhead: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static char *joinpath(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = malloc(la + lb + 2);

	if (p == NULL)
		return NULL;
	memcpy(p, a, la);
	p[la] = '/';
	memcpy(p + la + 1, b, lb + 1);
	return p;
}

static bool is_exec(const char *dir, const char *name)
{
	char *p = joinpath(dir, name);
	bool ok = p != NULL && access(p, X_OK) == 0;

	free(p);
	return ok;
}

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* mkdir -p with the given mode for the directories it creates. */
static int mkdir_p(const char *path, mode_t mode)
{
	char *p = strdup(path);
	int rc = 0;

	if (p == NULL)
		return -ENOMEM;
	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST) {
			rc = -errno;
			break;
		}
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
	if (rc == 0) {
		struct stat st;
		if (stat(path, &st) < 0)
			rc = -errno;
		else if (!S_ISDIR(st.st_mode))
			rc = -ENOTDIR;
	}
	return rc;
}

/* Runs argv[0] (an absolute path, or a name looked up in PATH when search is set) with
 * stdin from /dev/null and stdout+stderr captured into out (the last outlen-1 bytes).
 * With pg->drop_priv the child runs as the cluster user; with new_session it gets its
 * own session, so a ^C at the terminal does not reach the postmaster. Returns 0 and the
 * exit status in *status (128+signal when killed), or -errno when it could not run. */
static int run(const struct sp_pgembed *pg, bool drop, bool new_session, bool search,
               char *const argv[], char *out, size_t outlen, int *status)
{
	int fds[2];
	pid_t pid;
	size_t used = 0;
	int ws;

	if (outlen > 0)
		out[0] = '\0';
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		int e = errno;
		close(fds[0]);
		close(fds[1]);
		return -e;
	}
	if (pid == 0) {
		/* Child: only async-signal-safe calls until exec. */
		struct sigaction sa;
		sigset_t none;
		int nul;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		for (int sig = 1; sig < NSIG; sig++)
			if (sig != SIGKILL && sig != SIGSTOP)
				sigaction(sig, &sa, NULL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		nul = open("/dev/null", O_RDONLY);
		if (nul < 0 || dup2(nul, 0) < 0 || dup2(fds[1], 1) < 0 || dup2(fds[1], 2) < 0)
			_exit(SP_CHILD_FAILED);
		if (close_range(3, ~0U, 0) < 0) {
			long max = sysconf(_SC_OPEN_MAX);
			for (long fd = 3; fd < (max > 0 ? max : 1024); fd++)
				close((int)fd);
		}
		if (new_session)
			setsid();
		if (drop) {
			static const char msg[] = "cannot switch to user " SP_PGEMBED_OSUSER "\n";
			if (setgroups((size_t)pg->ngroups, pg->groups) < 0 || setgid(pg->gid) < 0 ||
			    setuid(pg->uid) < 0) {
				ssize_t w = write(2, msg, sizeof(msg) - 1);
				(void)w;
				_exit(SP_CHILD_FAILED);
			}
		}
		/* The cluster user may not be able to read our working directory. */
		if (chdir(pg != NULL && pg->state_dir != NULL ? pg->state_dir : "/") < 0 &&
		    chdir("/") < 0)
			_exit(SP_CHILD_FAILED);
		if (search)
			execvp(argv[0], argv);
		else
			execv(argv[0], argv);
		_exit(SP_CHILD_FAILED);
	}
	close(fds[1]);
	for (;;) {
		char buf[512];
		ssize_t n = read(fds[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (outlen < 2)
			continue;
		for (ssize_t i = 0; i < n; i++) {
			if (used == outlen - 1) { /* keep the tail: drop the older half */
				size_t half = used / 2;
				memmove(out, out + half, used - half);
				used -= half;
			}
			out[used++] = buf[i];
		}
		out[used] = '\0';
	}
	close(fds[0]);
	while (waitpid(pid, &ws, 0) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	if (WIFEXITED(ws))
		*status = WEXITSTATUS(ws);
	else if (WIFSIGNALED(ws))
		*status = 128 + WTERMSIG(ws);
	else
		*status = SP_CHILD_FAILED;
	return 0;
}

/* Trims trailing blanks in place, returns s. */
static char *rtrim(char *s)
{
	size_t n = strlen(s);

	while (n > 0 &&
	       (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

/* Parses "15" or "9.6" into 1500 / 906; -1 when not a version. */
static long parse_version(const char *s)
{
	char *end;
	long major, minor = 0;

	if (*s < '0' || *s > '9')
		return -1;
	major = strtol(s, &end, 10);
	if (*end == '.') {
		const char *m = end + 1;
		if (*m < '0' || *m > '9')
			return -1;
		minor = strtol(m, &end, 10);
	}
	if (*end != '\0' || major > 100000 || minor > 99)
		return -1;
	return major * 100 + minor;
}

/* Finds the directory holding initdb and pg_ctl; NULL (err set) when none. */
static char *find_bindir(char *err, size_t errlen)
{
	const char *env = getenv("PG_BINDIR");
	char out[SP_PGEMBED_OUTMAX];
	char *argv[] = { "pg_config", "--bindir", NULL };
	int status;
	DIR *d;
	char *best = NULL;
	long best_ver = -1;

	if (env != NULL && *env != '\0') {
		if (is_exec(env, "initdb") && is_exec(env, "pg_ctl"))
			return strdup(env);
		seterr(err, errlen,
		       "PG_BINDIR=%s does not contain initdb and pg_ctl; " SP_PGEMBED_NO_BINARIES,
		       env);
		return NULL;
	}
	if (run(NULL, false, false, true, argv, out, sizeof(out), &status) == 0 && status == 0) {
		rtrim(out);
		if (out[0] == '/' && strchr(out, '\n') == NULL && is_exec(out, "initdb") &&
		    is_exec(out, "pg_ctl"))
			return strdup(out);
	}
	d = opendir("/usr/lib/postgresql");
	if (d != NULL) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			long ver = parse_version(de->d_name);
			char *dir, *bin;
			if (ver < 0 || ver <= best_ver)
				continue;
			dir = joinpath("/usr/lib/postgresql", de->d_name);
			bin = dir != NULL ? joinpath(dir, "bin") : NULL;
			free(dir);
			if (bin != NULL && is_exec(bin, "initdb") && is_exec(bin, "pg_ctl")) {
				free(best);
				best = bin;
				best_ver = ver;
			} else {
				free(bin);
			}
		}
		closedir(d);
	}
	if (best == NULL)
		seterr(err, errlen, "%s", SP_PGEMBED_NO_BINARIES);
	return best;
}

/* chown -R without following symbolic links. */
static int chown_r(const char *path, uid_t uid, gid_t gid)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	int rc = 0;

	if (lchown(path, uid, gid) < 0)
		return -errno;
	if (lstat(path, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return 0;
	d = opendir(path);
	if (d == NULL)
		return -errno;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		char *child;
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		child = joinpath(path, de->d_name);
		rc = child != NULL ? chown_r(child, uid, gid) : -ENOMEM;
		free(child);
	}
	closedir(d);
	return rc;
}

/* Checks, in a child running as the cluster user, that it can use dir. */
static bool reachable_by_cluster_user(const struct sp_pgembed *pg, const char *dir)
{
	pid_t pid = fork();
	int ws;

	if (pid < 0)
		return false;
	if (pid == 0) {
		if (setgroups((size_t)pg->ngroups, pg->groups) < 0 || setgid(pg->gid) < 0 ||
		    setuid(pg->uid) < 0)
			_exit(2);
		_exit(access(dir, R_OK | W_OK | X_OK) == 0 ? 0 : 1);
	}
	while (waitpid(pid, &ws, 0) < 0)
		if (errno != EINTR)
			return false;
	return WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
}

/* Prepares the cluster user (when root) and the directories it needs. */
static int prepare_dirs(struct sp_pgembed *pg, char *err, size_t errlen)
{
	struct stat st;
	int fd;

	if (mkdir(pg->pg_dir, 0700) < 0 && errno != EEXIST) {
		seterr(err, errlen, "cannot create %s: %s", pg->pg_dir, strerror(errno));
		return -1;
	}
	if (mkdir(pg->run_dir, 0700) < 0 && errno != EEXIST) {
		seterr(err, errlen, "cannot create %s: %s", pg->run_dir, strerror(errno));
		return -1;
	}
	fd = open(pg->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		seterr(err, errlen, "cannot open %s: %s", pg->log_path, strerror(errno));
		return -1;
	}
	if (pg->drop_priv && fchown(fd, pg->uid, pg->gid) < 0) {
		seterr(err, errlen, "cannot chown %s: %s", pg->log_path, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	if (!pg->drop_priv)
		return 0;

	/* The cluster user must be able to traverse the state directory. */
	if (stat(pg->state_dir, &st) < 0) {
		seterr(err, errlen, "cannot stat %s: %s", pg->state_dir, strerror(errno));
		return -1;
	}
	if (st.st_uid != pg->uid && (st.st_mode & S_IXOTH) == 0 &&
	    chmod(pg->state_dir, (st.st_mode & 07777) | S_IXOTH) < 0) {
		seterr(err, errlen, "cannot make %s searchable by user " SP_PGEMBED_OSUSER ": %s",
		       pg->state_dir, strerror(errno));
		return -1;
	}
	if (stat(pg->pg_dir, &st) < 0) {
		seterr(err, errlen, "cannot stat %s: %s", pg->pg_dir, strerror(errno));
		return -1;
	}
	if ((st.st_uid != pg->uid || st.st_gid != pg->gid) &&
	    chown_r(pg->pg_dir, pg->uid, pg->gid) < 0) {
		seterr(err, errlen, "cannot give %s to user " SP_PGEMBED_OSUSER ": %s", pg->pg_dir,
		       strerror(errno));
		return -1;
	}
	if (chown_r(pg->run_dir, pg->uid, pg->gid) < 0) {
		seterr(err, errlen, "cannot give %s to user " SP_PGEMBED_OSUSER ": %s", pg->run_dir,
		       strerror(errno));
		return -1;
	}
	if (!reachable_by_cluster_user(pg, pg->pg_dir)) {
		seterr(err, errlen,
		       "%s is not reachable by user " SP_PGEMBED_OSUSER
		       " (a parent directory lacks search permission): choose another state "
		       "directory or chmod o+x its parents",
		       pg->pg_dir);
		return -1;
	}
	return 0;
}

/* Appends the last lines of the server log to err, after what is there. */
static void append_log_tail(const struct sp_pgembed *pg, char *err, size_t errlen)
{
	char buf[600];
	size_t used = strlen(err);
	FILE *f = fopen(pg->log_path, "re");
	size_t n;
	long size;

	if (f == NULL)
		return;
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > (long)sizeof(buf) - 1)
		fseek(f, size - (long)sizeof(buf) + 1, SEEK_SET);
	else
		fseek(f, 0, SEEK_SET);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	rtrim(buf);
	if (buf[0] != '\0' && used < errlen)
		snprintf(err + used, errlen - used, "; end of %s:\n%s", pg->log_path, buf);
}

static int initdb(struct sp_pgembed *pg, char *err, size_t errlen)
{
	char out[SP_PGEMBED_OUTMAX];
	locale_t loc = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);
	const char *locale = loc != (locale_t)0 ? "--locale=C.UTF-8" : "--locale=C";
	char *argv[] = { pg->initdb,     "-D", pg->pg_dir,      "-A",
		         "trust",        "-U", SP_PGEMBED_ROLE, "--encoding=UTF8",
		         (char *)locale, NULL };
	int status, rc;

	if (loc != (locale_t)0)
		freelocale(loc);
	say("initialising PostgreSQL cluster in %s", pg->pg_dir);
	rc = run(pg, pg->drop_priv, false, false, argv, out, sizeof(out), &status);
	if (rc < 0) {
		seterr(err, errlen, "cannot run %s: %s", pg->initdb, strerror(-rc));
		return -1;
	}
	if (status != 0) {
		seterr(err, errlen, "initdb failed (exit %d): %s", status, rtrim(out));
		return -1;
	}
	return 0;
}

/* pg_ctl status: 1 running, 0 not running, -1 error (err set). */
static int cluster_running(struct sp_pgembed *pg, char *err, size_t errlen)
{
	char out[SP_PGEMBED_OUTMAX];
	char *argv[] = { pg->pg_ctl, "status", "-D", pg->pg_dir, NULL };
	int status, rc;

	rc = run(pg, pg->drop_priv, false, false, argv, out, sizeof(out), &status);
	if (rc < 0) {
		seterr(err, errlen, "cannot run %s: %s", pg->pg_ctl, strerror(-rc));
		return -1;
	}
	if (status == 0)
		return 1;
	if (status == 3)
		return 0;
	seterr(err, errlen, "pg_ctl status failed (exit %d): %s", status, rtrim(out));
	return -1;
}

/* Returns s as one single-quoted /bin/sh word (new string, NULL when out of memory). */
static char *shell_quote(const char *s)
{
	size_t n = 2;
	char *q, *p;

	for (const char *c = s; *c; c++)
		n += *c == '\'' ? 4 : 1;
	q = malloc(n + 1);
	if (q == NULL)
		return NULL;
	p = q;
	*p++ = '\'';
	for (const char *c = s; *c; c++) {
		if (*c == '\'') {
			memcpy(p, "'\\''", 4);
			p += 4;
		} else {
			*p++ = *c;
		}
	}
	*p++ = '\'';
	*p = '\0';
	return q;
}

/* The -o string for pg_ctl (new string). pg_ctl hands it to /bin/sh, and
 * unix_socket_directories is a list where a double-quoted element may hold commas and
 * blanks: quote for both. */
static char *server_options(const char *run_dir)
{
	static const char fixed[] = "-c listen_addresses='' -c port=" SP_PGEMBED_PORT
	                            " -c unix_socket_permissions=0700 -c unix_socket_directories=";
	size_t n = strlen(run_dir) + 3;
	char *dq = malloc(n), *sq, *opts;

	if (dq == NULL)
		return NULL;
	snprintf(dq, n, "\"%s\"", run_dir);
	sq = shell_quote(dq);
	free(dq);
	if (sq == NULL)
		return NULL;
	n = sizeof(fixed) + strlen(sq);
	opts = malloc(n);
	if (opts != NULL)
		snprintf(opts, n, "%s%s", fixed, sq);
	free(sq);
	return opts;
}

static int start_server(struct sp_pgembed *pg, char *err, size_t errlen)
{
	char out[SP_PGEMBED_OUTMAX];
	char *opts = server_options(pg->run_dir);
	char *argv[] = { pg->pg_ctl,         "start", "-w",       "-t",
		         SP_PGEMBED_TIMEOUT, "-D",    pg->pg_dir, "-l",
		         pg->log_path,       "-o",    opts,       NULL };
	int status, rc;

	if (opts == NULL) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	say("starting PostgreSQL (log: %s)", pg->log_path);
	rc = run(pg, pg->drop_priv, true, false, argv, out, sizeof(out), &status);
	free(opts);
	if (rc < 0) {
		seterr(err, errlen, "cannot run %s: %s", pg->pg_ctl, strerror(-rc));
		return -1;
	}
	if (status != 0) {
		seterr(err, errlen, "PostgreSQL failed to start (pg_ctl exit %d): %s", status,
		       rtrim(out));
		append_log_tail(pg, err, errlen);
		return -1;
	}
	return 0;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Waits until the server accepts connections (a reused one may still be starting), then
 * creates the database when missing. */
static int ensure_database(struct sp_pgembed *pg, char *err, size_t errlen)
{
	const char *const keys[] = { "host", "port", "dbname", "user", "connect_timeout", NULL };
	const char *const vals[] = { pg->run_dir, SP_PGEMBED_PORT,
		                     "postgres",  SP_PGEMBED_ROLE,
		                     "10",        NULL };
	const char *const params[] = { SP_PGEMBED_DB };
	PGconn *conn;
	PGresult *res;
	int rc = -1;

	long deadline = now_ms() + SP_PGEMBED_READY_MS;

	for (;;) {
		PGPing ping = PQpingParams(keys, vals, 0);
		if (ping == PQPING_OK)
			break;
		if (ping == PQPING_NO_ATTEMPT || now_ms() >= deadline) {
			seterr(err, errlen, "PostgreSQL in %s does not accept connections on %s%s",
			       pg->pg_dir, pg->run_dir,
			       pg->owned ? ""
			                 : " (postmaster.pid names a live process: if the server "
			                   "was killed, check that process and remove the stale "
			                   "postmaster.pid)");
			append_log_tail(pg, err, errlen);
			return -1;
		}
		sleep_ms(100);
	}
	conn = PQconnectdbParams(keys, vals, 0);
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
		seterr(err, errlen, "cannot connect to PostgreSQL in %s: %s", pg->run_dir,
		       conn != NULL ? rtrim(PQerrorMessage(conn)) : "out of memory");
		PQfinish(conn);
		return -1;
	}
	res = PQexecParams(conn, "SELECT 1 FROM pg_database WHERE datname = $1", 1, NULL, params,
	                   NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		seterr(err, errlen, "cannot list databases: %s", rtrim(PQerrorMessage(conn)));
		goto out;
	}
	if (PQntuples(res) == 0) {
		PQclear(res);
		res = PQexec(conn, "CREATE DATABASE " SP_PGEMBED_DB);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
			if (state == NULL || strcmp(state, "42P04") != 0) {
				seterr(err, errlen, "cannot create database " SP_PGEMBED_DB ": %s",
				       rtrim(PQerrorMessage(conn)));
				goto out;
			}
		}
	}
	rc = 0;
out:
	PQclear(res);
	PQfinish(conn);
	return rc;
}

/* postgresql:///spearhead?host=<percent-encoded run dir>&port=5432&user=spearhead */
static char *make_url(const char *run_dir)
{
	static const char head[] = "postgresql:///" SP_PGEMBED_DB "?host=";
	static const char tail[] = "&port=" SP_PGEMBED_PORT "&user=" SP_PGEMBED_ROLE;
	static const char hex[] = "0123456789ABCDEF";
	char *url = malloc(sizeof(head) + 3 * strlen(run_dir) + sizeof(tail));
	char *p;

	if (url == NULL)
		return NULL;
	p = url + sizeof(head) - 1;
	memcpy(url, head, sizeof(head) - 1);
	for (const unsigned char *c = (const unsigned char *)run_dir; *c; c++) {
		if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		    (*c >= '0' && *c <= '9') || strchr("/-._~", *c) != NULL) {
			*p++ = (char)*c;
		} else {
			*p++ = '%';
			*p++ = hex[*c >> 4];
			*p++ = hex[*c & 15];
		}
	}
	memcpy(p, tail, sizeof(tail));
	return url;
}

static void pg_free(struct sp_pgembed *pg)
{
	if (pg == NULL)
		return;
	free(pg->state_dir);
	free(pg->pg_dir);
	free(pg->run_dir);
	free(pg->log_path);
	free(pg->bindir);
	free(pg->initdb);
	free(pg->pg_ctl);
	free(pg->url);
	free(pg->groups);
	free(pg);
}

/* Resolves the cluster user when running as root. */
static int resolve_user(struct sp_pgembed *pg, char *err, size_t errlen)
{
	struct passwd *pw;
	int n = 16;

	pg->drop_priv = geteuid() == 0;
	if (!pg->drop_priv)
		return 0;
	errno = 0;
	pw = getpwnam(SP_PGEMBED_OSUSER);
	if (pw == NULL) {
		seterr(err, errlen,
		       "running as root, and PostgreSQL refuses to: the embedded cluster runs as "
		       "the system user \"" SP_PGEMBED_OSUSER "\", which does not exist; install "
		       "PostgreSQL (Debian/Ubuntu: apt-get install postgresql) or create the user "
		       "(useradd --system --user-group " SP_PGEMBED_OSUSER ")");
		return -1;
	}
	pg->uid = pw->pw_uid;
	pg->gid = pw->pw_gid;
	for (;;) {
		int got = n;
		gid_t *g = realloc(pg->groups, sizeof(gid_t) * (size_t)n);
		if (g == NULL) {
			seterr(err, errlen, "out of memory");
			return -1;
		}
		pg->groups = g;
		if (getgrouplist(pw->pw_name, pw->pw_gid, pg->groups, &got) >= 0) {
			pg->ngroups = got;
			break;
		}
		if (got <= n || n > 65536) { /* no growth asked for: just the primary group */
			pg->groups[0] = pw->pw_gid;
			pg->ngroups = 1;
			break;
		}
		n = got;
	}
	return 0;
}

/* Characters pg_ctl would misread inside the double-quoted paths it hands to /bin/sh, and
 * the comma, which separates hosts in libpq's host parameter. */
static bool path_is_safe(const char *p)
{
	for (; *p; p++)
		if (*p == '"' || *p == '$' || *p == '`' || *p == '\\' || *p == ',' ||
		    (unsigned char)*p < 0x20)
			return false;
	return true;
}

struct sp_pgembed *sp_pgembed_start(const char *state_dir, char *err, size_t errlen)
{
	struct sp_pgembed *pg = NULL;
	char abs[PATH_MAX];
	char *pidfile = NULL, *version = NULL, *lockpath = NULL;
	int lockfd = -1, rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (state_dir == NULL || *state_dir == '\0') {
		seterr(err, errlen, "no state directory given");
		return NULL;
	}
	if (!path_is_safe(state_dir)) {
		seterr(err, errlen,
		       "state directory %s contains a character PostgreSQL tools cannot take in "
		       "a path (\", $, `, \\, comma or a control character): choose another",
		       state_dir);
		return NULL;
	}
	rc = mkdir_p(state_dir, 0700);
	if (rc < 0) {
		seterr(err, errlen, "cannot create state directory %s: %s", state_dir,
		       strerror(-rc));
		return NULL;
	}
	if (realpath(state_dir, abs) == NULL) {
		seterr(err, errlen, "cannot resolve state directory %s: %s", state_dir,
		       strerror(errno));
		return NULL;
	}
	if (!path_is_safe(abs)) {
		seterr(err, errlen,
		       "state directory %s contains a character PostgreSQL tools cannot take in "
		       "a path (\", $, `, \\, comma or a control character): choose another",
		       abs);
		return NULL;
	}
	/* Postgres needs run/.s.PGSQL.5432 to fit in sockaddr_un.sun_path. */
	if (strlen(abs) + sizeof("/run/.s.PGSQL." SP_PGEMBED_PORT) >
	    sizeof(((struct sockaddr_un *)0)->sun_path)) {
		seterr(err, errlen,
		       "state directory path %s is too long for a unix socket (at most %zu "
		       "characters): choose a shorter one",
		       abs,
		       sizeof(((struct sockaddr_un *)0)->sun_path) -
		           sizeof("/run/.s.PGSQL." SP_PGEMBED_PORT));
		return NULL;
	}

	pg = calloc(1, sizeof(*pg));
	if (pg == NULL)
		goto nomem;
	pg->state_dir = strdup(abs);
	pg->pg_dir = joinpath(abs, "pg");
	pg->run_dir = joinpath(abs, "run");
	pg->log_path = joinpath(abs, "pg.log");
	lockpath = joinpath(abs, "pgembed.lock");
	pidfile = joinpath(abs, "pg/postmaster.pid");
	version = joinpath(abs, "pg/PG_VERSION");
	if (pg->state_dir == NULL || pg->pg_dir == NULL || pg->run_dir == NULL ||
	    pg->log_path == NULL || lockpath == NULL || pidfile == NULL || version == NULL)
		goto nomem;

	pg->bindir = find_bindir(err, errlen);
	if (pg->bindir == NULL)
		goto fail;
	pg->initdb = joinpath(pg->bindir, "initdb");
	pg->pg_ctl = joinpath(pg->bindir, "pg_ctl");
	if (pg->initdb == NULL || pg->pg_ctl == NULL)
		goto nomem;
	if (resolve_user(pg, err, errlen) < 0)
		goto fail;

	/* One spearhead at a time sets the cluster up; the others then reuse it. */
	lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lockfd < 0) {
		seterr(err, errlen, "cannot open %s: %s", lockpath, strerror(errno));
		goto fail;
	}
	while (flock(lockfd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			seterr(err, errlen, "cannot lock %s: %s", lockpath, strerror(errno));
			goto fail;
		}
	}

	if (prepare_dirs(pg, err, errlen) < 0)
		goto fail;
	if (!exists(version)) {
		DIR *d = opendir(pg->pg_dir);
		struct dirent *de;
		bool empty = true;
		if (d != NULL) {
			while ((de = readdir(d)) != NULL)
				if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
					empty = false;
			closedir(d);
		}
		if (!empty) {
			seterr(err, errlen,
			       "%s is not empty but holds no PostgreSQL cluster (no PG_VERSION): "
			       "move it away",
			       pg->pg_dir);
			goto fail;
		}
		if (initdb(pg, err, errlen) < 0)
			goto fail;
	}

	rc = exists(pidfile) ? cluster_running(pg, err, errlen) : 0;
	if (rc < 0)
		goto fail;
	if (rc == 1) {
		say("reusing the PostgreSQL server already running in %s", pg->pg_dir);
		pg->owned = false;
	} else {
		if (start_server(pg, err, errlen) < 0)
			goto fail;
		pg->owned = true;
	}
	if (ensure_database(pg, err, errlen) < 0)
		goto fail;
	pg->url = make_url(pg->run_dir);
	if (pg->url == NULL)
		goto nomem;
	say("PostgreSQL ready (socket in %s)", pg->run_dir);
	close(lockfd);
	free(lockpath);
	free(pidfile);
	free(version);
	return pg;

nomem:
	seterr(err, errlen, "out of memory");
fail:
	if (pg != NULL && pg->owned)
		sp_pgembed_stop(pg);
	else
		pg_free(pg);
	if (lockfd >= 0)
		close(lockfd);
	free(lockpath);
	free(pidfile);
	free(version);
	return NULL;
}

const char *sp_pgembed_url(const struct sp_pgembed *pg)
{
	return pg->url;
}

void sp_pgembed_stop(struct sp_pgembed *pg)
{
	char out[SP_PGEMBED_OUTMAX];
	int status, rc;

	if (pg == NULL)
		return;
	if (pg->owned) {
		char *argv[] = { pg->pg_ctl, "stop", "-D", pg->pg_dir,         "-m",
			         "fast",     "-w",   "-t", SP_PGEMBED_TIMEOUT, NULL };
		say("stopping PostgreSQL");
		rc = run(pg, pg->drop_priv, false, false, argv, out, sizeof(out), &status);
		if (rc < 0)
			say("cannot run %s: %s", pg->pg_ctl, strerror(-rc));
		else if (status != 0)
			say("pg_ctl stop failed (exit %d): %s", status, rtrim(out));
	}
	pg_free(pg);
}

void sp_pgembed_release(struct sp_pgembed *pg)
{
	pg_free(pg);
}
