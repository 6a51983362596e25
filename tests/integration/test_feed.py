"""The in-app feed (plugin "feed") against two real instances on one database: a
notification created through instance A is listed on A and B and pushed live to a
Server-Sent Events client connected to B; Last-Event-ID resumes with exactly the missed
ones, in order, then live; heartbeats; read, read-all (with up_to) and the unread
filter, also announced to open streams; cursor pagination; people see and mark only
their own notifications (404 otherwise); bad cursors, limits, filters and event ids are
400; streams end cleanly when the server stops."""
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from sptest import PgCluster, Server, Tap, wait_for  # noqa: E402

BIN = os.environ.get('SPEARHEAD_BIN', './spearhead')
ENV = {'SPEARHEAD_PLUGIN_DIR': os.environ.get('SP_TEST_PLUGINDIR', ''),
       'SPEARHEAD_PLUGINS': 'feed',
       'SPEARHEAD_PLUGIN_PATH': os.environ.get('SP_TEST_JOBSDIR', '')}
CONFIG = '[plugin.feed]\nheartbeat_s = 1\n'
FIELDS = {'id', 'seq', 'type', 'title', 'body', 'data', 'created_at', 'read_at'}
tap = Tap()


def cli(*args):
    return subprocess.run([BIN] + list(args), capture_output=True, text=True,
                          env=dict(os.environ, **ENV), timeout=120)


