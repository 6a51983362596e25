"""Helpers shared by the events plugin's integration tests (a library, not a test):
users and API tokens created in bulk with SQL, an asyncio HTTP client for thousands of
concurrent requests, and the SQL that checks the registration invariants."""
import asyncio
import json
import os
import secrets
import subprocess
import time

BUILD = os.environ.get('SP_BUILDDIR', os.getcwd())
BIN = os.environ.get('SPEARHEAD_BIN', os.path.join(BUILD, 'spearhead'))
PLUGINDIR = os.environ.get('SP_TEST_PLUGINDIR', os.path.join(BUILD, 'plugins', '.libs'))
FIXTURES = os.environ.get('SP_TEST_FIXTUREDIR', '')
# The events plugin from the build tree (only it), plus the fixture plugins (the "good"
# one records every bus event it sees at GET /v1/good/seen).
ENV = {'SPEARHEAD_PLUGIN_DIR': PLUGINDIR, 'SPEARHEAD_PLUGINS': 'events',
       'SPEARHEAD_PLUGIN_PATH': FIXTURES}


def cli(*args, stdin=None):
    return subprocess.run([BIN] + list(args), input=stdin, capture_output=True, text=True,
                          env=dict(os.environ, **ENV), timeout=120)


def admin_token(pg, email='staff@cluster.example'):
    """An admin created the way deployments do it: spearhead user add + token create."""
    out = cli('user', 'add', '--email', email, '--admin', '--database', pg.url())
    if out.returncode != 0:
        raise RuntimeError('user add failed: %s' % out.stderr)
    out = cli('token', 'create', '--email', email, '--database', pg.url())
    if out.returncode != 0:
        raise RuntimeError('token create failed: %s' % out.stderr)
    return out.stdout.strip()


def auth(token):
    return {'Authorization': 'Bearer ' + token}


def make_users(pg, n, prefix, display=True):
    """n users with API tokens, inserted with SQL (the CLI would take minutes for
    thousands). Tokens follow core/auth.c: 'sph_' + 43 base64url characters, stored
    as the SHA-256 digest with the first 12 characters as prefix. Returns a list of
    dicts {id, email, token}."""
    emails = ['%s%05d@load.example' % (prefix, i) for i in range(n)]
    tokens = ['sph_' + secrets.token_urlsafe(32)[:43] for _ in range(n)]
    sql = """
WITH v AS (SELECT * FROM unnest(%s::text[], %s::text[]) AS t(email, token)),
u AS (INSERT INTO sp_users (email, display_name)
      SELECT email, %s FROM v RETURNING id, email),
t AS (INSERT INTO sp_tokens (user_id, kind, name, prefix, digest)
      SELECT u.id, 'api', 'test', left(v.token, 12), sha256(convert_to(v.token, 'UTF8'))
        FROM u JOIN v USING (email))
SELECT u.id, u.email FROM u;
""" % (pg_array(emails), pg_array(tokens),
       "initcap(split_part(email, '@', 1))" if display else "''")
    rows = [line.split('|') for line in pg.psql(sql).split('\n') if line]
    ids = {email: uid for uid, email in rows}
    return [{'id': ids[e], 'email': e, 'token': t} for e, t in zip(emails, tokens)]


def pg_array(values):
    return "ARRAY[%s]" % ','.join("'%s'" % v.replace("'", "''") for v in values)


def sql_value(pg, sql):
    return pg.psql(sql).strip()


# ---------------------------------------------------------------- asyncio HTTP

class Reply:
    __slots__ = ('status', 'headers', 'body', 'elapsed', 'error')

    def __init__(self, status, headers, body, elapsed, error=None):
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed
        self.error = error

    def json(self):
        return json.loads(self.body.decode('utf-8'))


async def request(port, method, path, headers=None, body=None, timeout=30.0,
                  host='127.0.0.1'):
    """One HTTP/1.1 request on a fresh connection. Returns a Reply; status None and
    error set when the connection failed."""
    t0 = time.monotonic()
    data = b'' if body is None else json.dumps(body).encode('utf-8')
    head = ['%s %s HTTP/1.1' % (method, path), 'Host: %s:%d' % (host, port),
            'Connection: close', 'Content-Length: %d' % len(data)]
    if body is not None:
        head.append('Content-Type: application/json')
    for k, v in (headers or {}).items():
        head.append('%s: %s' % (k, v))
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.write(('\r\n'.join(head) + '\r\n\r\n').encode('latin-1') + data)
        raw = await asyncio.wait_for(reader.read(), timeout - (time.monotonic() - t0))
    except (OSError, asyncio.TimeoutError) as e:
        return Reply(None, {}, b'', time.monotonic() - t0, '%s: %s' % (type(e).__name__, e))
    finally:
        if writer is not None:
            writer.close()
    elapsed = time.monotonic() - t0
    head_end = raw.find(b'\r\n\r\n')
    if head_end < 0:
        return Reply(None, {}, raw, elapsed, 'no complete response')
    lines = raw[:head_end].decode('latin-1').split('\r\n')
    try:
        status = int(lines[0].split(' ')[1])
    except (IndexError, ValueError):
        return Reply(None, {}, raw, elapsed, 'bad status line %r' % lines[0])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(':')
        headers[k.strip().lower()] = v.strip()
    return Reply(status, headers, raw[head_end + 4:], elapsed)


