"""sptest - helpers for Spearhead integration tests (Python 3 standard library only).

    import sys, os
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
    from sptest import Tap, PgCluster, Server

    tap = Tap()
    with tap.guard('server answers'), PgCluster() as pg, Server(database=pg.url()) as srv:
        r = srv.request('GET', '/health')
        tap.eq(r.status, 200, 'GET /health is 200')
    tap.done()

PgCluster: a throwaway PostgreSQL cluster in a temporary directory (unix socket only,
trust auth, fsync off), run as the system user "postgres" when the tests run as root.
Server: the spearhead binary serving on 127.0.0.1:<ephemeral port>, readiness taken
from its --port-file. Tap: TAP output with the plan at the end.

Environment: PG_BINDIR (PostgreSQL server binaries), SPEARHEAD_BIN (the binary),
SP_BUILDDIR (where the binary is when SPEARHEAD_BIN is unset; default the cwd),
SP_TEST_DATABASE_URL (default database for Server), SP_TEST_KEEP=1 (keep temp dirs).
"""

import atexit
import contextlib
import http.client
import json
import os
import pwd
import re
import shlex
import shutil
import signal as _signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse

__all__ = ['Tap', 'PgCluster', 'Server', 'Response', 'find_pg_bindir', 'HarnessError']

PG_PORT = 5432
PG_OS_USER = 'postgres'
NO_BINARIES = ('PostgreSQL server binaries (initdb, pg_ctl) not found: install them '
               '(Debian/Ubuntu: apt-get install postgresql) or set PG_BINDIR')


class HarnessError(Exception):
    """The test environment (not the code under test) failed."""


def _keep():
    return os.environ.get('SP_TEST_KEEP', '') not in ('', '0')


# ---------------------------------------------------------------------------- TAP

class Tap:
    """TAP producer; the plan is printed by done(), at the end (valid TAP)."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.count = 0
        self.failed = 0

    def _print(self, line):
        print(line, file=self.out, flush=True)

    def diag(self, msg):
        """Prints msg as '# ' lines (diagnostics, ignored by the TAP parser)."""
        for line in str(msg).splitlines() or ['']:
            self._print('# ' + line)

    def ok(self, cond, desc=''):
        """One test point; returns bool(cond)."""
        self.count += 1
        good = bool(cond)
        if not good:
            self.failed += 1
        desc = str(desc).replace('\n', ' ').replace('#', '\\#')
        self._print('%sok %d%s' % ('' if good else 'not ', self.count,
                                   ' - ' + desc if desc else ''))
        return good

    def eq(self, got, expected, desc=''):
        """ok(got == expected); prints got/expected on failure."""
        good = self.ok(got == expected, desc)
        if not good:
            self.diag('     got: %r' % (got,))
            self.diag('expected: %r' % (expected,))
        return good

    def skip(self, desc, reason=''):
        self.count += 1
        self._print('ok %d - %s # SKIP %s' % (self.count, desc, reason))

    @contextlib.contextmanager
    def guard(self, desc='no unexpected exception'):
        """Turns an exception raised in the block into a 'not ok' with the traceback,
        so the remaining blocks (and done()) still run."""
        try:
            yield self
        except Exception as e:  # noqa: BLE001 - reporting is the point
            self.ok(False, '%s (%s: %s)' % (desc, type(e).__name__, e))
            self.diag(traceback.format_exc().rstrip())

    def done(self):
        """Prints the plan and exits: 1 when a test failed, else 0. Every server this
        process ran is checked for sanitizer reports (a leak found at exit, say), so no
        test can pass with one."""
        self.ok(not SANITIZER_REPORTS, 'no sanitizer report from any server process')
        for where, excerpt in SANITIZER_REPORTS:
            self.diag('%s:\n%s' % (where, excerpt))
        self._print('1..%d' % self.count)
        if self.failed:
            self.diag('failed %d of %d' % (self.failed, self.count))
        sys.exit(1 if self.failed else 0)


# ---------------------------------------------------------------------------- PostgreSQL

def wait_for(pred, timeout=15.0, step=0.05):
    """Calls pred() until it returns a true value, and returns that value; after timeout
    seconds returns the last (false) one. A long timeout costs nothing when things work."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def _version_key(name):
    try:
        return tuple(int(x) for x in name.split('.'))
    except ValueError:
        return None


