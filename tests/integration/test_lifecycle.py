"""Process lifecycle: graceful shutdown with a request in flight, SIGHUP reload of the
configuration (log level, limits, plugin settings), several workers, plugin loading
outcomes and the `plugins` / `check-config` commands."""
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from sptest import PgCluster, Server, Tap, wait_for  # noqa: E402

FIXTURES = os.environ.get('SP_TEST_FIXTUREDIR', '')
BIN = os.environ.get('SPEARHEAD_BIN', './spearhead')
ENV = {'SPEARHEAD_PLUGIN_PATH': FIXTURES, 'SPEARHEAD_PLUGIN_DIR': '/nonexistent'}
tap = Tap()


with tap.guard('lifecycle'), PgCluster() as pg:
    # -- plugins: good runs, bad ABI / no symbol / failing init are left out --
    with Server(database=pg, args=['--workers', '1'], env=ENV) as srv:
        items = {p['name']: p for p in srv.request('GET', '/v1/plugins').json()['items']}
        tap.eq(items.get('good', {}).get('status'), 'running', 'good plugin runs')
        tap.eq(items.get('good', {}).get('abi'), '1.0', 'its ABI is reported')
        tap.eq(items.get('badabi', {}).get('status'), 'rejected', 'wrong ABI is rejected')
        tap.ok('2.0' in items.get('badabi', {}).get('error', '') and
               '1.0' in items.get('badabi', {}).get('error', ''),
               'the reason gives both ABI versions')
        tap.eq(items.get('nosym', {}).get('status'), 'rejected', 'no descriptor is rejected')
        tap.eq(items.get('failinit', {}).get('status'), 'failed', 'failing init is left out')
        tap.eq(srv.request('GET', '/v1/failinit').status, 404,
               'a failed plugin\'s routes are removed')
        r = srv.request('GET', '/v1/plugins/good')
        tap.eq([x['path'] for x in r.json()['routes']][:2], ['/v1/good/hello', '/v1/good/rows'],
               'GET /v1/plugins/{name} lists its routes')
        tap.eq(srv.request('GET', '/v1/plugins/nope').status, 404, 'unknown plugin is 404')
        log = srv.log_text()
        tap.ok('plugin badabi rejected' in log and '/badabi)' in log and 'failinit failed to initialise' in log,
               'rejections are logged with the reason')

        # bus: in-process delivery
        r = srv.request('POST', '/v1/good/emit', body={'n': 1})
        tap.eq(r.status, 202, 'emit accepted')
        tap.ok(wait_for(lambda: (srv.request('GET', '/v1/good/hello').json().get('last_event')
                                 or {}).get('data') == {'n': 1}),
               'a bus event reaches the subscriber')

        # graceful shutdown with a request in flight
        res = {}

        def slow():
            res['r'] = srv.request('GET', '/v1/good/rows?sleep=1.5', timeout=20)

        th = threading.Thread(target=slow)
        th.start()
        time.sleep(0.4)
        srv.signal(signal.SIGTERM)
        th.join()
        tap.eq(res['r'].status, 200, 'the in-flight request finishes after SIGTERM')
        tap.eq(len(res['r'].json()['items']), 2, 'with its full answer')
        code = srv.proc.wait(timeout=20)
        tap.eq(code, 0, 'the server then exits 0')

    # -- SIGHUP reload --
    cfg = "[log]\nlevel = info\n[server]\nmax_body_bytes = 4096\n[plugin.good]\ngreeting = hi\n"
    with Server(database=pg, args=['--workers', '1'], env=ENV, config_text=cfg) as srv:
        tap.eq(srv.request('GET', '/v1/good/hello').json().get('greeting'), 'hi',
               '[plugin.good] setting from the config file applies')
        big = {'x': 'y' * 3000}
        tap.eq(srv.request('POST', '/v1/good/echo', body=big).status, 201,
               '3 KB body accepted under a 4 KB limit')
        with open(srv.config_path, 'w') as f:
            f.write("[log]\nlevel = warn\n[server]\nmax_body_bytes = 1024\n"
                    "[plugin.good]\ngreeting = hey\n")
        srv.signal(signal.SIGHUP)
        tap.ok(wait_for(lambda: 'configuration reloaded' in srv.log_text()), 'SIGHUP reloads')
        tap.eq(srv.request('POST', '/v1/good/echo', body=big).status, 413,
               'the new body limit applies without restart')
        tap.eq(srv.request('GET', '/v1/good/hello').json().get('greeting'), 'hey',
               'the new plugin setting applies without restart')
        before = srv.log_text().count('msg=request')
        srv.request('GET', '/health')
        time.sleep(0.2)
        tap.eq(srv.log_text().count('msg=request'), before,
               'log level warn now hides access lines')
        with open(srv.config_path, 'w') as f:
            f.write("[server]\nmax_body_bytes = lots\n")
        srv.signal(signal.SIGHUP)
        tap.ok(wait_for(lambda: 'reload refused' in srv.log_text()),
               'a broken config on reload is refused and logged')
        tap.eq(srv.request('GET', '/v1/good/hello').status, 200,
               'the server keeps running with the previous config')
        tap.eq(srv.stop(), 0, 'clean exit')

    # -- several workers --
    with Server(database=pg, args=['--workers', '2'], env=ENV) as srv:
        statuses = set(srv.request('GET', '/v1/good/rows').status for _ in range(40))
        tap.eq(statuses, {200}, 'two workers serve requests')
        pids = subprocess.run(['pgrep', '-P', str(srv.proc.pid)], capture_output=True,
                              text=True).stdout.split()
        tap.eq(len(pids), 2, 'two worker processes run')

        # Whichever worker answers the scrape, /metrics covers both.
        def rows_counted(text):
            """worker -> requests to /v1/good/rows, from one exposition."""
            got = {}
            for line in text.splitlines():
                if line.startswith('spearhead_http_requests_total{') and \
                        'route="/v1/good/rows"' in line:
                    w = line.split('worker="', 1)[1].split('"', 1)[0]
                    got[w] = got.get(w, 0) + float(line.rsplit(' ', 1)[1])
            return got

        def scrapes_agree():
            """Ten scrapes in a row each count all 40 (a worker publishes its figures
            once a second, so this holds at the latest a second after the requests)."""
            texts = [srv.request('GET', '/metrics').text for _ in range(10)]
            return all(sum(rows_counted(t).values()) == 40 for t in texts) and texts
        scrapes = wait_for(scrapes_agree) or []
        tap.ok(scrapes, 'every scrape counts the 40 requests of both workers, whoever answers it')
        tap.ok(scrapes and set().union(*(rows_counted(t) for t in scrapes)) <= {'1', '2'},
               'series carry the worker that served them')
        declared = [ln.split()[2] for t in scrapes for ln in t.splitlines()
                    if ln.startswith('# TYPE ')]
        tap.eq(len(declared), len(set(declared)) * len(scrapes),
               'each metric family is declared once per scrape')
        if pids:
            os.kill(int(pids[0]), signal.SIGKILL)
            tap.ok(wait_for(lambda: 'ended unexpectedly' in srv.log_text()),
                   'the master notices a crashed worker')
            tap.ok(wait_for(lambda: len(subprocess.run(
                ['pgrep', '-P', str(srv.proc.pid)], capture_output=True,
                text=True).stdout.split()) == 2), 'and starts a new one')
        tap.eq(set(srv.request('GET', '/health').status for _ in range(20)), {200},
               'still serving')
        tap.eq(srv.stop(), 0, 'SIGTERM stops master and workers, exit 0')
        left = subprocess.run(['pgrep', '-f', srv.port_file], capture_output=True,
                              text=True).stdout.split()
        tap.eq(left, [], 'no worker is left behind')

    # -- CLI --
    env = dict(os.environ, **ENV)
    out = subprocess.run([BIN, 'plugins'], env=env, capture_output=True, text=True)
    tap.eq(out.returncode, 0, 'spearhead plugins exits 0')
    tap.ok(any(line.startswith('good ') and 'loaded' in line for line in out.stdout.splitlines()),
           'it lists the good plugin')
    tap.ok('badabi' in out.stdout and 'rejected' in out.stdout, 'and the rejected one, with why')
    out = subprocess.run([BIN, 'plugins', '--json'], env=env, capture_output=True, text=True)
    tap.ok('"name": "good"' in out.stdout, 'spearhead plugins --json')
    out = subprocess.run([BIN, 'check-config', '--defaults'], capture_output=True, text=True)
    tap.ok(out.returncode == 0 and 'max_body_bytes = 1048576' in out.stdout and
           'SPEARHEAD_DATABASE_URL' in out.stdout, 'check-config --defaults documents options')
    out = subprocess.run([BIN, 'check-config', '--listen', 'nonsense'], capture_output=True,
                         text=True)
    tap.ok(out.returncode != 0 and 'listen' in out.stderr, 'check-config reports a bad flag')
    for cmd in (['--help'], ['serve', '--help'], ['migrate', '--help'], ['plugins', '--help'],
                ['check-config', '--help']):
        out = subprocess.run([BIN] + cmd, capture_output=True, text=True)
        tap.ok(out.returncode == 0 and 'Usage' in out.stdout, '%s prints usage' % ' '.join(cmd))
    out = subprocess.run([BIN, 'frobnicate'], capture_output=True, text=True)
    tap.ok(out.returncode == 2 and 'unknown command' in out.stderr, 'unknown command refused')
    out = subprocess.run([BIN, '--version'], capture_output=True, text=True)
    tap.ok(out.stdout.startswith('spearhead '), '--version')

tap.done()