def run(coro):
    return asyncio.run(coro)


async def gather(coros):
    return await asyncio.gather(*coros)


# ---------------------------------------------------------------- invariants

INVARIANTS = """
WITH e AS (SELECT ev.id, ev.status, ev.capacity, s.confirmed, s.waitlisted,
                  s.capacity AS seats_capacity
             FROM events_events ev JOIN events_seats s ON s.event_id = ev.id
            WHERE ev.id = '{ev}'),
r AS (SELECT * FROM events_registrations WHERE event_id = '{ev}'),
counts AS (SELECT count(*) FILTER (WHERE status = 'confirmed') AS confirmed,
                  count(*) FILTER (WHERE status = 'waitlisted') AS waitlisted FROM r),
promoted AS (SELECT * FROM r WHERE promoted_at IS NOT NULL)
SELECT 'confirmed ' || c.confirmed || ' > capacity ' || e.capacity
  FROM e, counts c WHERE c.confirmed > e.capacity
UNION ALL
SELECT 'seats capacity ' || e.seats_capacity || ' <> event capacity ' || e.capacity
  FROM e WHERE e.seats_capacity <> e.capacity
UNION ALL
SELECT 'confirmed counter ' || e.confirmed || ' <> ' || c.confirmed || ' confirmed rows'
  FROM e, counts c WHERE e.confirmed <> c.confirmed
UNION ALL
SELECT 'waitlisted counter ' || e.waitlisted || ' <> ' || c.waitlisted || ' waitlisted rows'
  FROM e, counts c WHERE e.waitlisted <> c.waitlisted
UNION ALL
SELECT 'category ' || k.name || ': ' || n || ' confirmed, quota ' || k.quota
       || ', counter ' || k.confirmed
  FROM events_categories k
  JOIN LATERAL (SELECT count(*) AS n FROM r WHERE r.category = k.name
                  AND r.status = 'confirmed') x ON true
 WHERE k.event_id = '{ev}' AND (n > coalesce(k.quota, n) OR n <> k.confirmed)
UNION ALL
SELECT 'waitlisted ' || w.id || ' could have a seat'
  FROM r w, e
 WHERE w.status = 'waitlisted' AND e.status = 'published' AND e.confirmed < e.capacity
   AND NOT EXISTS (SELECT 1 FROM events_categories q WHERE q.event_id = w.event_id
                     AND q.name = w.category AND q.quota IS NOT NULL
                     AND q.confirmed >= q.quota)
UNION ALL
SELECT 'waitlisted ' || w.id || ' skipped by later ' || p.id || ' of the same category'
  FROM r w JOIN promoted p ON p.category IS NOT DISTINCT FROM w.category AND p.seq > w.seq
 WHERE w.status = 'waitlisted'
UNION ALL
SELECT 'registration ' || r.id || ' promoted with ' || count(n.id) || ' promotion notices'
  FROM r LEFT JOIN events_notices n ON n.registration_id = r.id
                                   AND n.type = 'registration.promoted'
 GROUP BY r.id, r.promoted_at
HAVING count(n.id) <> (CASE WHEN r.promoted_at IS NULL THEN 0 ELSE 1 END)
UNION ALL
SELECT 'person ' || lower(attendee_email) || ' holds ' || count(*) || ' active registrations'
  FROM r WHERE status <> 'cancelled' GROUP BY lower(attendee_email) HAVING count(*) > 1;
"""


def invariant_violations(pg, event_id):
    """Every broken invariant of one event, as readable lines ([] when all hold)."""
    return [line for line in pg.psql(INVARIANTS.format(ev=event_id)).split('\n') if line]


def waitlist_positions_ok(pg, event_id):
    """The waiting list in arrival order numbers 1..n (what the API computes)."""
    out = sql_value(pg, """
SELECT count(*) = coalesce(max(pos), 0) AND count(*) = count(DISTINCT pos) FROM (
  SELECT row_number() OVER (ORDER BY seq) AS pos FROM events_registrations
   WHERE event_id = '%s' AND status = 'waitlisted') w""" % event_id)
    return out == 't'


def new_event(srv_request, token, **fields):
    """Creates and publishes an event through the API; returns its JSON."""
    body = {'title': 'Load test', 'venue': 'Hall A', 'starts_at': '2031-03-02T09:00:00+01:00',
            'ends_at': '2031-03-02T18:00:00+01:00', 'timezone': 'Europe/Paris',
            'capacity': 100}
    body.update(fields)
    r = srv_request('POST', '/v1/events', headers=auth(token), body=body)
    if r.status != 201:
        raise RuntimeError('event creation failed: %d %s' % (r.status, r.text))
    ev = r.json()
    if ev['status'] != 'published':
        r = srv_request('POST', '/v1/events/%s/publish' % ev['id'], headers=auth(token))
        if r.status != 200:
            raise RuntimeError('publish failed: %d %s' % (r.status, r.text))
        ev = r.json()
    return ev


def metric(srv, name):
    """The value of a metric line on /metrics (None when absent)."""
    text = srv.request('GET', '/metrics').text
    for line in text.split('\n'):
        if line.startswith(name + ' ') or line.startswith(name + '{'):
            try:
                return float(line.rsplit(' ', 1)[1])
            except ValueError:
                return None
    return None
