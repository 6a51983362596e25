"""The PostgreSQL layer under a running server: a slow query does not stall other
requests, and a database restart gives quick 503s, then recovers by itself."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from sptest import PgCluster, Server, Tap  # noqa: E402

FIXTURES = os.environ.get('SP_TEST_FIXTUREDIR', '')
tap = Tap()
ENV = {'SPEARHEAD_PLUGIN_PATH': FIXTURES, 'SPEARHEAD_PLUGIN_DIR': '/nonexistent'}

with tap.guard('database resilience'), PgCluster() as pg, \
        Server(database=pg, args=['--workers', '1'], env=ENV) as srv:
    # A request running pg_sleep(2) must not delay others.
    slow = {}

    def run_slow():
        t0 = time.monotonic()
        slow['r'] = srv.request('GET', '/v1/good/rows?sleep=2', timeout=20)
        slow['t'] = time.monotonic() - t0

    th = threading.Thread(target=run_slow)
    th.start()
    time.sleep(0.3)  # let it reach the database
    worst = 0.0
    n = 0
    deadline = time.monotonic() + 10
    while th.is_alive() and time.monotonic() < deadline:
        t0 = time.monotonic()
        r1 = srv.request('GET', '/health')
        r2 = srv.request('GET', '/v1/good/rows')
        worst = max(worst, time.monotonic() - t0)
        n += 1
        if r1.status != 200 or r2.status != 200:
            break
    th.join()
    tap.eq(slow['r'].status, 200, 'the pg_sleep(2) request succeeds')
    tap.ok(1.9 <= slow['t'] < 5, 'it really took about 2 s (%.2f s)' % slow['t'])
    tap.ok(n >= 5, 'other requests ran meanwhile (%d pairs)' % n)
    tap.ok(r1.status == 200 and r2.status == 200, 'they all succeeded')
    tap.ok(worst < 0.5, 'other requests answered in milliseconds (worst pair %.3f s)' % worst)

    # PostgreSQL goes away.
    pg.stop()
    t0 = time.monotonic()
    r = srv.request('GET', '/v1/good/rows', timeout=20)
    took = time.monotonic() - t0
    tap.eq(r.status, 503, 'with the database down a db route answers 503')
    tap.ok((r.headers.get('Content-Type') or '').startswith('application/problem+json'),
           '503 is problem+json')
    tap.ok(took < 3, '503 comes quickly (%.2f s)' % took)
    statuses = set()
    for _ in range(5):
        statuses.add(srv.request('GET', '/v1/good/rows', timeout=20).status)
    tap.eq(statuses, {503}, 'repeated requests keep answering 503')
    r = srv.request('GET', '/ready')
    tap.eq(r.status, 503, '/ready says not ready')
    tap.eq(srv.request('GET', '/health').status, 200, '/health still answers')

    pg.start()
    recovered_in = None
    t0 = time.monotonic()
    while time.monotonic() - t0 < 15:
        if srv.request('GET', '/v1/good/rows').status == 200:
            recovered_in = time.monotonic() - t0
            break
        time.sleep(0.1)
    tap.ok(recovered_in is not None, 'requests succeed again after the database is back '
           '(%s s)' % (None if recovered_in is None else round(recovered_in, 2)))
    ok_ready = False
    for _ in range(50):
        if srv.request('GET', '/ready').status == 200:
            ok_ready = True
            break
        time.sleep(0.1)
    tap.ok(ok_ready, '/ready is ready again')
    r = srv.request('GET', '/v1/good/rows')
    tap.eq(len(r.json().get('items', [])), 2, 'data is intact')

    # Restart while requests are running: every request gets an answer.
    results = []

    def hammer():
        for _ in range(60):
            try:
                results.append(srv.request('GET', '/v1/good/rows', timeout=20).status)
            except OSError as e:
                results.append(str(e))
            time.sleep(0.02)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    pg.restart()
    for t in threads:
        t.join()
    tap.ok(all(s in (200, 503) for s in results),
           'during a restart every request gets 200 or 503 (%s)' % sorted(set(map(str, results))))
    tap.ok(results[-1] == 200 or srv.request('GET', '/v1/good/rows').status == 200,
           'and it works afterwards')
    tap.eq(srv.stop(), 0, 'clean exit')

tap.done()
