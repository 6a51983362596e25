"""HTTP core against a real server and PostgreSQL: routing, problem+json errors, bad
input, limits (headers, body, JSON depth, slow request heads, connection cap),
request ids, HEAD/OPTIONS, health/ready/metrics/OpenAPI."""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from sptest import PgCluster, Server, Tap, wait_for  # noqa: E402

FIXTURES = os.environ.get('SP_TEST_FIXTUREDIR', '')
tap = Tap()


def is_problem(r, status, desc):
    tap.eq(r.status, status, desc + ': status %d' % status)
    ctype = r.headers.get('Content-Type') or ''
    tap.ok(ctype.startswith('application/problem+json'),
           desc + ': problem+json (got %r)' % ctype)
    try:
        doc = r.json()
    except ValueError:
        tap.ok(False, desc + ': body is JSON')
        return {}
    tap.ok(doc.get('status') == status and 'title' in doc and 'type' in doc,
           desc + ': body has type, title, status')
    return doc


def raw(srv, data, timeout=10):
    """Sends raw bytes, returns (status or None, headers+body text)."""
    s = socket.create_connection(('127.0.0.1', srv.port), timeout=timeout)
    try:
        s.sendall(data)
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not b:
                break
            chunks.append(b)
            if b'\r\n\r\n' in b''.join(chunks):
                text = b''.join(chunks).decode('latin-1')
                head, _, body = text.partition('\r\n\r\n')
                length = 0
                for line in head.split('\r\n'):
                    if line.lower().startswith('content-length:'):
                        length = int(line.split(':')[1])
                if len(body.encode('latin-1')) >= length:
                    break
        text = b''.join(chunks).decode('latin-1')
        status = int(text.split(' ')[1]) if text.startswith('HTTP/') else None
        return status, text
    finally:
        s.close()


config = """
[server]
header_timeout_s = 2
max_connections = 8
max_body_bytes = 2048
max_headers = 20
"""