class SSE:
    """A Server-Sent Events client on a raw socket, parsing in a thread: events (dicts
    with id, event, data) and comments go to queues; ended_cleanly is set when the
    server ends the chunked answer properly."""

    def __init__(self, srv, token, last_event_id=None, query=''):
        self.sock = socket.create_connection((srv.host, srv.port), timeout=60)
        head = 'GET /v1/notifications/stream%s HTTP/1.1\r\nHost: test\r\n' % query
        head += 'Accept: text/event-stream\r\n'
        if token:
            head += 'Authorization: Bearer %s\r\n' % token
        if last_event_id is not None:
            head += 'Last-Event-ID: %s\r\n' % last_event_id
        self.sock.sendall((head + '\r\n').encode())
        self.events = queue.Queue()
        self.comments = queue.Queue()
        self.status = None
        self.headers = {}
        self.body = b''
        self.ended_cleanly = False
        self.ready = threading.Event()
        self.closed = threading.Event()
        self._buf = ''
        self._cur = {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            f = self.sock.makefile('rb')
            self.status = int(f.readline().split()[1])
            while True:
                line = f.readline().decode().rstrip('\r\n')
                if not line:
                    break
                k, _, v = line.partition(':')
                self.headers[k.strip().lower()] = v.strip()
            self.ready.set()
            if self.status != 200:
                self.body = f.read(int(self.headers.get('content-length', '0')))
                return
            if 'chunked' not in self.headers.get('transfer-encoding', ''):
                while True:
                    data = f.read1(65536)
                    if not data:
                        return
                    self._feed(data)
            while True:
                size = f.readline()
                if not size:
                    return
                n = int(size.split(b';')[0], 16)
                if n == 0:
                    self.ended_cleanly = True
                    return
                data = f.read(n)
                f.readline()
                self._feed(data)
        except (OSError, ValueError, IndexError):
            pass
        finally:
            self.ready.set()
            self.closed.set()

    def _feed(self, data):
        self._buf += data.decode()
        while '\n' in self._buf:
            line, self._buf = self._buf.split('\n', 1)
            line = line.rstrip('\r')
            if not line:
                if 'data' in self._cur:
                    self._cur['data'] = '\n'.join(self._cur['data'])
                    self.events.put(self._cur)
                self._cur = {}
            elif line.startswith(':'):
                self.comments.put(line[1:].strip())
            else:
                k, _, v = line.partition(':')
                v = v[1:] if v.startswith(' ') else v
                if k == 'data':
                    self._cur.setdefault('data', []).append(v)
                else:
                    self._cur[k] = v

    def started(self, timeout=10):
        """True once the answer is 200 and the stream's first comment arrived."""
        if not self.ready.wait(timeout) or self.status != 200:
            return False
        return self.comment('notifications', timeout)

    def comment(self, text, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if self.comments.get(timeout=max(0.01, end - time.monotonic())) == text:
                    return True
            except queue.Empty:
                break
        return False

    def next(self, timeout=10, kind='notification'):
        """The next event of that kind (others are dropped), or None."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                ev = self.events.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                return None
            if ev.get('event') == kind:
                ev['json'] = json.loads(ev['data'])
                return ev
        return None

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.closed.wait(5)


with tap.guard('feed'), PgCluster() as pg:
    url = pg.url()

    def q(sql):
        return pg.psql(sql).strip()

    ids = {}
    tokens = {}
    for who in ('ann', 'bob'):
        cli('user', 'add', '--email', '%s@x.example' % who, '--database', url)
        tokens[who] = cli('token', 'create', '--email', '%s@x.example' % who, '--database',
                          url).stdout.strip()
        ids[who] = q("SELECT id FROM sp_users WHERE email = '%s@x.example'" % who)
    H = {w: {'Authorization': 'Bearer ' + t} for w, t in tokens.items()}
    tap.ok(all(tokens.values()) and all(ids.values()), 'two people with tokens')

    with Server(database=url, args=['--workers', '1'], env=ENV, config_text=CONFIG) as a, \
            Server(database=url, args=['--workers', '1'], env=ENV, config_text=CONFIG) as b:

        def notify(key, srv=a, who='ann'):
            r = srv.request('POST', '/v1/jobber/notify', body={'user_id': ids[who], 'key': key})
            assert r.status == 202, r

        def listing(srv, who='ann', query=''):
            r = srv.request('GET', '/v1/notifications' + query, headers=H[who])
            return r.json() if r.status == 200 else None

        def keys(items):
            return [i['data'].get('key') for i in items]

        def listed(srv, key, who='ann'):
            page = listing(srv, who, '?limit=100')
            return page and [i for i in page['items'] if i['data'].get('key') == key]

        # ---- live, across instances ----
        live = SSE(b, tokens['ann'])
        tap.ok(live.started(), 'an SSE stream opens on B (200, text/event-stream)')
        tap.ok(live.headers.get('content-type', '').startswith('text/event-stream'),
               'with the event-stream content type')
        bobs = SSE(b, tokens['bob'])
        bobs.started()
        notify('k1')
        item_a = wait_for(lambda: listed(a, 'k1'))
        tap.ok(item_a, 'a notification created through A is listed on A')
        item_b = wait_for(lambda: listed(b, 'k1'))
        tap.ok(item_b, 'and on B')
        k1 = item_a[0]
        tap.eq(set(k1), FIELDS, 'item fields')
        tap.ok(k1['type'] == 'jobber.hello' and k1['title'] == 'Hello from jobber' and
               k1['body'] == 'A test notification.' and k1['read_at'] is None and
               k1['created_at'].endswith('Z'), 'item values come from the outbox row')
        ev = live.next()
        tap.ok(ev and ev['json']['id'] == k1['id'], 'the SSE client on B receives it live')
        tap.ok(ev and ev['id'] == str(k1['seq']) and set(ev['json']) == FIELDS,
               'event id = seq; data = the item')
        tap.ok(live.comment('ping', 5), 'heartbeat comments arrive (heartbeat_s = 1)')
        tap.eq(listing(a, 'bob')['items'], [], "another person's list stays empty")
        tap.eq(bobs.next(1.0), None, "another person's stream gets nothing")

        # ---- resume ----
        live.close()
        # One at a time: the feed's order is the order of delivery, and two instances
        # deliver concurrently.
        away = True
        for k in ('k2', 'k3', 'k4'):
            notify(k)
            away = away and wait_for(lambda: listed(a, k))
        tap.ok(away, 'three more while the client is away')
        back = SSE(b, tokens['ann'], last_event_id=ev['id'])
        tap.ok(back.started(), 'reconnect with Last-Event-ID')
        got = [back.next(5) for _ in range(3)]
        tap.eq([g and g['json']['data']['key'] for g in got], ['k2', 'k3', 'k4'],
               'exactly the missed ones, in order')
        tap.ok(all(got) and [int(g['id']) for g in got] == sorted(int(g['id']) for g in got),
               'with increasing ids')
        notify('k5')
        nxt = back.next()
        tap.ok(nxt and nxt['json']['data']['key'] == 'k5', 'then live ones, nothing in between')
        tap.eq(back.next(1.0), None, 'and nothing twice')
        via_query = SSE(a, tokens['ann'], query='?last_event_id=%s' % got[2]['id'])
        e5 = via_query.next()
        tap.ok(e5 and e5['json']['data']['key'] == 'k5', 'last_event_id as a query parameter')
        via_query.close()
        replay = SSE(a, tokens['ann'], last_event_id='0')
        tap.eq([(replay.next(5) or {}).get('json', {}).get('data', {}).get('key')
                for _ in range(5)], ['k1', 'k2', 'k3', 'k4', 'k5'], 'Last-Event-ID: 0 replays all')
        replay.close()
        fresh = SSE(a, tokens['ann'])
        fresh.started()
        tap.eq(fresh.next(1.0), None, 'a stream without Last-Event-ID sends only new ones')
        fresh.close()

        # an outbox row written by SQL (the channel only needs the row and its job)
        pg.psql("INSERT INTO sp_outbox (type, channel, user_id, dedupe_key, title, body, data) "
                "VALUES ('call.published', 'feed', '%s', 'sql-1', 'Appel à projets', 'Ouvert', "
                "'{\"key\": \"k6\"}')" % ids['ann'])
        e6 = back.next()
        tap.ok(e6 and e6['json']['title'] == 'Appel à projets', 'an outbox row inserted by SQL '
               'reaches the stream (UTF-8 intact)')

        # ---- lists ----
        page = listing(a, 'ann', '?limit=2')
        seen = []
        pages = 0
        while page is not None:
            pages += 1
            seen += page['items']
            if not page['next_cursor']:
                break
            page = listing(a, 'ann', '?limit=2&cursor=' + page['next_cursor'])
        tap.eq(keys(seen), ['k6', 'k5', 'k4', 'k3', 'k2', 'k1'],
               'cursor pages: newest first, every item once')
        tap.eq(pages, 3, 'in three pages of two')
        for bad in ('?cursor=nonsense', '?cursor=WzEyMzRd', '?limit=0', '?limit=101',
                    '?limit=x', '?unread=yes'):
            r = a.request('GET', '/v1/notifications' + bad, headers=H['ann'])
            tap.ok(r.status == 400 and r.headers.get('Content-Type', '').startswith(
                'application/problem+json'), 'bad query %s → 400 problem' % bad)
        r = a.request('GET', '/v1/notifications')
        tap.eq(r.status, 401, 'anonymous → 401')
        bad_id = SSE(b, tokens['ann'], last_event_id='abc')
        bad_id.ready.wait(10)
        tap.eq(bad_id.status, 400, 'a bad Last-Event-ID → 400')
        anon = SSE(b, None)
        anon.ready.wait(10)
        tap.eq(anon.status, 401, 'an anonymous stream → 401')

        # ---- reading ----
        kid = {i['data']['key']: i for i in seen}
        r = b.request('POST', '/v1/notifications/%s/read' % kid['k1']['id'], headers=H['bob'])
        tap.eq(r.status, 404, "marking someone else's notification → 404")
        for junk in ('00000000-0000-4000-8000-000000000000', 'not-a-uuid'):
            r = b.request('POST', '/v1/notifications/%s/read' % junk, headers=H['ann'])
            tap.eq(r.status, 404, 'marking an unknown id (%s) → 404' % junk)
        r = b.request('POST', '/v1/notifications/%s/read' % kid['k1']['id'], headers=H['ann'])
        tap.ok(r.status == 200 and r.json()['read_at'] and r.json()['id'] == kid['k1']['id'],
               'mark one read (on B)')
        first = r.json()['read_at']
        r = a.request('POST', '/v1/notifications/%s/read' % kid['k1']['id'], headers=H['ann'])
        tap.eq((r.status, r.json()['read_at']), (200, first), 'again: same read_at')
        rd = back.next(kind='read')
        tap.ok(rd and rd['json'] == {'id': kid['k1']['id']} and 'id' not in rd,
               'open streams hear of it (a "read" event without an id)')
        tap.eq(keys(listing(a, 'ann', '?unread=true')['items']), ['k6', 'k5', 'k4', 'k3', 'k2'],
               'unread=true leaves it out')
        tap.eq(len(listing(a, 'ann', '?unread=false')['items']), 6, 'unread=false lists all')
        r = a.request('POST', '/v1/notifications/read-all', headers=H['bob'])
        tap.eq((r.status, r.json()), (200, {'marked': 0}), "bob's read-all marks nothing of ann's")
        r = a.request('POST', '/v1/notifications/read-all', headers=H['ann'],
                      body={'up_to': kid['k3']['seq']})
        tap.eq((r.status, r.json()), (200, {'marked': 2}), 'read-all up to a seq')
        tap.eq(keys(listing(b, 'ann', '?unread=true')['items']), ['k6', 'k5', 'k4'],
               'the later ones stay unread')
        for body in ({'up_to': -1}, {'up_to': 'x'}, {'other': 1}, [1]):
            r = a.request('POST', '/v1/notifications/read-all', headers=H['ann'], body=body)
            tap.eq(r.status, 422, 'read-all with a bad body %s → 422' % json.dumps(body))
        r = a.request('POST', '/v1/notifications/read-all', headers=H['ann'])
        tap.eq((r.status, r.json()), (200, {'marked': 3}), 'read-all without a body')
        tap.eq(listing(a, 'ann', '?unread=true')['items'], [], 'nothing unread')
        tap.ok(all(i['read_at'] for i in listing(a, 'ann')['items']), 'every item has read_at')

        tap.eq(q("SELECT count(*) FROM sp_jobs WHERE queue = 'deliver.feed' AND state <> 'done'"),
               '0', 'every feed delivery job is done')
        tap.eq(q("SELECT count(*) FROM feed_items"), '6', 'one feed item per outbox row')
        doc = a.request('GET', '/v1/openapi.json').json()['paths']
        tap.ok({'/v1/notifications', '/v1/notifications/{id}/read', '/v1/notifications/read-all',
                '/v1/notifications/stream'} <= set(doc) and
               'next_cursor' in json.dumps(doc['/v1/notifications']) and
               'up_to' in json.dumps(doc['/v1/notifications/read-all']),
               'the routes and their schemas are in the OpenAPI document')
        m = b.request('GET', '/metrics').text
        tap.ok('spearhead_feed_streams' in m and 'spearhead_feed_stream_events_total' in m,
               'metrics')

        # ---- shutdown ----
        t0 = time.monotonic()
        code = b.stop()
        tap.eq(code, 0, 'B stops cleanly with streams open')
        tap.ok(back.closed.wait(5) and back.ended_cleanly and bobs.ended_cleanly,
               'its streams end with a proper end of the answer')
        tap.ok(time.monotonic() - t0 < 10, 'without waiting for the shutdown timeout')
        bobs.close()
        back.close()
        tap.eq(a.stop(), 0, 'A stops cleanly')

tap.done()
