"""Migrations: four servers started at once on an empty database migrate exactly once;
an applied migration that changed is refused; a failed migration is recorded and
servers refuse to start until `spearhead migrate` succeeds; a plugin whose migration
fails is left out while the rest runs. Also the embedded PostgreSQL default."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from sptest import HarnessError, PgCluster, Server, Tap  # noqa: E402

FIXTURES = os.environ.get('SP_TEST_FIXTUREDIR', '')
BIN = os.environ.get('SPEARHEAD_BIN', './spearhead')
ENV = {'SPEARHEAD_PLUGIN_PATH': FIXTURES, 'SPEARHEAD_PLUGIN_DIR': '/nonexistent'}
tap = Tap()


def start_fails(url, desc):
    srv = Server(database=url, args=['--workers', '1'], env=ENV, timeout=20)
    try:
        srv.start()
    except HarnessError:
        pass
    else:
        srv.close()
        tap.ok(False, desc + ': the server should have refused to start')
        return ''
    code = srv.proc.returncode if srv.proc else None
    log = srv.log_text()
    srv.close()
    tap.ok(code not in (None, 0), desc + ': the server refuses to start (exit %s)' % code)
    return log


with tap.guard('migrations'), PgCluster() as pg:
    url = pg.createdb('race')
    servers = [Server(database=url, args=['--workers', '1'], env=ENV) for _ in range(4)]
    procs = []
    for s in servers:  # start all four before waiting for any
        s.timeout = 60
    import threading
    errors = []

    def start(s):
        try:
            s.start()
        except Exception as e:  # noqa: BLE001
            errors.append(str(e))

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tap.eq(errors, [], 'four instances started at once on an empty database')
    rows = pg.psql("SELECT component || '/' || name || ':' || status FROM sp_schema_migrations "
                   "ORDER BY 1", db='race').split()
    sqldir = os.path.join(os.environ.get('SP_SRCDIR', '.'), 'sql')
    core = sorted('core/%s:applied' % f[:-4] for f in os.listdir(sqldir) if f.endswith('.sql'))
    tap.eq(rows, core + ['plugin:good/0001_items:applied'],
           'each migration recorded once, applied')
    applied = sum(s.log_text().count('applying migration core/0001_core') for s in servers)
    tap.eq(applied, 1, 'exactly one instance applied the core migration')
    # The fixture plugins that are meant to fail log errors of their own; nothing else may.
    bad = [line for s in servers for line in s.log_text().splitlines()
           if ('level=error' in line or 'level=warn' in line) and not any(
               f in line for f in ('badabi', 'nosym', 'failinit'))]
    tap.eq(bad, [], 'no error or warning in any log')
    tap.eq(pg.psql("SELECT count(*) FROM good_items", db='race').strip(), '2',
           'the plugin migration ran once (2 rows, not 8)')
    for s in servers:
        s.stop()

    # A changed migration is refused.
    pg.psql("UPDATE sp_schema_migrations SET checksum = 'deadbeef' WHERE name = '0001_core'",
            db='race')
    log = start_fails(url, 'changed migration')
    tap.ok('was changed after it was applied' in log, 'the log explains the checksum mismatch')
    pg.psql("DELETE FROM sp_schema_migrations WHERE name = '0001_core'", db='race')

    # A failing core migration is recorded and blocks later starts.
    url2 = pg.createdb('broken')
    pg.psql("CREATE TABLE sp_plugin_settings (x int)", db='broken')
    log = start_fails(url2, 'failing core migration')
    tap.ok('migration core/0001_core failed' in log, 'the log names the failed migration')
    tap.eq(pg.psql("SELECT status FROM sp_schema_migrations WHERE name = '0001_core'",
                   db='broken').strip(), 'failed', 'the failure is recorded in the schema')
    log = start_fails(url2, 'after a recorded failure')
    tap.ok('failed earlier' in log and 'spearhead migrate' in log,
           'the refusal tells the user to run spearhead migrate')
    env = dict(os.environ, **ENV)
    out = subprocess.run([BIN, 'migrate', '--database', url2], env=env, capture_output=True,
                         text=True)
    tap.ok(out.returncode != 0, 'spearhead migrate fails while the cause remains')
    pg.psql("DROP TABLE sp_plugin_settings", db='broken')
    out = subprocess.run([BIN, 'migrate', '--database', url2], env=env, capture_output=True,
                         text=True)
    tap.eq(out.returncode, 0, 'spearhead migrate succeeds once the cause is fixed')
    tap.ok('%d migration(s) applied' % (len(core) + 1) in out.stdout,
           'and says what it applied (%r)' % out.stdout)
    out = subprocess.run([BIN, 'migrate', '--database', url2], env=env, capture_output=True,
                         text=True)
    tap.ok(out.returncode == 0 and '0 migration(s) applied' in out.stdout,
           'running it again applies nothing')
    with Server(database=url2, args=['--workers', '1'], env=ENV) as srv:
        tap.eq(srv.request('GET', '/v1/good/rows').status, 200, 'the server starts afterwards')

    # A plugin whose migration fails is left out; the core runs.
    url3 = pg.createdb('pluginfail')
    pg.psql("CREATE TABLE good_items (other text)", db='pluginfail')
    with Server(database=url3, args=['--workers', '1'], env=ENV) as srv:
        items = {p['name']: p for p in srv.request('GET', '/v1/plugins').json()['items']}
        tap.eq(items['good']['status'], 'failed', 'the plugin with a failing migration is failed')
        tap.ok('0001_items' in items['good'].get('error', ''), 'its error names the migration')
        tap.eq(srv.request('GET', '/v1/good/rows').status, 404, 'its routes are absent')
        tap.eq(srv.request('GET', '/ready').status, 200, 'the core runs')

    # Embedded PostgreSQL: no database configured.
    srv = Server(database=None, args=['--workers', '1'], env=ENV, timeout=90)
    with srv:
        tap.eq(srv.request('GET', '/ready').status, 200, 'embedded PostgreSQL: ready')
        tap.eq(srv.request('GET', '/v1/good/rows').status, 200, 'embedded: queries work')
        tap.ok(os.path.exists(os.path.join(srv.state_dir, 'pg', 'PG_VERSION')),
               'the cluster lives in the state directory')
        tap.eq(srv.stop(), 0, 'stops cleanly')
        tap.ok(not os.path.exists(os.path.join(srv.state_dir, 'pg', 'postmaster.pid')),
               'and stops its PostgreSQL')
        out = subprocess.run([BIN, 'migrate', '--state-dir', srv.state_dir], env=env,
                             capture_output=True, text=True)
        tap.ok(out.returncode == 0 and '0 migration(s) applied' in out.stdout,
               'spearhead migrate --state-dir starts the embedded cluster for the command')
        tap.ok(not os.path.exists(os.path.join(srv.state_dir, 'pg', 'postmaster.pid')),
               'and stops it afterwards')
        srv.start()
        tap.eq(srv.request('GET', '/v1/good/rows').status, 200, 'a second start reuses the data')
        srv.stop()

tap.done()
