"""Access-control matrix: every route the router has (core and plugins, read from the
server's own OpenAPI document, which is built from the router) × {anonymous, member of
org A, manager of org A, member of org B, admin} × its methods. A route without an
expectation here fails the test, so no route can ship without one.

Allowed callers must get past authorisation (any status but 401/403); denied callers
get 401 (anonymous) or 403/404 with no byte of org A's private data. No response may
carry internals (password hashes, token digests). Requests use dummy targets or empty
bodies so the walk changes nothing."""
import os
import re
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from sptest import PgCluster, Server, Tap  # noqa: E402

FIXTURES = os.environ.get('SP_TEST_FIXTUREDIR', '')
PLUGINS = os.environ.get('SP_TEST_PLUGINDIR', '/nonexistent')
BIN = os.environ.get('SPEARHEAD_BIN', './spearhead')
# Every plugin the build made (SP_TEST_PLUGINDIR) and the test fixtures: all their
# routes are walked.
ENV = {'SPEARHEAD_PLUGIN_PATH': FIXTURES, 'SPEARHEAD_PLUGIN_DIR': PLUGINS}
STREAMS = {'GET /v1/notifications/stream'}  # answers that stay open: status line only
# Routes whose permission check needs a well-formed body to be reached (the events
# plugin checks organiser rights in the same statement that acts): valid bodies.
BODIES = {
    'POST /v1/events': {'title': 'Walk', 'starts_at': '2031-06-01T09:00:00Z',
                        'ends_at': '2031-06-01T10:00:00Z', 'timezone': 'UTC', 'capacity': 5,
                        'venue': 'Room 1'},
    'POST /v1/events/{id}/organisers': {'email': 'nobody@x.example'},
    'POST /v1/events/{id}/checkin': {'code': 'ABCDEF0123'},
    'PUT /v1/plugins/{name}/settings': {'greeting': 'hello'},
}
WHO = ('anon', 'memberA', 'managerA', 'memberB', 'admin')
DUMMY = '00000000-0000-4000-8000-000000000000'

# Who may pass each route. Shorthands:
#   public: everyone; user: any signed-in user; admin: cluster staff only;
#   manageA: admins and org A's managers; inA: admins and org A's people;
#   withorg: people who belong to an organisation (the admin here belongs to none).
EXPECT = {
    'GET /health': 'public',
    'GET /ready': 'public',
    'GET /metrics': 'public',
    'GET /v1/openapi.json': 'public',
    'GET /v1/plugins': 'public',
    'GET /v1/plugins/{name}': 'public',
    'GET /v1/plugins/{name}/settings': 'admin',
    'PUT /v1/plugins/{name}/settings': 'admin',
    'POST /v1/auth/login': 'public',
    'POST /v1/auth/logout': 'user',
    'GET /v1/me': 'user',
    'POST /v1/tokens': 'user',
    'GET /v1/tokens': 'user',
    'DELETE /v1/tokens/{id}': 'user',
    'GET /v1/organizations': 'user',
    'POST /v1/organizations': 'admin',
    'GET /v1/organizations/{id}': 'user',
    'PATCH /v1/organizations/{id}': 'manageA',
    'DELETE /v1/organizations/{id}': 'admin',
    'GET /v1/organizations/{id}/topics': 'user',
    'PUT /v1/organizations/{id}/topics': 'manageA',
    'GET /v1/organizations/{id}/members': 'inA',
    'POST /v1/organizations/{id}/members': 'manageA',
    'PATCH /v1/organizations/{id}/members/{user_id}': 'manageA',
    'DELETE /v1/organizations/{id}/members/{user_id}': 'manageA',
    'GET /v1/topics': 'user',
    'POST /v1/topics': 'admin',
    'GET /v1/topics/{id}': 'user',
    'PATCH /v1/topics/{id}': 'admin',
    'DELETE /v1/topics/{id}': 'admin',
    'POST /v1/topics/{id}/merge': 'admin',
    'GET /v1/admin/jobs': 'admin',
    'POST /v1/admin/jobs/{id}/retry': 'admin',
    'GET /v1/me/notification-preferences': 'user',
    'PUT /v1/me/notification-preferences': 'user',
    'GET /v1/organizations/{id}/notification-preferences': 'inA',
    'PUT /v1/organizations/{id}/notification-preferences': 'manageA',
    # the "good" test fixture plugin
    'GET /v1/good/hello': 'public',
    'GET /v1/good/rows': 'public',
    'POST /v1/good/echo': 'public',
    'POST /v1/good/emit': 'public',
    'GET /v1/good/admin': 'admin',
    'GET /v1/good/seen': 'public',
    # feed plugin
    'GET /v1/notifications': 'user',
    'POST /v1/notifications/{id}/read': 'user',
    'POST /v1/notifications/read-all': 'user',
    'GET /v1/notifications/stream': 'user',
    # webhook plugin: an organisation's managers (and admins)
    'POST /v1/webhooks': 'manageA',
    'GET /v1/webhooks': 'manageA',
    'GET /v1/webhooks/{id}': 'manageA',
    'PATCH /v1/webhooks/{id}': 'manageA',
    'DELETE /v1/webhooks/{id}': 'manageA',
    'POST /v1/webhooks/{id}/rotate-secret': 'manageA',
    'GET /v1/webhooks/{id}/deliveries': 'manageA',
    'POST /v1/webhooks/{id}/test': 'manageA',
    # events plugin: an event created by the admin (its only organiser) stands for {id}
    'GET /v1/events': 'public',
    'GET /v1/events/{id}': 'public',
    'GET /v1/events/{id}/calendar.ics': 'public',
    'POST /v1/events': 'admin',
    'PATCH /v1/events/{id}': 'admin',
    'DELETE /v1/events/{id}': 'admin',
    'POST /v1/events/{id}/publish': 'admin',
    'POST /v1/events/{id}/close': 'admin',
    'GET /v1/events/{id}/organisers': 'admin',
    'POST /v1/events/{id}/organisers': 'admin',
    'DELETE /v1/events/{id}/organisers/{user_id}': 'admin',
    'GET /v1/events/{id}/registrations': 'admin',
    'POST /v1/events/{id}/registrations': 'user',
    'GET /v1/events/{id}/registrations/{rid}': 'user',
    'DELETE /v1/events/{id}/registrations/{rid}': 'user',
    'POST /v1/events/{id}/registrations/{rid}/checkin': 'admin',
    'POST /v1/events/{id}/checkin': 'admin',
    'GET /v1/me/registrations': 'user',
    # matchmaking plugin
    'GET /v1/matchmaking/index': 'admin',
    'POST /v1/matches': 'user',
    'GET /v1/matches': 'user',
    'GET /v1/matches/{id}': 'user',
    'POST /v1/consortia': 'user',
    'POST /v1/introductions': 'withorg',
    'GET /v1/introductions': 'user',
    'GET /v1/introductions/{id}': 'user',
    'POST /v1/introductions/{id}/accept': 'user',
    'POST /v1/introductions/{id}/decline': 'user',
}
ALLOW = {
    'public': set(WHO),
    'user': {'memberA', 'managerA', 'memberB', 'admin'},
    'admin': {'admin'},
    'manageA': {'managerA', 'admin'},
    'inA': {'memberA', 'managerA', 'admin'},
    'withorg': {'memberA', 'managerA', 'memberB'},  # acts for one's own organisation
}
FORBIDDEN_TEXT = ('password_hash', '$argon2', 'digest')
FULL_TOKEN = re.compile(r'sph_[A-Za-z0-9_-]{43}')
tap = Tap()


