#!/usr/bin/env python3
"""Self-test of the integration harness: PgCluster and Tap, no spearhead server."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))

from sptest import HarnessError, PgCluster, Tap  # noqa: E402

tap = Tap()

try:
    pg = PgCluster()
except HarnessError as e:
    print('1..0 # SKIP %s' % str(e).replace('\n', ' '))
    sys.exit(0)

datadir = pg.dir
with tap.guard('PgCluster lifecycle'), pg:
    tap.eq(pg.psql('SELECT 1').strip(), '1', 'psql runs a query on database postgres')
    tap.ok(pg.url().startswith('postgresql:///postgres?host=/'), 'url() is a libpq URL')
    tap.ok(pg.url('x y').startswith('postgresql:///x%20y?'), 'url() encodes the database name')

    url = pg.createdb('sp_selftest')
    tap.ok('/sp_selftest?' in url, 'createdb returns the URL of the new database')
    pg.psql('CREATE TABLE t (id int PRIMARY KEY, name text);'
            "INSERT INTO t VALUES (1, 'one'), (2, 'two');", db='sp_selftest')
    tap.eq(pg.psql('SELECT name FROM t ORDER BY id', db='sp_selftest'), 'one\ntwo\n',
           'rows written and read back in the new database')
    tap.eq(pg.psql("SELECT current_setting('fsync'), current_setting('max_connections')"),
           'off|200\n', 'test settings applied')
    tap.eq(pg.psql("SELECT current_setting('listen_addresses')"), '\n',
           'no TCP listener')

    try:
        pg.psql('SELECT * FROM no_such_table')
        tap.ok(False, 'psql raises on an SQL error')
    except HarnessError as e:
        tap.ok('no_such_table' in str(e), 'psql raises on an SQL error, with the message')
    tap.eq(pg.psql('SELECT 1/0', check=False), '', 'check=False returns the output anyway')

    pg.restart()
    tap.ok(pg.running(), 'running after restart')
    tap.eq(pg.psql('SELECT count(*) FROM t', db='sp_selftest').strip(), '2',
           'data survives a restart')

    pg.stop()
    tap.ok(not pg.running(), 'stopped')
    pg.start()
    tap.eq(pg.psql('SELECT 42').strip(), '42', 'started again')
    if os.geteuid() == 0:
        owner = os.stat(os.path.join(pg.dir, 'data')).st_uid
        import pwd
        tap.eq(pwd.getpwuid(owner).pw_name, 'postgres', 'as root, the cluster runs as postgres')

tap.ok(not os.path.exists(datadir), 'temporary directory removed on exit')

with tap.guard('guard reports exceptions'):
    import io
    inner = Tap(out=io.StringIO())
    with inner.guard('boom'):
        raise RuntimeError('expected')
    text = inner.out.getvalue()
    tap.ok(text.startswith('not ok 1 - boom (RuntimeError: expected)') and
           '# Traceback' in text, 'an exception inside guard() becomes not ok + traceback')
    inner.eq(1, 2, 'mismatch')
    tap.ok("#      got: 1\n# expected: 2\n" in inner.out.getvalue(), 'eq() prints got/expected')

tap.done()