def _has_server_bins(d):
    return all(os.access(os.path.join(d, b), os.X_OK) for b in ('initdb', 'pg_ctl'))


def find_pg_bindir():
    """$PG_BINDIR, else `pg_config --bindir` when it holds initdb, else the newest
    /usr/lib/postgresql/<version>/bin; HarnessError when none."""
    env = os.environ.get('PG_BINDIR')
    if env:
        if _has_server_bins(env):
            return env
        raise HarnessError('PG_BINDIR=%s does not contain initdb and pg_ctl; %s'
                           % (env, NO_BINARIES))
    try:
        out = subprocess.run(['pg_config', '--bindir'], capture_output=True, text=True,
                             timeout=30).stdout.strip()
        if out and _has_server_bins(out):
            return out
    except (OSError, subprocess.SubprocessError):
        pass
    best = None
    try:
        for name in os.listdir('/usr/lib/postgresql'):
            key = _version_key(name)
            d = os.path.join('/usr/lib/postgresql', name, 'bin')
            if key is not None and _has_server_bins(d) and (best is None or key > best[0]):
                best = (key, d)
    except OSError:
        pass
    if best is None:
        raise HarnessError(NO_BINARIES)
    return best[1]


def _pg_user():
    """(uid, gid) of the cluster user when running as root, else None."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(PG_OS_USER)
    except KeyError:
        raise HarnessError('running as root: the test cluster runs as the system user "%s", '
                           'which does not exist; install PostgreSQL (apt-get install '
                           'postgresql) or create the user' % PG_OS_USER) from None
    return pw.pw_uid, pw.pw_gid


def _percent(s):
    return urllib.parse.quote(s, safe='/')


def _make_tempdir(prefix):
    """A temporary directory with a short path (unix socket paths are limited)."""
    base = tempfile.gettempdir()
    if len(base) > 60:
        base = '/tmp'
    return tempfile.mkdtemp(prefix=prefix, dir=base)


_TERM_HANDLER_SET = False


def _exit_on_sigterm():
    """Turns SIGTERM (e.g. a test-runner timeout) into SystemExit so that context
    managers and atexit clean-ups still run."""
    global _TERM_HANDLER_SET
    if _TERM_HANDLER_SET:
        return
    _TERM_HANDLER_SET = True
    try:
        if _signal.getsignal(_signal.SIGTERM) == _signal.SIG_DFL:
            _signal.signal(_signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    except ValueError:  # not the main thread
        pass


class PgCluster:
    """A throwaway PostgreSQL cluster (context manager). The cluster is created and
    started on enter (or by start()), stopped and deleted on exit, on close() and at
    interpreter exit."""

    SETTINGS = {
        'listen_addresses': '',
        'fsync': 'off',
        'full_page_writes': 'off',
        'synchronous_commit': 'off',
        'max_connections': '200',
    }

    def __init__(self, settings=None):
        self.bindir = find_pg_bindir()
        self.owner = _pg_user()
        self.port = PG_PORT
        self.settings = dict(self.SETTINGS)
        self.settings.update(settings or {})
        self.dir = _make_tempdir('sp-pg-')
        self.datadir = os.path.join(self.dir, 'data')
        self.sockdir = self.dir
        self.logfile = os.path.join(self.dir, 'postgres.log')
        self._initialised = False
        self._closed = False
        # Other users (the cluster user, a spearhead dropping root) must reach the socket.
        os.chmod(self.dir, 0o755)
        if self.owner:
            os.chown(self.dir, *self.owner)
        _exit_on_sigterm()
        atexit.register(self.close)

    # -- plumbing
    def _bin(self, name):
        return os.path.join(self.bindir, name)

    def _run_as_owner(self, argv, check=True, timeout=120):
        if self.owner:
            argv = ['runuser', '-u', PG_OS_USER, '--'] + argv
        p = subprocess.run(argv, cwd=self.dir, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise HarnessError('%s failed (exit %d):\n%s%s' % (
                ' '.join(shlex.quote(a) for a in argv), p.returncode, p.stdout, p.stderr))
        return p

    def _options(self):
        opts = ['-c %s=%s' % (k, shlex.quote(str(v))) for k, v in self.settings.items()]
        opts.append('-c port=%d' % self.port)
        opts.append('-c unix_socket_directories=%s' % shlex.quote('"%s"' % self.sockdir))
        return ' '.join(opts)

    # -- lifecycle
    def initdb(self):
        if self._initialised:
            return
        self._run_as_owner([self._bin('initdb'), '-D', self.datadir, '-A', 'trust',
                            '--nosync', '-U', 'postgres', '--encoding=UTF8', '--locale=C'])
        self._initialised = True

    def start(self):
        """initdb when needed, then pg_ctl start -w."""
        self.initdb()
        p = self._run_as_owner([self._bin('pg_ctl'), 'start', '-w', '-t', '60', '-D',
                                self.datadir, '-l', self.logfile, '-o', self._options()],
                               check=False)
        if p.returncode != 0:
            raise HarnessError('PostgreSQL did not start:\n%s%s\n%s' % (
                p.stdout, p.stderr, self.log_text()[-3000:]))
        return self

    def stop(self, mode='fast'):
        self._run_as_owner([self._bin('pg_ctl'), 'stop', '-w', '-t', '60', '-m', mode, '-D',
                            self.datadir])

    def restart(self):
        self._run_as_owner([self._bin('pg_ctl'), 'restart', '-m', 'fast', '-w', '-t', '60',
                            '-D', self.datadir, '-l', self.logfile, '-o', self._options()])

    def running(self):
        if not self._initialised:
            return False
        return self._run_as_owner([self._bin('pg_ctl'), 'status', '-D', self.datadir],
                                  check=False).returncode == 0

    def close(self):
        """Stops the server (immediate mode as a fallback) and deletes the directory."""
        if self._closed:
            return
        self._closed = True
        try:
            if os.path.exists(os.path.join(self.datadir, 'postmaster.pid')):
                try:
                    self.stop('fast')
                except Exception:  # noqa: BLE001
                    self._run_as_owner([self._bin('pg_ctl'), 'stop', '-w', '-m', 'immediate',
                                        '-D', self.datadir], check=False)
        finally:
            if _keep():
                sys.stderr.write('sptest: keeping %s\n' % self.dir)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- use
    def url(self, dbname='postgres'):
        """libpq URL of database dbname as user postgres."""
        return 'postgresql:///%s?host=%s&port=%d&user=postgres' % (
            urllib.parse.quote(dbname, safe=''), _percent(self.sockdir), self.port)

    def psql(self, sql, db='postgres', check=True):
        """Runs sql through psql -XAtq -v ON_ERROR_STOP=1; returns stdout (str). Raises
        HarnessError on failure when check is set."""
        argv = [self._bin('psql'), '-XAtq', '-v', 'ON_ERROR_STOP=1', '-h', self.sockdir,
                '-p', str(self.port), '-U', 'postgres', '-d', db, '-f', '-']
        p = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=300)
        if check and p.returncode != 0:
            raise HarnessError('psql failed (exit %d): %s\nSQL: %s' % (
                p.returncode, p.stderr.strip(), sql))
        return p.stdout

    def createdb(self, name):
        """Creates database name; returns its URL."""
        self.psql('CREATE DATABASE "%s"' % name.replace('"', '""'))
        return self.url(name)

    def log_text(self):
        try:
            with open(self.logfile, encoding='utf-8', errors='replace') as f:
                return f.read()
        except OSError:
            return ''


# ---------------------------------------------------------------------------- server

class Response:
    """An HTTP response: status (int), reason, headers (case-insensitive .get), body (bytes)."""

    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    @property
    def text(self):
        return self.body.decode('utf-8', errors='replace')

    def json(self):
        return json.loads(self.body.decode('utf-8'))

    def __repr__(self):
        return '<Response %d %s %r>' % (self.status, self.headers.get('Content-Type'),
                                         self.body[:200])


_UNSET = object()


def _parse_listen(listen):
    host, _, port = listen.rpartition(':')
    host = host.strip('[]')
    if host in ('', '0.0.0.0'):
        host = '127.0.0.1'
    elif host == '::':
        host = '::1'
    return host, port


SANITIZER_REPORTS = []  # (log path, excerpt) of every server that printed one
_SANITIZER_MARKS = ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:')


def _check_sanitizers(path):
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            text = f.read()
    except OSError:
        return
    for mark in _SANITIZER_MARKS:
        i = text.find(mark)
        if i >= 0:
            SANITIZER_REPORTS.append((path, text[max(0, i - 200):i + 3000]))
            return


class Server:
    """The spearhead binary under test (context manager):

        spearhead serve --database URL --listen 127.0.0.1:0 --port-file T/port
                        --state-dir T/state [--config T/spearhead.conf] ARGS...

    database: a URL, an object with .url() (a PgCluster), None for the embedded
    cluster, default $SP_TEST_DATABASE_URL (embedded when unset). env: extra
    environment (a None value removes the variable). Started on enter (or start()),
    stopped on exit (SIGTERM, then SIGKILL)."""

    def __init__(self, database=_UNSET, args=(), env=None, config_text=None,
                 listen='127.0.0.1:0', binary=None, timeout=30):
        if database is _UNSET:
            database = os.environ.get('SP_TEST_DATABASE_URL')
        if database is not None and not isinstance(database, str):
            database = database.url()
        self.database = database
        builddir = os.environ.get('SP_BUILDDIR') or os.getcwd()
        self.binary = binary or os.environ.get('SPEARHEAD_BIN') or \
            os.path.join(builddir, 'spearhead')
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.listen = listen
        self.timeout = timeout
        self.dir = _make_tempdir('sp-srv-')
        os.chmod(self.dir, 0o711)  # an embedded cluster's user must traverse it
        self.port_file = os.path.join(self.dir, 'port')
        self.state_dir = os.path.join(self.dir, 'state')
        self.stderr_path = os.path.join(self.dir, 'stderr.log')
        self.stdout_path = os.path.join(self.dir, 'stdout.log')
        self.config_path = None
        if config_text is not None:
            self.config_path = os.path.join(self.dir, 'spearhead.conf')
            with open(self.config_path, 'w', encoding='utf-8') as f:
                f.write(config_text)
        self.host, _ = _parse_listen(listen)
        self.port = None
        self.proc = None
        self.returncode = None
        self._closed = False
        _exit_on_sigterm()
        atexit.register(self.close)

    def argv(self):
        argv = [self.binary, 'serve']
        if self.database is not None:
            argv += ['--database', self.database]
        argv += ['--listen', self.listen, '--port-file', self.port_file,
                 '--state-dir', self.state_dir]
        if self.config_path:
            argv += ['--config', self.config_path]
        return argv + self.args

    def _env(self):
        env = dict(os.environ)
        for k, v in self.extra_env.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
        return env

    def start(self):
        """Starts the server and waits (at most self.timeout s) until the port in the port
        file accepts connections; HarnessError with the server's stderr otherwise."""
        if not os.access(self.binary, os.X_OK):
            raise HarnessError('spearhead binary %s not found: build it, or set SPEARHEAD_BIN '
                               'or SP_BUILDDIR' % self.binary)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.port_file)
        self.port = None
        self.returncode = None
        with open(self.stdout_path, 'ab') as out, open(self.stderr_path, 'ab') as err:
            self.proc = subprocess.Popen(self.argv(), env=self._env(), stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err, cwd=self.dir)
        deadline = time.monotonic() + self.timeout
        while True:
            port = self._read_port()
            if port is not None and self._accepts(port):
                self.port = port
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise HarnessError('spearhead was not ready within %g s; stderr:\n%s'
                                   % (self.timeout, self.log_text()[-4000:]))
            try:  # waits a little, and notices at once when the server exits
                code = self.proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            self.returncode = code
            raise HarnessError('spearhead exited with status %d before it was ready; '
                               'stderr:\n%s' % (code, self.log_text()[-4000:]))

    def _read_port(self):
        try:
            with open(self.port_file, encoding='ascii', errors='replace') as f:
                text = f.read().strip()
        except OSError:
            return None
        m = re.fullmatch(r'(?:.*:)?(\d{1,5})', text)
        return int(m.group(1)) if m and 0 < int(m.group(1)) < 65536 else None

    def _accepts(self, port):
        try:
            with socket.create_connection((self.host, port), timeout=1):
                return True
        except OSError:
            return False

    def url(self, path='/'):
        return 'http://%s:%d%s' % (self.host if ':' not in self.host else '[%s]' % self.host,
                                   self.port, path)

    def request(self, method, path, body=None, headers=None, raw=None, timeout=30):
        """One HTTP request on a fresh connection. body: dict/list (sent as JSON), str or
        bytes; raw: bytes/str sent verbatim as the body (no Content-Type added).
        Returns a Response whatever the status."""
        headers = dict(headers or {})
        lower = {k.lower() for k in headers}
        data = None
        if raw is not None:
            data = raw.encode('utf-8') if isinstance(raw, str) else raw
        elif body is not None:
            if isinstance(body, (dict, list)):
                data = json.dumps(body).encode('utf-8')
                if 'content-type' not in lower:
                    headers['Content-Type'] = 'application/json'
            else:
                data = body.encode('utf-8') if isinstance(body, str) else body
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return Response(resp.status, resp.reason, resp.headers, resp.read())
        finally:
            conn.close()

    def raw_request(self, data, timeout=30):
        """Sends bytes as they are and returns everything the server answers until it
        closes the connection (or timeout)."""
        if isinstance(data, str):
            data = data.encode('utf-8')
        chunks = []
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            s.sendall(data)
            with contextlib.suppress(socket.timeout, ConnectionResetError):
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        return b''.join(chunks)

    def signal(self, sig):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig=_signal.SIGTERM, timeout=20):
        """Sends sig and waits; returns the exit status (negative signal number when
        killed by a signal). Kills it and raises HarnessError when it does not exit in
        time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise HarnessError('spearhead did not exit within %g s after signal %d; '
                                   'stderr:\n%s' % (timeout, sig, self.log_text()[-4000:]))
        self.returncode = self.proc.returncode
        return self.returncode

    def kill(self):
        """SIGKILL and reap; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.returncode = self.proc.returncode
        return self.returncode

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        """What the server wrote to stderr so far."""
        try:
            with open(self.stderr_path, encoding='utf-8', errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def stdout_text(self):
        try:
            with open(self.stdout_path, encoding='utf-8', errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def _stop_embedded_cluster(self):
        """A killed server leaves its embedded cluster running: stop it."""
        pgdir = os.path.join(self.state_dir, 'pg')
        if not os.path.exists(os.path.join(pgdir, 'postmaster.pid')):
            return
        try:
            argv = [os.path.join(find_pg_bindir(), 'pg_ctl'), 'stop', '-w', '-m', 'immediate',
                    '-D', pgdir]
            if _pg_user():
                argv = ['runuser', '-u', PG_OS_USER, '--'] + argv
            subprocess.run(argv, cwd='/', stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=60)
        except (HarnessError, OSError, subprocess.SubprocessError):
            pass

    def close(self):
        if self._closed:
            return
        self._closed = True
        try:
            if self.running():
                try:
                    self.stop(timeout=20)
                except HarnessError:
                    pass
            self._stop_embedded_cluster()
            _check_sanitizers(self.stderr_path)
        finally:
            if _keep():
                sys.stderr.write('sptest: keeping %s\n' % self.dir)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and exc_type is not SystemExit:
            log = self.log_text().rstrip()
            if log:
                print('# spearhead stderr (last lines):', flush=True)
                for line in log.splitlines()[-40:]:
                    print('#   ' + line, flush=True)
        self.close()
        return False
