"""Webhook channel against real processes: spearhead servers on a throwaway PostgreSQL and
Python http.server receivers on 127.0.0.1.

- The API: managers and admins register endpoints (secret shown once), list, change,
  delete; members and other organisations are kept out; bad input is a 422 naming the
  field; literal private, loopback and link-local targets are refused at registration.
- Deliveries are signed the Standard Webhooks way: checked here with an independent
  implementation (hmac + base64), including the two signatures of a secret rotation.
- A receiver failing the first attempts gets the event when it finally answers 2xx,
  with the same event id every time; out of attempts the delivery is dead; Retry-After
  is honoured on 429; 410 disables the endpoint; redirects are not followed; timeouts;
  the deliveries log shows every attempt; a test ping.
- Request forgery: a URL resolving to 127.0.0.1 (or an IPv4-mapped one) is refused at
  connect time without the allowance; 169.254.169.254 is refused even with it.
- A cause rolled back after its outbox insert sends nothing (jobber fixture).
- Two instances on one outbox deliver 300 events exactly once.
- The first attempts are made by the delivery job itself: a delivered event leaves no
  send job; a failed pair (event, endpoint) gets one, written with its log row; a
  delivery job run again skips the endpoints that already have theirs.
- kill -9 in the middle of 1,000 deliveries, then a restart: every event arrives, 1,000
  distinct event ids, no job left pending."""
import base64
import hashlib
import hmac
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from sptest import PgCluster, Server, Tap  # noqa: E402

BIN = os.environ.get('SPEARHEAD_BIN', './spearhead')
PLUGINDIR = os.environ.get('SP_TEST_PLUGINDIR', '')
JOBSDIR = os.environ.get('SP_TEST_JOBSDIR', '')
BASE_ENV = {'SPEARHEAD_PLUGIN_DIR': PLUGINDIR, 'SPEARHEAD_PLUGINS': 'webhook',
            'SPEARHEAD_PLUGIN_PATH': JOBSDIR, 'SPEARHEAD_JOBS_LEASE_S': '3',
            'SPEARHEAD_WEBHOOK_ALLOW_LOOPBACK': '1'}
STRICT_ENV = dict(BASE_ENV, SPEARHEAD_WEBHOOK_ALLOW_LOOPBACK=None)
CONFIG = '[plugin.webhook]\nretry_schedule = 1,1,1\ntimeout_s = 2\n'
tap = Tap()