with tap.guard('HTTP core'), PgCluster() as pg, \
        Server(database=pg, args=['--workers', '1'], config_text=config,
               env={'SPEARHEAD_PLUGIN_PATH': FIXTURES, 'SPEARHEAD_PLUGIN_DIR': '/nonexistent'}) as srv:
    r = srv.request('GET', '/health')
    tap.eq(r.status, 200, 'GET /health')
    tap.eq(r.json(), {'status': 'ok'}, '/health body')
    rid = r.headers.get('X-Request-Id') or ''
    tap.ok(len(rid) == 32, 'a request id is generated when absent (%r)' % rid)
    r = srv.request('GET', '/health', headers={'X-Request-Id': 'abc-123.X_y'})
    tap.eq(r.headers.get('X-Request-Id'), 'abc-123.X_y', 'a valid X-Request-Id is echoed')
    r = srv.request('GET', '/health', headers={'X-Request-Id': 'bad id with spaces'})
    tap.ok(r.headers.get('X-Request-Id') != 'bad id with spaces',
           'an invalid X-Request-Id is replaced')
    # Access lines are written once per loop pass: wait for that pass.
    tap.ok(wait_for(lambda: 'rid=abc-123.X_y' in srv.log_text()),
           'the request id is in the access log line')
    tap.ok('method=GET path="/health" status=200' in srv.log_text(),
           'access log has method, path and status')

    r = srv.request('GET', '/ready')
    tap.eq(r.status, 200, 'GET /ready with the database up')

    r = srv.request('GET', '/metrics')
    tap.eq(r.status, 200, 'GET /metrics')
    tap.ok((r.headers.get('Content-Type') or '').startswith('text/plain'), 'metrics are text')
    text = r.text
    tap.ok('spearhead_http_requests_total{method="GET",route="/health",status="200"}' in text,
           'requests counted by route pattern and status')
    tap.ok('spearhead_http_request_duration_seconds_bucket{le="+Inf"}' in text,
           'latency histogram present')
    tap.ok('spearhead_db_pool_connections{state="size"}' in text, 'db pool usage present')
    tap.ok('spearhead_plugins{status="running"} 1' in text, 'plugin count present')
    tap.ok('spearhead_good_hello_total' in text, 'plugin metric present')

    # Routing
    doc = is_problem(srv.request('GET', '/v1/nothing-here'), 404, 'unknown route')
    tap.ok(doc.get('request_id'), '404 carries the request id')
    r = srv.request('DELETE', '/v1/good/hello')
    is_problem(r, 405, 'known path, wrong method')
    tap.eq(r.headers.get('Allow'), 'GET, HEAD, OPTIONS', '405 lists Allow')
    r = srv.request('TRACE', '/v1/good/hello')
    tap.eq(r.status, 405, 'TRACE is 405, not 501')
    r = srv.request('OPTIONS', '/v1/good/echo')
    tap.eq(r.status, 204, 'OPTIONS answers 204')
    tap.eq(r.headers.get('Allow'), 'POST, OPTIONS', 'OPTIONS lists Allow')
    r = srv.request('HEAD', '/health')
    tap.eq(r.status, 200, 'HEAD on a GET route')
    tap.eq(r.body, b'', 'HEAD has no body')
    tap.eq(r.headers.get('Content-Length'), '15', 'HEAD gives the GET length')
    is_problem(srv.request('GET', '/v1/good/hello/'), 404, 'trailing slash is not the route')

    # Bad input
    hdr = {'Content-Type': 'application/json'}
    r = srv.request('POST', '/v1/good/echo', body={'a': [1, {'b': None}]})
    tap.eq(r.status, 201, 'valid JSON accepted')
    tap.eq(r.json(), {'echo': {'a': [1, {'b': None}]}}, 'echoed body')
    doc = is_problem(srv.request('POST', '/v1/good/echo', raw=b'{"a": ', headers=hdr), 400,
                     'malformed JSON')
    tap.ok('line 1' in doc.get('detail', ''), 'malformed JSON detail gives a position')
    is_problem(srv.request('POST', '/v1/good/echo', raw=b'{"a":1}',
                           headers={'Content-Type': 'text/plain'}), 415, 'wrong content type')
    is_problem(srv.request('POST', '/v1/good/echo', raw=b'{"a":1}', headers={}), 415,
               'missing content type')
    is_problem(srv.request('POST', '/v1/good/echo', raw=b'', headers=hdr), 400, 'empty body')
    is_problem(srv.request('POST', '/v1/good/echo',
                           raw=b'{"role":"member","role":"admin"}', headers=hdr), 400,
               'duplicate keys')
    is_problem(srv.request('POST', '/v1/good/echo', raw=b'{"a":"x\\u0000"}', headers=hdr), 400,
               'NUL escape')
    deep = b'[' * 33 + b']' * 33
    doc = is_problem(srv.request('POST', '/v1/good/echo', raw=deep, headers=hdr), 400,
                     'JSON deeper than 32')
    tap.ok('depth' in doc.get('detail', ''), 'depth error says depth')
    r = srv.request('POST', '/v1/good/echo', raw=b'[' * 32 + b']' * 32, headers=hdr)
    tap.eq(r.status, 201, 'JSON of depth 32 accepted')
    big = json.dumps({'x': 'y' * 3000}).encode()
    doc = is_problem(srv.request('POST', '/v1/good/echo', raw=big, headers=hdr), 413,
                     'body over max_body_bytes')
    tap.ok('2048' in doc.get('detail', ''), '413 names the limit')
    huge = json.dumps({'x': 'y' * 100000}).encode()
    status, _ = raw(srv, b'POST /v1/good/echo HTTP/1.1\r\nHost: x\r\nContent-Type: '
                    b'application/json\r\nContent-Length: %d\r\n\r\n' % len(huge) + huge)
    tap.eq(status, 413, 'a far larger body is refused with 413 too')
    many = {'X-H%d' % i: 'v' for i in range(30)}
    is_problem(srv.request('GET', '/health', headers=many), 431, 'too many headers')
    status, text = raw(srv, b'GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ' + b'a' * 40000 +
                       b'\r\n\r\n')
    tap.ok(status in (400, 431), 'an oversized header block is refused (%r)' % status)
    status, _ = raw(srv, b'THIS IS NOT HTTP\r\n\r\n')
    tap.ok(status == 400 or status is None, 'garbage request line refused (%r)' % status)
    r = srv.request('GET', '/health')
    tap.eq(r.status, 200, 'still healthy after bad input')

    # Slowloris: a request head trickling in is cut off after header_timeout_s (2 s).
    s = socket.create_connection(('127.0.0.1', srv.port), timeout=10)
    t0 = time.monotonic()
    closed_after = None
    try:
        s.sendall(b'GET /health HTTP/1.1\r\n')
        for i in range(20):
            time.sleep(0.5)
            s.sendall(b'X-Slow-%d: 1\r\n' % i)
    except OSError:
        closed_after = time.monotonic() - t0
    if closed_after is None:
        try:
            closed_after = time.monotonic() - t0 if s.recv(1) == b'' else None
        except OSError:
            closed_after = time.monotonic() - t0
    s.close()
    tap.ok(closed_after is not None and closed_after < 6,
           'a slow request head is cut off (after %s s, limit 2 s)' % closed_after)

    # Connection cap: max_connections = 8 per worker.
    idle = []
    for _ in range(8):
        c = socket.create_connection(('127.0.0.1', srv.port), timeout=5)
        idle.append(c)
    time.sleep(0.3)
    status, text = raw(srv, b'GET /health HTTP/1.1\r\nHost: x\r\n\r\n')
    tap.eq(status, 503, 'past max_connections a new client gets 503')
    tap.ok('Retry-After' in text, '503 carries Retry-After')
    for c in idle:
        c.close()
    ok = False
    for _ in range(40):  # closed sockets are reclaimed by the next sweep (1 s)
        time.sleep(0.1)
        status, _ = raw(srv, b'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
        if status == 200:
            ok = True
            break
    tap.ok(ok, 'after clients leave, new ones are served again')

    # OpenAPI
    r = srv.request('GET', '/v1/openapi.json')
    tap.eq(r.status, 200, 'GET /v1/openapi.json')
    doc = r.json()
    tap.eq(doc.get('openapi'), '3.1.0', 'OpenAPI 3.1')
    paths = doc.get('paths', {})
    for p in ('/health', '/ready', '/metrics', '/v1/plugins', '/v1/plugins/{name}/settings',
              '/v1/good/hello', '/v1/good/echo'):
        tap.ok(p in paths, 'OpenAPI describes %s' % p)
    tap.ok('/v1/failinit' not in paths, 'routes of a failed plugin are gone')
    ops = [op for item in paths.values() for k, op in item.items() if k != 'parameters']
    ids = [op.get('operationId') for op in ops]
    tap.eq(len(ids), len(set(ids)), 'operationIds are unique')
    tap.ok(paths['/v1/plugins/{name}/settings']['put'].get('security'),
           'non-public routes declare security')

    code = srv.stop()
    tap.eq(code, 0, 'server exits 0 on SIGTERM')
    log = srv.log_text()
    tap.ok('ERROR' not in log and 'AddressSanitizer' not in log, 'no sanitizer report')

tap.done()