def stream_status(srv, path, headers):
    """Status of an answer that stays open (SSE): read the head, then hang up."""
    s = socket.create_connection(('127.0.0.1', srv.port), timeout=10)
    try:
        head = 'GET %s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n' % path
        head += ''.join('%s: %s\r\n' % kv for kv in headers.items()) + '\r\n'
        s.sendall(head.encode())
        data = b''
        while b'\r\n\r\n' not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return int(data.split(b' ')[1]), data.decode('latin-1')
    finally:
        s.close()


def cli(*args, stdin=None):
    return subprocess.run([BIN] + list(args), input=stdin, capture_output=True, text=True,
                          env=dict(os.environ, **ENV), timeout=120)


with tap.guard('authorization matrix'), PgCluster() as pg:
    url = pg.url()
    cli('user', 'add', '--email', 'admin@x.example', '--admin', '--database', url)
    tokens = {'admin': cli('token', 'create', '--email', 'admin@x.example',
                           '--database', url).stdout.strip()}
    with Server(database=url, args=['--workers', '1'], env=ENV) as srv:
        H = {'Authorization': 'Bearer ' + tokens['admin']}
        orgA = srv.request('POST', '/v1/organizations', headers=H,
                           body={'name': 'Org A', 'kind': 'sme'}).json()['id']
        orgB = srv.request('POST', '/v1/organizations', headers=H,
                           body={'name': 'Org B', 'kind': 'hospital'}).json()['id']
        srv.request('POST', '/v1/topics', headers=H, body={'slug': 'topic-a', 'label': 'A'})
        srv.request('PUT', '/v1/organizations/%s/topics' % orgA, headers=H,
                    body={'offers': [{'topic': 'topic-a', 'level': 2}], 'seeks': []})
        passwords = {}
        private = []  # org A's private data: its people's e-mail addresses
        for who, org, role in (('memberA', orgA, 'member'), ('managerA', orgA, 'manager'),
                               ('memberB', orgB, 'member')):
            email = '%s@%s.example' % (who.lower(), org[:8])
            r = srv.request('POST', '/v1/organizations/%s/members' % org, headers=H,
                            body={'email': email, 'role': role})
            login = srv.request('POST', '/v1/auth/login',
                                body={'email': email, 'password': r.json()['initial_password']})
            tokens[who] = login.json()['token']
            passwords[who] = (email, r.json()['initial_password'])
            if org == orgA:
                private.append(email)

        doc = srv.request('GET', '/v1/openapi.json').json()
        routes = sorted((m.upper(), p) for p, item in doc['paths'].items()
                        for m in item if m != 'parameters')
        # Logout ends a session: walk it last.
        routes.sort(key=lambda r: r == ('POST', '/v1/auth/logout'))
        missing = ['%s %s' % r for r in routes if '%s %s' % r not in EXPECT]
        tap.eq(missing, [], 'every registered route has an expectation in the matrix')
        stale = sorted(set(EXPECT) - {'%s %s' % r for r in routes})
        tap.eq(stale, [], 'every expectation names a registered route')

        r = srv.request('POST', '/v1/events', headers=H, body={
            'title': 'Matrix day', 'starts_at': '2031-05-01T09:00:00Z',
            'ends_at': '2031-05-01T17:00:00Z', 'timezone': 'Europe/Paris', 'capacity': 10})
        event = r.json().get('id', DUMMY) if r.status == 201 else DUMMY

        def fill(path, method):
            destructive = method == 'DELETE' or path.endswith('/merge')
            if destructive and 'organizations/{id}/members' not in path:
                target = DUMMY
            elif '/organizations/' in path:
                target = orgA
            elif '/topics/' in path:
                target = 'topic-a'
            elif path.startswith('/v1/events/'):
                target = event
            else:
                target = DUMMY
            return (path.replace('{id}', target).replace('{user_id}', DUMMY)
                    .replace('{rid}', DUMMY).replace('{name}', 'good'))

        for method, pattern in routes:
            key = '%s %s' % (method, pattern)
            if key not in EXPECT:
                continue
            path = fill(pattern, method)
            allowed = ALLOW[EXPECT[key]]
            results = {}
            for who in WHO:
                headers = {} if who == 'anon' else {'Authorization': 'Bearer ' + tokens[who]}
                body = {} if method in ('POST', 'PUT', 'PATCH') else None
                body = BODIES.get(key, body)
                if key in STREAMS:
                    status, text = stream_status(srv, path, headers)
                else:
                    r = srv.request(method, path, body=body, headers=headers)
                    status, text = r.status, r.body.decode('utf-8', 'replace')
                if who in allowed:
                    ok = status not in (401, 403) and status < 500
                else:
                    ok = status == 401 if who == 'anon' else status in (403, 404)
                    if ok and who != 'anon':
                        ok = not any(p in text for p in private)
                leaked = [f for f in FORBIDDEN_TEXT if f in text]
                if FULL_TOKEN.search(text) and key not in ('POST /v1/auth/login',
                                                           'POST /v1/tokens'):
                    leaked.append('a whole token')
                if leaked:
                    ok = False
                if not ok:
                    tap.diag('%s as %s → %d %s' % (key, who, status, text[:200]))
                results[who] = (status, ok)
            tap.ok(all(v[1] for v in results.values()),
                   '%s: %s' % (key, ' '.join('%s=%d' % (w, results[w][0]) for w in WHO)))

        # Mass assignment: forbidden fields change nothing (the walk logged everyone out).
        email, password = passwords['managerA']
        M = {'Authorization': 'Bearer ' + srv.request(
            'POST', '/v1/auth/login', body={'email': email, 'password': password}).json()['token']}
        H = {'Authorization': 'Bearer ' + cli('token', 'create', '--email', 'admin@x.example',
                                              '--database', url).stdout.strip()}
        for body in ({'kind': 'large_enterprise'}, {'id': DUMMY}, {'created_at': '2000-01-01'}):
            r = srv.request('PATCH', '/v1/organizations/' + orgA, headers=M, body=body)
            tap.ok(r.status in (400, 422), 'a manager cannot set %s (%d)' % (list(body)[0],
                                                                            r.status))
        r = srv.request('POST', '/v1/organizations/%s/members' % orgA, headers=M,
                        body={'email': 'sneaky@x.example', 'role': 'admin'})
        tap.eq(r.status, 422, 'role=admin cannot be granted through membership')
        r = srv.request('POST', '/v1/organizations/%s/members' % orgA, headers=M,
                        body={'email': 'sneaky@x.example', 'is_admin': True})
        tap.eq(r.status, 422, 'is_admin is an unknown field')
        r = srv.request('GET', '/v1/organizations/' + orgA, headers=H).json()
        tap.eq((r['kind'], r['name']), ('sme', 'Org A'), 'organisation A unchanged')
        out = pg.psql("SELECT count(*) FROM sp_users WHERE email LIKE 'sneaky%%' OR is_admin")
        tap.eq(out.strip(), '1', 'no user was created or made admin')
        r = srv.request('POST', '/v1/auth/login', body={'email': 'admin@x.example',
                                                        'password': 'x', 'role': 'admin'})
        tap.eq(r.status, 422, 'unknown fields in login are refused')
        r = srv.request('POST', '/v1/tokens', headers=M,
                        body={'name': 'x', 'user_id': DUMMY})
        tap.eq(r.status, 422, 'a token cannot be created for someone else')

tap.done()