def wait_for(pred, timeout=20.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


# ---------------------------------------------------------------- receivers

class Receiver:
    """An HTTP server on 127.0.0.1 recording every POST. plan(path, ...) queues the
    answers of the next requests to path: (status, headers, sleep_s); 200 afterwards."""

    def __init__(self):
        self.lock = threading.Lock()
        self.hits = []
        self.plans = {}
        self.delay = {}
        self.active = {}  # path: requests being answered now
        self.peak = {}  # path: most requests answered at once
        recv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get('Content-Length', '0')))
                with recv.lock:
                    recv.hits.append((time.monotonic(), self.path,
                                      {k.lower(): v for k, v in self.headers.items()}, body))
                    plan = recv.plans.get(self.path)
                    status, headers, sleep = plan.pop(0) if plan else (200, {}, 0)
                    sleep = sleep or recv.delay.get(self.path, 0)
                    recv.active[self.path] = recv.active.get(self.path, 0) + 1
                    recv.peak[self.path] = max(recv.peak.get(self.path, 0),
                                               recv.active[self.path])
                try:
                    if sleep:
                        time.sleep(sleep)
                    out = b'{"ok":true}' if status < 300 else b'nope'
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header('Content-Length', str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                finally:
                    with recv.lock:
                        recv.active[self.path] -= 1

        class Srv(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # clients that time out and leave are expected

        self.httpd = Srv(('127.0.0.1', 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path):
        return 'http://127.0.0.1:%d%s' % (self.port, path)

    def plan(self, path, *answers):
        with self.lock:
            self.plans[path] = list(answers)

    def on(self, path):
        with self.lock:
            return [h for h in self.hits if h[1] == path]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def verify(secret, headers, body, tolerance=300):
    """Standard Webhooks verification, written from the specification: HMAC-SHA256 keyed
    with the base64-decoded secret over "id.timestamp.body"; any v1 signature may match."""
    key = base64.b64decode(secret[len('whsec_'):])
    msg_id, ts = headers.get('webhook-id'), headers.get('webhook-timestamp')
    if not msg_id or not ts or abs(time.time() - int(ts)) > tolerance:
        return False
    mac = hmac.new(key, ('%s.%s.' % (msg_id, ts)).encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(mac).decode()
    sigs = [s.split(',', 1)[1] for s in headers.get('webhook-signature', '').split(' ')
            if s.startswith('v1,')]
    return any(hmac.compare_digest(expected, s) for s in sigs)


def doc_verifier():
    """verify_webhook() from the first Python block of docs/webhooks.md, so the
    snippet integrators copy is known to work."""
    src = os.environ.get('SP_SRCDIR') or os.path.join(os.path.dirname(
        os.path.abspath(__file__)), '..', '..')
    with open(os.path.join(src, 'docs', 'webhooks.md'), encoding='utf-8') as f:
        code = re.search(r'```python\n(.*?)```', f.read(), re.S).group(1)
    ns = {}
    exec(code, ns)  # noqa: S102 - our own documentation
    return ns['verify_webhook']


# ---------------------------------------------------------------- helpers

def cli(*args):
    return subprocess.run([BIN] + list(args), capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **{k: v for k, v in BASE_ENV.items() if v}))


with tap.guard('webhooks'), PgCluster() as pg:
    url = pg.url()
    recv = Receiver()

    def q(sql):
        return pg.psql(sql).strip()

    def user(email, *extra):
        cli('user', 'add', '--email', email, '--database', url, *extra)
        tok = cli('token', 'create', '--email', email, '--database', url).stdout.strip()
        return {'Authorization': 'Bearer ' + tok}

    def outbox(org, typ, key, data=None, n=None):
        """Inserts outbox rows for channel webhook (the trigger makes the jobs); returns
        their ids."""
        data = json.dumps(data or {}).replace("'", "''")
        if n is None:
            return q("INSERT INTO sp_outbox (type, channel, org_id, dedupe_key, title, data) "
                     "VALUES ('%s', 'webhook', '%s', '%s', 'A title', '%s') RETURNING id"
                     % (typ, org, key, data)).splitlines()[0]
        return q("INSERT INTO sp_outbox (type, channel, org_id, dedupe_key, title, data) "
                 "SELECT '%s', 'webhook', '%s', '%s-' || g, 'Item ' || g, "
                 "jsonb_build_object('n', g) FROM generate_series(1, %d) g RETURNING id"
                 % (typ, org, key, n)).splitlines()

    ADMIN = user('admin@x.example', '--admin')
    srv = Server(database=url, args=['--workers', '1'], env=BASE_ENV, config_text=CONFIG)
    with srv:
        R = srv.request
        tap.eq(R('GET', '/v1/plugins/webhook').json().get('status'), 'running',
               'the webhook plugin runs')
        orgA = R('POST', '/v1/organizations', headers=ADMIN,
                 body={'name': 'Org A', 'kind': 'sme'}).json()['id']
        orgB = R('POST', '/v1/organizations', headers=ADMIN,
                 body={'name': 'Org B', 'kind': 'hospital'}).json()['id']
        MA = user('manager@a.example', '--org', orgA, '--role', 'manager')
        MEMBER = user('member@a.example', '--org', orgA, '--role', 'member')
        MB = user('manager@b.example', '--org', orgB, '--role', 'manager')

        # ---- API ----
        def create(headers, path, events, **kw):
            body = dict(url=recv.url(path), events=events, **kw)
            return R('POST', '/v1/webhooks', headers=headers, body=body)

        r = create(MEMBER, '/hello', ['*'])
        tap.eq(r.status, 403, 'a plain member cannot register an endpoint')
        tap.eq(R('GET', '/v1/webhooks').status, 401, 'anonymous callers get 401')
        r = create(MA, '/hello', ['hello.*'], description='Our CRM')
        tap.eq(r.status, 201, 'a manager registers an endpoint')
        hello = r.json()
        secret = hello.get('secret', '')
        tap.ok(secret.startswith('whsec_') and len(base64.b64decode(secret[6:])) >= 24,
               'the secret is whsec_ + base64 of 24+ random bytes')
        tap.eq((hello['org_id'], hello['events'], hello['enabled'], hello['description']),
               (orgA, ['hello.*'], True, 'Our CRM'), 'it belongs to the manager\'s organisation')
        r = R('GET', '/v1/webhooks', headers=MA)
        tap.ok(r.status == 200 and [e['id'] for e in r.json()['items']] == [hello['id']],
               'the manager lists it')
        tap.ok('whsec_' not in r.text and 'secret"' not in r.text, 'the list shows no secret')
        r = R('GET', '/v1/webhooks/' + hello['id'], headers=MA)
        tap.ok(r.status == 200 and 'whsec_' not in r.text, 'GET one endpoint, without secret')
        tap.eq(R('GET', '/v1/webhooks/' + hello['id'], headers=MB).status, 404,
               'another organisation\'s manager gets 404')
        tap.eq(R('GET', '/v1/webhooks', headers=MB).json()['items'], [],
               'and lists nothing of org A')
        tap.eq(R('GET', '/v1/webhooks?org=' + orgA, headers=MB).status, 403,
               'nor with ?org= of another organisation')
        tap.eq(R('GET', '/v1/webhooks/' + hello['id'], headers=MEMBER).status, 403,
               'a plain member of the organisation gets 403')
        tap.eq(R('GET', '/v1/webhooks/' + hello['id'], headers=ADMIN).status, 200,
               'an admin reads any endpoint')
        tap.eq(R('GET', '/v1/webhooks/not-a-uuid', headers=MA).status, 404, 'bad id → 404')
        tap.eq(create(MA, '/x', ['*'], org=orgB).status, 403,
               'a manager cannot register for another organisation')
        r = create(ADMIN, '/x', ['*'])
        tap.ok(r.status == 422 and 'org' in r.json().get('errors', {}),
               'an admin without organisation must name one')
        r = create(ADMIN, '/other-org', ['other.*'], org=orgB)
        tap.eq((r.status, r.json().get('org_id')), (201, orgB),
               'an admin registers an endpoint for any organisation')
        other = r.json()
        r = R('POST', '/v1/webhooks', headers=ADMIN,
              body={'url': recv.url('/x'), 'events': ['*'], 'org': '00000000-0000-4000-8000-'
                    '000000000000'})
        tap.ok(r.status == 422 and 'org' in r.json().get('errors', {}),
               'an unknown organisation → 422')
        bad_bodies = [
            ({'url': 'ftp://example.com/', 'events': ['*']}, 'url'),
            ({'url': 'http://169.254.169.254/latest/meta-data/', 'events': ['*']}, 'url'),
            ({'url': 'http://[::ffff:169.254.169.254]/', 'events': ['*']}, 'url'),
            ({'url': 'http://10.1.2.3/hook', 'events': ['*']}, 'url'),
            ({'url': 'http://192.168.0.10/hook', 'events': ['*']}, 'url'),
            ({'url': 'http://[fd00::1]/hook', 'events': ['*']}, 'url'),
            ({'url': 'https://example.com/', 'events': []}, 'events'),
            ({'url': 'https://example.com/', 'events': ['Bad Type']}, 'events'),
            ({'url': 'https://example.com/', 'events': 'all'}, 'events'),
            ({'url': 'https://example.com/'}, 'events'),
            ({'url': 'https://example.com/', 'events': ['*'], 'secret': 'mine'}, 'secret'),
            ({'url': 'https://example.com/', 'events': ['*'], 'enabled': 'yes'}, 'enabled'),
            ({'url': 'https://example.com/', 'events': ['*'], 'description': 'x' * 501},
             'description'),
        ]
        for body, field in bad_bodies:
            r = R('POST', '/v1/webhooks', headers=MA, body=body)
            tap.ok(r.status == 422 and field in r.json().get('errors', {}),
                   'bad endpoint (%s: %s) → 422 naming it' % (field, str(body.get(field))[:40]))
        tap.eq(len(R('GET', '/v1/webhooks', headers=ADMIN).json()['items']), 2,
               'bad input created nothing')
        r = R('PATCH', '/v1/webhooks/' + hello['id'], headers=MA,
              body={'events': ['hello.*', 'hello.*', 'greeting.sent'], 'description': 'CRM'})
        tap.eq((r.status, r.json().get('events')), (200, ['hello.*', 'greeting.sent']),
               'PATCH events (duplicates dropped)')
        r = R('PATCH', '/v1/webhooks/' + hello['id'], headers=MA, body={'url': 'gopher://x'})
        tap.ok(r.status == 422 and 'url' in r.json()['errors'], 'PATCH with a bad URL → 422')
        tap.eq(R('PATCH', '/v1/webhooks/' + hello['id'], headers=MB, body={}).status, 404,
               'PATCH by another organisation → 404')
        tap.eq(R('PATCH', '/v1/webhooks/' + hello['id'], headers=MA,
                 body={'org_id': orgB}).status, 422, 'the organisation cannot be changed')
        page1 = R('GET', '/v1/webhooks?limit=1', headers=ADMIN).json()
        page2 = R('GET', '/v1/webhooks?limit=1&cursor=' + (page1['next_cursor'] or ''),
                  headers=ADMIN).json()
        tap.ok(len(page1['items']) == 1 and len(page2['items']) == 1 and
               page1['items'][0]['id'] != page2['items'][0]['id'] and not page2['next_cursor'],
               'cursor pagination')
        tap.eq(R('GET', '/v1/webhooks?cursor=garbage', headers=ADMIN).status, 400,
               'a bad cursor → 400')
        tap.eq(R('GET', '/v1/webhooks?limit=0', headers=ADMIN).status, 400, 'limit=0 → 400')

        # ---- a delivery, signed ----
        ev = outbox(orgA, 'hello.world', 'hello-1', {'greeting': 'hi', 'n': 12345678901234567})
        outbox(orgA, 'nothing.here', 'ignored-1')
        outbox(orgB, 'hello.world', 'hello-b')
        tap.ok(wait_for(lambda: recv.on('/hello')), 'the event reaches the receiver')
        _, _, h, body = recv.on('/hello')[0]
        doc = json.loads(body)
        tap.eq((doc.get('id'), doc.get('type'), doc.get('data')),
               (ev, 'hello.world', {'greeting': 'hi', 'n': 12345678901234567}),
               'the body has the event id (outbox id), type and data (numbers exact)')
        tap.ok(isinstance(doc.get('created_at'), str) and doc['created_at'].endswith('Z'),
               'and created_at')
        tap.eq(h.get('webhook-id'), ev, 'webhook-id is the event id')
        tap.ok(h.get('content-type', '').startswith('application/json'), 'JSON content type')
        tap.ok(verify(secret, h, body), 'the signature verifies (Standard Webhooks)')
        tap.ok(doc_verifier()(secret, h, body), 'and with the snippet of docs/webhooks.md')
        try:  # the official library, when installed (pip install standardwebhooks)
            from standardwebhooks.webhooks import Webhook
            tap.eq(Webhook(secret).verify(body, h).get('id'), ev,
                   'and with the official standardwebhooks library')
        except ImportError:
            tap.skip('verify with the official standardwebhooks library', 'not installed')
        tap.ok(not verify('whsec_' + base64.b64encode(b'x' * 24).decode(), h, body),
               'and not with another secret')
        tap.ok(not verify(secret, h, body + b' '), 'nor for another body')

        # ---- retries, dead, Retry-After, 410, redirects: in parallel ----
        ep = {}
        for name in ('flaky', 'dead', 'ratelimited', 'gone', 'redirect'):
            r = create(MA, '/' + name, [name + '.*'])
            ep[name] = r.json()
        recv.plan('/flaky', (500, {}, 0), (500, {}, 0), (503, {}, 0))
        recv.plan('/dead', *[(500, {}, 0)] * 10)
        recv.plan('/ratelimited', (429, {'Retry-After': '3'}, 0))
        recv.plan('/gone', (410, {}, 0))
        recv.plan('/redirect', *[(302, {'Location': recv.url('/redirected')}, 0)] * 10)
        events = {name: outbox(orgA, name + '.happened', name + '-1') for name in ep}

        tap.ok(wait_for(lambda: len(recv.on('/flaky')) >= 4, 20),
               'the flaky receiver is tried four times')
        hits = recv.on('/flaky')
        tap.eq({x[2]['webhook-id'] for x in hits}, {events['flaky']},
               'with the same event id every time')
        tap.eq(len({x[3] for x in hits}), 1, 'and the same body')
        tap.ok(all(verify(ep['flaky']['secret'], x[2], x[3]) for x in hits),
               'every attempt is signed')
        tap.ok(wait_for(lambda: q("SELECT state FROM sp_jobs WHERE queue = 'webhook.send' AND "
                                  "payload->>'outbox_id' = '%s'" % events['flaky']) == 'done'),
               'the delivery is done once the receiver answers 2xx')
        log = R('GET', '/v1/webhooks/%s/deliveries' % ep['flaky']['id'], headers=MA).json()
        tap.eq([(d['attempt'], d['status_code'], d['outcome']) for d in log['items']],
               [(4, 200, 'delivered'), (3, 503, 'retrying'), (2, 500, 'retrying'),
                (1, 500, 'retrying')], 'the deliveries log shows the four attempts')
        tap.ok(all(d['event_id'] == events['flaky'] and isinstance(d['duration_ms'], int)
                   for d in log['items']), 'with the event id and timing')
        tap.ok(log['items'][1]['error'] == 'HTTP 503' and log['items'][1]['next_attempt_at'],
               'errors and next attempt times')
        tap.eq((log['items'][0]['response'], log['items'][1]['response']),
               ('{"ok":true}', 'nope'), "the receivers' answers, quotes and all")
        gaps = [b[0] - a[0] for a, b in zip(hits, hits[1:])]
        tap.ok(all(g >= 0.8 for g in gaps), 'attempts follow the schedule (gaps %s)'
               % ['%.1f' % g for g in gaps])

        tap.ok(wait_for(lambda: q("SELECT state FROM sp_jobs WHERE queue = 'webhook.send' AND "
                                  "payload->>'outbox_id' = '%s'" % events['dead']) == 'dead'),
               'a receiver failing every attempt: the delivery is dead')
        tap.eq(len(recv.on('/dead')), 4, 'after 1 + 3 attempts (schedule "1,1,1")')
        log = R('GET', '/v1/webhooks/%s/deliveries' % ep['dead']['id'], headers=MA).json()
        tap.ok(log['items'][0]['outcome'] == 'failed' and 'gave up' in log['items'][0]['error'],
               'the last attempt says it gave up')

        tap.ok(wait_for(lambda: len(recv.on('/ratelimited')) >= 2, 15), '429, then success')
        rl = recv.on('/ratelimited')
        tap.ok(rl[1][0] - rl[0][0] >= 2.9, 'the retry waited Retry-After: 3 (%.1f s)'
               % (rl[1][0] - rl[0][0]))

        tap.ok(wait_for(lambda: q("SELECT enabled FROM webhook_endpoints WHERE id = '%s'"
                                  % ep['gone']['id']) == 'f'), '410 disables the endpoint')
        r = R('GET', '/v1/webhooks/' + ep['gone']['id'], headers=MA).json()
        tap.ok(r['enabled'] is False and '410' in (r['disabled_reason'] or ''),
               'the API says why')
        outbox(orgA, 'gone.again', 'gone-2')
        time.sleep(1.5)
        r = R('PATCH', '/v1/webhooks/' + ep['gone']['id'], headers=MA, body={'enabled': True})
        tap.ok(r.status == 200 and r.json()['enabled'] and r.json()['disabled_reason'] is None,
               'a manager enables it again')
        R('PATCH', '/v1/webhooks/' + ep['gone']['id'], headers=MA, body={'enabled': False})

        tap.ok(wait_for(lambda: len(recv.on('/redirect')) >= 4, 20), 'a redirecting receiver')
        time.sleep(0.5)
        tap.eq(recv.on('/redirected'), [], 'the redirect is not followed')
        log = R('GET', '/v1/webhooks/%s/deliveries' % ep['redirect']['id'], headers=MA).json()
        tap.ok('redirects are not followed' in (log['items'][-1]['error'] or ''),
               'and the log says so')
        tap.eq(len(recv.on('/gone')), 1, 'a disabled endpoint receives nothing more')
        tap.eq(len(recv.on('/flaky')), 4, 'the delivered event was not sent again')
        r = R('GET', '/v1/webhooks/%s/deliveries?limit=2' % ep['flaky']['id'], headers=MA).json()
        r2 = R('GET', '/v1/webhooks/%s/deliveries?limit=2&cursor=%s' % (
            ep['flaky']['id'], r['next_cursor']), headers=MA).json()
        tap.eq([d['attempt'] for d in r['items'] + r2['items']], [4, 3, 2, 1],
               'the deliveries log pages with a cursor')
        tap.eq(R('GET', '/v1/webhooks/%s/deliveries' % ep['flaky']['id'], headers=MB).status,
               404, 'another organisation cannot read the log')

        # ---- test ping, timeout ----
        r = R('POST', '/v1/webhooks/%s/test' % hello['id'], headers=MA)
        tap.eq((r.status, r.json().get('delivered'), r.json().get('status_code')),
               (200, True, 200), 'a test ping is delivered')
        ping = [x for x in recv.on('/hello') if json.loads(x[3])['type'] == 'webhook.ping']
        tap.ok(len(ping) == 1 and verify(secret, ping[0][2], ping[0][3]) and
               ping[0][2]['webhook-id'] == r.json()['event_id'], 'signed, with its event id')
        slow = create(MA, '/slow', ['slow.*']).json()
        recv.plan('/slow', (200, {}, 3))
        t0 = time.monotonic()
        r = R('POST', '/v1/webhooks/%s/test' % slow['id'], headers=MA).json()
        tap.ok(r['delivered'] is False and 'imeout' in (r['error'] or '') and
               time.monotonic() - t0 < 2.9, 'a slow receiver times out (timeout_s = 2): %s'
               % r['error'])

        # ---- secret rotation: two signatures ----
        r = R('POST', '/v1/webhooks/%s/rotate-secret' % hello['id'], headers=MA)
        new_secret = r.json().get('secret', '')
        tap.ok(r.status == 200 and new_secret.startswith('whsec_') and new_secret != secret,
               'rotate the secret: a new one, shown once')
        tap.ok(r.json().get('previous_secret_expires_at'), 'the old one expires later')
        ev2 = outbox(orgA, 'greeting.sent', 'greeting-1')
        tap.ok(wait_for(lambda: any(x[2]['webhook-id'] == ev2 for x in recv.on('/hello'))),
               'the next delivery arrives')
        _, _, h, body = [x for x in recv.on('/hello') if x[2]['webhook-id'] == ev2][0]
        sigs = h['webhook-signature'].split(' ')
        tap.eq(len(sigs), 2, 'it carries two signatures during the rotation window')
        tap.ok(verify(new_secret, h, body) and verify(secret, h, body),
               'one verifies with the new secret, one with the old')
        tap.ok(verify(new_secret, dict(h, **{'webhook-signature': sigs[0]}), body) and
               verify(secret, dict(h, **{'webhook-signature': sigs[1]}), body),
               'new secret first')

        # ---- cloud metadata refused even with allow_loopback ----
        meta = create(MA, '/meta', ['meta.*']).json()
        q("UPDATE webhook_endpoints SET url = 'http://169.254.169.254/latest/meta-data/' "
          "WHERE id = '%s'" % meta['id'])
        t0 = time.monotonic()
        r = R('POST', '/v1/webhooks/%s/test' % meta['id'], headers=MA).json()
        tap.ok(r['outcome'] == 'refused' and 'metadata' in r['error'] and
               time.monotonic() - t0 < 1.5,
               '169.254.169.254 is refused at once, even with allow_loopback: %s' % r['error'])

        # ---- a cause rolled back sends nothing; committed, it does ----
        uid = q("SELECT id FROM sp_users WHERE email = 'manager@a.example'")
        create(MA, '/jobber', ['jobber.*'])
        r = R('POST', '/v1/jobber/notify', body={'user_id': uid, 'key': 'rb-1', 'rollback': True})
        tap.eq(r.json().get('committed'), False, 'a cause that rolls back after notify_tx')
        r = R('POST', '/v1/jobber/notify', body={'user_id': uid, 'key': 'ok-1'})
        tap.eq(r.json().get('committed'), True, 'and one that commits')
        tap.ok(wait_for(lambda: recv.on('/jobber')), 'the committed one is delivered')
        time.sleep(1.0)
        tap.eq([json.loads(x[3])['data'].get('key') for x in recv.on('/jobber')], ['ok-1'],
               'the rolled-back one sent nothing')
        tap.eq(q("SELECT count(*) FROM sp_outbox WHERE dedupe_key = 'rb-1'"), '0',
               'and left no outbox row')

        r = R('DELETE', '/v1/webhooks/' + other['id'], headers=MB)
        tap.eq(r.status, 204, 'a manager deletes an endpoint of their organisation')
        tap.eq(R('GET', '/v1/webhooks/' + other['id'], headers=MB).status, 404, 'it is gone')
        tap.eq(R('DELETE', '/v1/webhooks/' + other['id'], headers=MB).status, 404,
               'deleting twice → 404')
        metrics = R('GET', '/metrics').text
        tap.ok('spearhead_webhook_delivered_total' in metrics and
               'spearhead_webhook_refused_total' in metrics, 'metrics are exported')
        tap.eq(srv.stop(), 0, 'clean exit')

    # ---- without the allowance: loopback refused after DNS, literal IPs at registration
    with Server(database=url, args=['--workers', '1'], env=STRICT_ENV,
                config_text=CONFIG) as strict:
        R = strict.request
        r = R('POST', '/v1/webhooks', headers=MA,
              body={'url': recv.url('/ssrf'), 'events': ['ssrf.*']})
        tap.ok(r.status == 422 and 'loopback' in r.json()['errors'].get('url', ''),
               'registration refuses a literal loopback address without the allowance')
        r = R('POST', '/v1/webhooks', headers=MA,
              body={'url': 'https://hooks.example.com/ssrf', 'events': ['ssrf.*']})
        tap.eq(r.status, 201, 'a public name is accepted')
        ssrf = r.json()
        for target in ('http://localhost:%d/ssrf' % recv.port,
                       'http://[::ffff:127.0.0.1]:%d/ssrf' % recv.port):
            q("UPDATE webhook_endpoints SET url = '%s' WHERE id = '%s'" % (target, ssrf['id']))
            r = R('POST', '/v1/webhooks/%s/test' % ssrf['id'], headers=MA).json()
            tap.ok(r['outcome'] == 'refused' and 'loopback' in (r['error'] or ''),
                   '%s (resolved to loopback) is refused: %s' % (target, r['error']))
        q("UPDATE webhook_endpoints SET url = 'http://localhost:%d/ssrf' WHERE id = '%s'"
          % (recv.port, ssrf['id']))
        ev = outbox(orgA, 'ssrf.attempt', 'ssrf-1')
        tap.ok(wait_for(lambda: q("SELECT state FROM sp_jobs WHERE queue = 'webhook.send' AND "
                                  "payload->>'outbox_id' = '%s'" % ev) == 'dead'),
               'a delivery to it fails for good at once')
        err = q("SELECT last_error FROM sp_jobs WHERE queue = 'webhook.send' AND "
                "payload->>'outbox_id' = '%s'" % ev)
        tap.ok('refused to connect' in err and 'allow_loopback' in err,
               'with a clear error: %s' % err)
        tap.ok('::1' not in err and '127.0.0.1' not in err,
               'which does not tell what the name resolves to (the server log does)')
        tap.ok(wait_for(lambda: 'refused to connect' in strict.log_text()),
               'the refusal is logged')
        tap.eq(recv.on('/ssrf'), [], 'the receiver saw nothing')
        strict.stop()

    # ---- two instances on one outbox: each event exactly once ----
    pair_id = q("INSERT INTO webhook_endpoints (org_id, url, events, secret) VALUES ('%s', "
                "'%s', '{pair.*}', '%s') RETURNING id" % (orgA, recv.url('/pair'), secret)
                ).splitlines()[0]
    env2 = dict(BASE_ENV, SPEARHEAD_JOBS_LEASE_S='60')
    with Server(database=url, args=['--workers', '1'], env=env2, config_text=CONFIG) as a, \
            Server(database=url, args=['--workers', '1'], env=env2, config_text=CONFIG) as b:
        ids = outbox(orgA, 'pair.item', 'pair', n=300)
        pair_jobs = ("FROM sp_jobs WHERE queue = 'deliver.webhook' AND (payload->>'outbox_id')"
                     "::uuid IN (SELECT id FROM sp_outbox WHERE type = 'pair.item')")
        ok = wait_for(lambda: q("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = "
                                "'%s'" % pair_id) == '300' and
                      q("SELECT count(*) " + pair_jobs) == '0', 40)
        tap.ok(ok, '300 events delivered by two instances; their delivery jobs are gone')
        time.sleep(0.5)
        got = [x[2]['webhook-id'] for x in recv.on('/pair')]
        tap.eq((len(got), len(set(got)), set(got) == set(ids)), (300, 300, True),
               'each exactly once')
        tap.eq(q("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = '%s' AND "
                 "attempt = 1 AND outcome = 'delivered'" % pair_id), '300',
               'one attempt each in the log')
        tap.eq(q("SELECT count(*) FROM sp_jobs WHERE queue = 'webhook.send' AND payload->>"
                 "'endpoint_id' = '%s'" % pair_id), '0',
               'delivered by their delivery jobs: no send job')
        # created_at is the log statement's now(): shared values mean shared statements.
        tap.ok(int(q("SELECT count(*) - count(DISTINCT created_at) FROM webhook_deliveries "
                     "WHERE endpoint_id = '%s'" % pair_id)) > 0,
               'attempts ending together are logged (and their jobs deleted) by one statement')
        a.stop()
        b.stop()

    # ---- a burst larger than the concurrency: requests wait for a free connection;
    # attempts end in batches, each with its own outcome ----
    q("INSERT INTO webhook_endpoints (org_id, url, events, secret) VALUES ('%s', '%s', "
      "'{burst.*}', '%s')" % (orgA, recv.url('/burst'), secret))
    recv.delay['/burst'] = 0.05
    recv.plan('/burst', *[(500, {}, 0.05)] * 3)
    with Server(database=url, args=['--workers', '1'], env=BASE_ENV,
                config_text=CONFIG + 'concurrency = 4\n') as a:
        ids = outbox(orgA, 'burst.item', 'burst', n=40)
        burst = ("(payload->>'outbox_id')::uuid IN (SELECT id FROM sp_outbox WHERE type = "
                 "'burst.item')")
        ok = wait_for(lambda: q("SELECT count(*) FROM webhook_deliveries d JOIN sp_outbox o ON "
                                "o.id = d.event_id WHERE o.type = 'burst.item' AND outcome = "
                                "'delivered'") == '40' and
                      q("SELECT count(*) FROM sp_jobs WHERE state = 'done' AND queue = "
                        "'webhook.send' AND " + burst) == '3', 40)
        tap.ok(ok, 'a burst of 40 events is delivered')
        tap.ok(recv.peak.get('/burst', 0) <= 4,
               'with at most `concurrency` (4) requests at once (peak %d)'
               % recv.peak.get('/burst', 0))
        hits = recv.on('/burst')
        tap.eq((len(hits), {x[2]['webhook-id'] for x in hits} == set(ids)), (43, True),
               'every event arrives; the three that failed were sent again, nothing else')
        tap.eq(q("SELECT string_agg(queue || ':' || attempts || 'x' || n, ',' ORDER BY queue) "
                 "FROM (SELECT queue, attempts, count(*) AS n FROM sp_jobs WHERE " + burst +
                 " GROUP BY queue, attempts) x"), 'webhook.send:2x3',
               'each attempt ended with its own outcome: every delivery job ended (deleted) at '
               'once, the three failures retried by their send jobs (second attempt)')
        tap.eq(q("SELECT string_agg(outcome || ':' || n, ',' ORDER BY outcome) FROM (SELECT "
                 "outcome, count(*) AS n FROM webhook_deliveries d JOIN sp_outbox o ON o.id = "
                 "d.event_id WHERE o.type = 'burst.item' GROUP BY outcome) x"),
               'delivered:40,retrying:3', 'and the log has every attempt')
        a.stop()
    recv.delay['/burst'] = 0

    # ---- a delivery that waited longer than timeout_s for a connection is given back:
    # not sent then (with its own request it could outlive its job's lease), its endpoint
    # gets a send job due at once, and the attempt is neither counted nor logged ----
    q("INSERT INTO webhook_endpoints (org_id, url, events, secret) VALUES ('%s', '%s', "
      "'{queue.*}', '%s')" % (orgA, recv.url('/queue'), secret))
    recv.delay['/queue'] = 0.7
    slow_cfg = '[plugin.webhook]\nretry_schedule = 1,1,1\ntimeout_s = 1\nconcurrency = 1\n'
    with Server(database=url, args=['--workers', '1'], env=BASE_ENV, config_text=slow_cfg) as a:
        ids = outbox(orgA, 'queue.item', 'queue', n=4)
        queued = "(SELECT id FROM sp_outbox WHERE type = 'queue.item')"
        ok = wait_for(lambda: q("SELECT count(*) FROM webhook_deliveries WHERE event_id IN "
                                + queued) == '4', 30)
        tap.ok(ok, 'four deliveries through one connection answering in 0.7 s (timeout_s = 1)')
        hits = [x[2]['webhook-id'] for x in recv.on('/queue')]
        tap.eq((len(hits), set(hits) == set(ids)), (4, True), 'each sent once')
        sends = q("SELECT string_agg(state || ':' || attempts, ',') FROM sp_jobs WHERE queue = "
                  "'webhook.send' AND (payload->>'outbox_id')::uuid IN " + queued)
        tap.ok(sends and set(sends.split(',')) == {'done:1'} and
               1 <= len(sends.split(',')) <= 3,
               'those that waited too long were given back to send jobs, sent at their first '
               'attempt (%s)' % sends)
        tap.eq(q("SELECT string_agg(DISTINCT attempt || outcome, ',') FROM webhook_deliveries "
                 "WHERE event_id IN " + queued), '1delivered',
               'the log has one attempt per event, nothing for the attempts given back')
        a.stop()
    recv.delay['/queue'] = 0

    # ---- one event, several endpoints: the delivery job makes the first attempts, and
    # only a failed endpoint gets a send job (with its log row); a delivery job run again
    # (its worker died) skips the endpoints that already have theirs ----
    fan = {}
    for name in ('fan-ok', 'fan-fail', 'fan-skip'):
        fan[name] = q("INSERT INTO webhook_endpoints (org_id, url, events, secret) VALUES "
                      "('%s', '%s', '{fan.*}', '%s') RETURNING id"
                      % (orgA, recv.url('/' + name), secret)).splitlines()[0]
    recv.plan('/fan-fail', (500, {}, 0), (500, {}, 0))
    ev1 = outbox(orgA, 'fan.one', 'fan-1')
    # ev2's delivery job as a restart finds it: its first run (attempt 1) gave fan-skip a
    # send job (due in an hour here) and died before ending.
    ev2 = outbox(orgA, 'fan.two', 'fan-2')
    q("UPDATE sp_jobs SET attempts = 1 WHERE queue = 'deliver.webhook' AND payload->>'outbox_id' = '%s'"
      % ev2)
    q("INSERT INTO sp_jobs (queue, payload, dedupe_key, attempts, max_attempts, run_at) VALUES "
      "('webhook.send', jsonb_build_object('outbox_id', '%s'::uuid, 'endpoint_id', '%s'::uuid), "
      "'%s:%s', 1, 4, now() + interval '1 hour')" % (ev2, fan['fan-skip'], ev2, fan['fan-skip']))
    fan_sends = ("SELECT string_agg(payload->>'endpoint_id' || ':' || state || ':' || attempts, "
                 "',' ORDER BY payload->>'endpoint_id', state) FROM sp_jobs WHERE queue = "
                 "'webhook.send' AND payload->>'outbox_id' = '%s'")
    with Server(database=url, args=['--workers', '1'], env=BASE_ENV, config_text=CONFIG) as a:
        ok = wait_for(lambda: len(recv.on('/fan-fail')) >= 4 and
                      q("SELECT string_agg(queue || ':' || state, ',' ORDER BY queue, state) FROM "
                        "sp_jobs WHERE state <> 'pending' AND (payload->>'outbox_id')::uuid IN "
                        "('%s', '%s')" % (ev1, ev2)) == 'webhook.send:done,webhook.send:done',
                      20)
        tap.ok(ok, 'two events to three endpoints: delivered, both delivery jobs ended')
        ids = lambda path: sorted(x[2]['webhook-id'] for x in recv.on(path))  # noqa: E731
        tap.eq(ids('/fan-ok'), sorted([ev1, ev2]), 'each event once to the healthy endpoint')
        tap.eq(ids('/fan-fail'), sorted([ev1, ev1, ev2, ev2]),
               'twice to the failing one (500, then the retry)')
        tap.eq(ids('/fan-skip'), [ev1],
               'the delivery job run again skipped the endpoint that has its send job')
        tap.eq(q(fan_sends % ev1), '%s:done:2' % fan['fan-fail'],
               'a send job only for the endpoint that failed, done at its second attempt')
        tap.eq(q(fan_sends % ev2), ','.join(sorted(['%s:done:3' % fan['fan-fail'],
                                                    '%s:pending:1' % fan['fan-skip']])),
               'and the one made before the restart left alone')
        tap.eq(q("SELECT string_agg(attempt || outcome, ',' ORDER BY attempt) FROM "
                 "webhook_deliveries WHERE event_id = '%s' AND endpoint_id = '%s'"
                 % (ev1, fan['fan-fail'])), '1retrying,2delivered',
               'the log has both attempts')
        a.stop()
    q("DELETE FROM sp_jobs WHERE queue = 'webhook.send' AND payload->>'outbox_id' = '%s'" % ev2)
    q("UPDATE webhook_endpoints SET enabled = false WHERE events = '{fan.*}'")

    # ---- kill -9 in the middle of 1,000 deliveries ----
    q("INSERT INTO webhook_endpoints (org_id, url, events, secret) VALUES ('%s', '%s', "
      "'{batch.*}', '%s')" % (orgA, recv.url('/batch'), secret))
    recv.delay['/batch'] = 0.02
    with Server(database=url, args=['--workers', '1'], env=BASE_ENV, config_text=CONFIG) as a:
        ids = outbox(orgA, 'batch.item', 'batch', n=1000)
        tap.ok(wait_for(lambda: len(recv.on('/batch')) >= 150, 30, 0.01),
               'deliveries under way')
        a.kill()
        before = len(recv.on('/batch'))
        tap.ok(before < 1000, 'killed with -9 after %d of 1000 deliveries' % before)
    recv.delay['/batch'] = 0
    with Server(database=url, args=['--workers', '1'], env=BASE_ENV, config_text=CONFIG) as b:
        done = wait_for(lambda: q("SELECT count(*) FROM sp_jobs WHERE state <> 'done' AND "
                                  "queue IN ('deliver.webhook', 'webhook.send') AND (payload->>"
                                  "'outbox_id')::uuid IN (SELECT id FROM sp_outbox WHERE type = "
                                  "'batch.item')") == '0', 45)
        tap.ok(done, 'after a restart every job is done (none pending or running)')
        got = [x[2]['webhook-id'] for x in recv.on('/batch')]
        tap.ok(set(got) == set(ids), 'every event reached the receiver at least once')
        tap.eq(len(set(got)), 1000, 'de-duplicated by event id: exactly 1000 events')
        tap.diag('%d requests for 1000 events (%d re-sent after the kill)'
                 % (len(got), len(got) - 1000))
        tap.ok(all(verify(secret, x[2], x[3]) for x in recv.on('/batch')),
               'all of them signed')
        b.stop()
    recv.close()

tap.done()
