"""Bearer tokens from the command line, admin-only plugin settings validated against the
plugin's schema, stored in PostgreSQL and applied without restart on every instance,
and bus events crossing instances through NOTIFY."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from sptest import PgCluster, Server, Tap, wait_for  # noqa: E402

FIXTURES = os.environ.get('SP_TEST_FIXTUREDIR', '')
BIN = os.environ.get('SPEARHEAD_BIN', './spearhead')
ENV = {'SPEARHEAD_PLUGIN_PATH': FIXTURES, 'SPEARHEAD_PLUGIN_DIR': '/nonexistent'}
tap = Tap()


def cli(*args, stdin=None):
    return subprocess.run([BIN] + list(args), input=stdin, capture_output=True, text=True,
                          env=dict(os.environ, **ENV), timeout=120)


with tap.guard('settings and tokens'), PgCluster() as pg:
    url = pg.url()
    out = cli('user', 'add', '--email', 'Admin@Example.org', '--admin', '--password-stdin',
              '--database', url, stdin='correct horse battery\n')
    tap.eq(out.returncode, 0, 'user add --admin --password-stdin (%s)' % out.stderr.strip())
    tap.ok(out.stdout.startswith('id='), 'prints the new id')
    tap.ok('password=' not in out.stdout, 'no password printed when it came from stdin')
    out = cli('user', 'add', '--email', 'admin@example.org', '--database', url)
    tap.ok(out.returncode == 1 and 'already exists' in out.stderr,
           'e-mail addresses are unique regardless of case')
    out = cli('user', 'add', '--email', 'member@example.org', '--database', url)
    tap.eq(out.returncode, 0, 'user add with a generated password')
    tap.ok('password=' in out.stdout, 'the generated password is printed once')
    out = cli('user', 'add', '--email', 'x@example.org', '--role', 'boss', '--database', url)
    tap.eq(out.returncode, 2, 'a bad role is refused')
    out = cli('token', 'create', '--email', 'admin@example.org', '--database', url)
    admin = out.stdout.strip()
    tap.ok(out.returncode == 0 and admin.startswith('sph_') and len(admin) == 47 and
           '\n' not in admin, 'token create prints the token alone')
    member = cli('token', 'create', '--email', 'member@example.org', '--database', url,
                 '--name', 'ci').stdout.strip()
    out = cli('token', 'create', '--email', 'nobody@example.org', '--database', url)
    tap.ok(out.returncode == 1 and 'no user' in out.stderr, 'token for an unknown user refused')
    stored = pg.psql("SELECT count(*) FROM sp_tokens WHERE encode(digest, 'escape') LIKE "
                     "'%%%s%%'" % admin[4:20]).strip()
    tap.eq(stored, '0', 'the token itself is not stored, only its digest')

    A = {'Authorization': 'Bearer ' + admin}
    M = {'Authorization': 'Bearer ' + member}
    with Server(database=url, args=['--workers', '1'], env=ENV) as a, \
            Server(database=url, args=['--workers', '1'], env=ENV) as b:
        path = '/v1/plugins/good/settings'
        tap.eq(a.request('GET', path).status, 401, 'settings need a token')
        tap.eq(a.request('GET', path, headers=M).status, 403, 'a member is not an admin')
        tap.eq(a.request('GET', path, headers={'Authorization': 'Bearer sph_nope'}).status, 401,
               'a malformed token is refused')
        tap.eq(a.request('GET', path, headers={'Authorization': 'Basic abc'}).status, 401,
               'a non-bearer scheme is refused')
        tap.eq(a.request('GET', '/health', headers={'Authorization': 'Bearer ' + 'sph_' + 'x' * 43}
                         ).status, 401, 'an unknown token is refused even on a public route')
        r = a.request('GET', path, headers=A)
        tap.eq(r.status, 200, 'an admin reads the settings')
        doc = r.json()
        tap.eq(doc.get('settings'), {'greeting': 'hello', 'level': 3, 'api_token': ''},
               'defaults are filled in')
        tap.eq(doc['schema']['properties']['level']['type'], 'integer', 'the schema is given')
        tap.eq(a.request('GET', '/v1/good/admin', headers=A).status, 200,
               'a plugin admin route works for an admin')
        tap.eq(a.request('GET', '/v1/good/admin', headers=M).status, 403,
               'and not for a member')

        r = a.request('PUT', path, headers=A, body={'greeting': 5, 'level': 9, 'colour': 'red'})
        tap.eq(r.status, 422, 'invalid settings are refused')
        errs = r.json().get('errors', {})
        tap.ok(set(errs) == {'greeting', 'level', 'colour'}, 'each bad field is named (%s)' % errs)
        tap.eq(a.request('GET', '/v1/good/hello').json()['greeting'], 'hello', 'nothing changed')
        tap.eq(a.request('PUT', path, headers=A, raw=b'[1]',
                         ).status, 415, 'a body without JSON content type is refused')
        tap.eq(a.request('PUT', path, headers=dict(A, **{'Content-Type': 'application/json'}),
                         raw=b'[1]').status, 422, 'a non-object is refused')

        r = a.request('PUT', path, headers=A, body={'greeting': 'yo', 'level': 4})
        tap.eq(r.status, 200, 'valid settings are stored')
        tap.eq(r.json().get('settings'), {'greeting': 'yo', 'level': 4, 'api_token': ''},
               'and returned')
        tap.eq(a.request('GET', '/v1/good/hello').json()['greeting'], 'yo',
               'applied at once on this instance')
        tap.ok(wait_for(lambda: b.request('GET', '/v1/good/hello').json()['greeting'] == 'yo'),
               'and within seconds on the other instance (NOTIFY, or the periodic re-read)')

        r = a.request('GET', '/v1/good/hello')
        tap.eq((r.headers.get('X-Good'), r.json()['header_codes']), ('yes', [0, -1, -1, -1]),
               'a plugin adds a response header; bad names, CR LF and core headers are refused')
        tap.ok(r.headers.get('Set-Cookie') is None and
               r.headers.get('Content-Type') == 'application/json', 'and nothing leaks through')

        # A secret setting is write-only.
        r = a.request('PUT', path, headers=A,
                      body={'greeting': 'yo', 'level': 4, 'api_token': 'tok-123456'})
        tap.eq((r.status, r.json()['settings'].get('api_token')), (200, '********'),
               'a secret is stored, and answered masked')
        tap.eq(a.request('GET', '/v1/good/hello').json()['api_token_length'], 10,
               'the plugin gets the real secret')
        doc = a.request('GET', path, headers=A).json()
        tap.eq(doc['settings'].get('api_token'), '********', 'GET shows the mask')
        tap.ok('tok-123456' not in a.request('GET', path, headers=A).text,
               'the secret is in no answer')
        doc['settings']['greeting'] = 'yo'
        r = a.request('PUT', path, headers=A, body=doc['settings'])
        tap.eq(r.status, 200, 'GET, change, PUT with the mask sent back')
        tap.eq(a.request('GET', '/v1/good/hello').json()['api_token_length'], 10,
               'keeps the stored secret')
        tap.eq(pg.psql("SELECT settings->>'api_token' FROM sp_plugin_settings "
                       "WHERE plugin = 'good'").strip(), 'tok-123456',
               'and stores it, not the mask')
        r = a.request('PUT', path, headers=A, body={'greeting': 'yo', 'level': 4, 'api_token': ''})
        tap.eq((r.status, r.json()['settings'].get('api_token')), (200, ''),
               'an empty value clears it (and shows as empty)')
        tap.eq(a.request('GET', '/v1/good/hello').json()['api_token_length'], 0, 'cleared')
        r = a.request('PUT', path, headers=A,
                      body={'greeting': 'yo', 'level': 4, 'api_token': '********'})
        tap.eq(a.request('GET', '/v1/good/hello').json()['api_token_length'], 0,
               'the mask with nothing stored leaves the secret unset')

        r = a.request('POST', '/v1/good/emit', body={'from': 'a'})
        tap.eq(r.status, 202, 'event emitted on A')
        tap.ok(wait_for(lambda: (b.request('GET', '/v1/good/hello').json().get('last_event')
                                 or {}).get('data') == {'from': 'a'}),
               'a bus event emitted on A reaches subscribers on B')
        tap.ok(wait_for(lambda: (a.request('GET', '/v1/good/hello').json().get('last_event')
                                 or {}).get('data') == {'from': 'a'}),
               'and on A itself')

        pg.psql("UPDATE sp_tokens SET revoked_at = now() WHERE prefix = '%s'" % member[:12])
        tap.eq(a.request('GET', '/v1/good/admin', headers=M).status, 401,
               'a revoked token answers 401 at once')
        tap.eq(b.request('GET', '/v1/good/admin', headers=M).status, 401,
               'on every instance')
        pg.psql("UPDATE sp_tokens SET expires_at = now() - interval '1 second' "
                "WHERE prefix = '%s'" % admin[:12])
        tap.eq(a.request('GET', path, headers=A).status, 401, 'an expired token answers 401')
        a.stop()
        b.stop()

    admin2 = cli('token', 'create', '--email', 'admin@example.org', '--database', url,
                 '--expires-in', '3600').stdout.strip()
    with Server(database=url, args=['--workers', '1'], env=ENV) as a:
        tap.eq(a.request('GET', '/v1/good/hello').json()['greeting'], 'yo',
               'stored settings survive a restart')
        r = a.request('GET', '/v1/plugins/good/settings',
                      headers={'Authorization': 'Bearer ' + admin2})
        tap.eq(r.status, 200, 'a token with an expiry works before it')

tap.done()
