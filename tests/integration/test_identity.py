"""Identity and core data over HTTP: login (argon2id) with throttling, /v1/me, API
tokens, organisations (CRUD, filters, cursor pagination stable under inserts), topic
profiles, members, the topic taxonomy (tree, edit, delete-in-use 409, merge), bus
events, and bad input answered with problem+json that changes nothing."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from sptest import PgCluster, Server, Tap, wait_for  # noqa: E402

FIXTURES = os.environ.get('SP_TEST_FIXTUREDIR', '')
BIN = os.environ.get('SPEARHEAD_BIN', './spearhead')
ENV = {'SPEARHEAD_PLUGIN_PATH': FIXTURES, 'SPEARHEAD_PLUGIN_DIR': '/nonexistent'}
tap = Tap()
CONFIG = ("[server]\ntrusted_proxies = 127.0.0.1, ::1\n"  # the tests play the load balancer
          "[auth]\nlogin_max_failures = 3\nlogin_window_s = 60\n")


def cli(*args, stdin=None):
    return subprocess.run([BIN] + list(args), input=stdin, capture_output=True, text=True,
                          env=dict(os.environ, **ENV), timeout=120)


def auth(token):
    return {'Authorization': 'Bearer ' + token}


with tap.guard('identity'), PgCluster() as pg:
    url = pg.url()
    out = cli('user', 'add', '--email', 'staff@cluster.example', '--admin', '--password-stdin',
              '--database', url, stdin='staff-password-1\n')
    tap.eq(out.returncode, 0, 'admin created from the command line')
    with Server(database=url, args=['--workers', '1'], env=ENV, config_text=CONFIG) as srv:
        R = srv.request
        # ---- login ----
        r = R('POST', '/v1/auth/login', body={'email': 'STAFF@cluster.example',
                                              'password': 'staff-password-1'})
        tap.eq(r.status, 200, 'login with the right password (e-mail case-insensitive)')
        body = r.json()
        tap.ok(set(body) == {'token', 'expires_at', 'user'}, 'login answers token, expires_at, user')
        tap.ok(body['token'].startswith('sph_'), 'session token has the sph_ prefix')
        tap.ok('password_hash' not in body['user'], 'no password hash in the answer')
        admin = body['token']
        A = auth(admin)
        r = R('GET', '/v1/me', headers=A)
        tap.eq(r.status, 200, 'GET /v1/me')
        tap.eq(r.json()['roles'], ['admin'], 'roles say admin')
        for bad in ({'email': 'staff@cluster.example'}, {'email': 1, 'password': 'x'},
                    {'email': 'a@b.c', 'password': 'x', 'role': 'admin'}):
            r = R('POST', '/v1/auth/login', body=bad)
            tap.eq(r.status, 422, 'bad login body %s → 422' % list(bad))
        statuses = [R('POST', '/v1/auth/login', body={'email': 'staff@cluster.example',
                                                      'password': 'wrong'}).status
                    for _ in range(4)]
        tap.eq(statuses, [401, 401, 401, 429], 'three failures, then 429')
        r = R('POST', '/v1/auth/login', body={'email': 'staff@cluster.example',
                                              'password': 'staff-password-1'})
        tap.eq(r.status, 429, 'even the right password waits while throttled')
        tap.ok(int(r.headers.get('Retry-After', '0')) > 0, '429 carries Retry-After')
        pg.psql("DELETE FROM sp_login_failures")
        # Behind a trusted proxy the client is the forwarded address: one client's
        # failures (on different accounts) do not lock the others out.
        def login_from(addr, i):
            return R('POST', '/v1/auth/login', headers={'X-Forwarded-For': '6.6.6.6, ' + addr},
                     body={'email': 'guess%d@x.example' % i, 'password': 'x'}).status
        tap.eq([login_from('198.51.100.1', i) for i in range(4)], [401, 401, 401, 429],
               'per-address throttling counts the forwarded client address')
        tap.eq(login_from('198.51.100.2', 9), 401, 'another client behind the same proxy is not throttled')
        tap.ok(wait_for(lambda: 'peer=198.51.100.2' in srv.log_text()),
               'the access log names the forwarded client')
        tap.ok('peer=6.6.6.6' not in srv.log_text(),
               'not the address the client wrote itself further left')
        pg.psql("DELETE FROM sp_login_failures")
        r = R('POST', '/v1/auth/login', body={'email': 'nobody@x.example', 'password': 'x'})
        tap.eq(r.status, 401, 'unknown e-mail → 401, same answer as a wrong password')

        # ---- tokens ----
        r = R('POST', '/v1/tokens', headers=A, body={'name': 'ci', 'expires_in': 3600})
        tap.eq(r.status, 201, 'POST /v1/tokens')
        tok = r.json()
        tap.ok(set(tok) >= {'id', 'token', 'name', 'expires_at'}, 'token answer fields')
        r = R('GET', '/v1/tokens', headers=A)
        listed = r.json()['items']
        tap.ok(any(t['id'] == tok['id'] for t in listed) and
               all('token' not in t and 'digest' not in t for t in listed),
               'GET /v1/tokens lists prefixes only')
        tap.eq(R('GET', '/v1/me', headers=auth(tok['token'])).status, 200, 'the API token works')
        tap.eq(R('DELETE', '/v1/tokens/' + tok['id'], headers=A).status, 204, 'revoke it')
        tap.eq(R('GET', '/v1/me', headers=auth(tok['token'])).status, 401, 'revoked → 401')
        tap.eq(R('DELETE', '/v1/tokens/' + tok['id'], headers=A).status, 404, 'revoking twice → 404')
        tap.eq(R('POST', '/v1/tokens', headers=A, body={'name': 'x', 'expires_in': 5}).status, 422,
               'expires_in below a minute is refused')

        # ---- topics ----
        def topic(slug, label, parent=None, synonyms=()):
            body = {'slug': slug, 'label': label, 'synonyms': list(synonyms)}
            if parent:
                body['parent'] = parent
            return R('POST', '/v1/topics', headers=A, body=body)
        r = topic('digital-medicine', 'Digital medicine')
        tap.eq(r.status, 201, 'create a theme')
        tap.ok(set(r.json()) == {'id', 'slug', 'label', 'parent', 'synonyms'}, 'topic fields')
        topic('ai-imaging', 'AI for medical imaging', 'digital-medicine', ['radiology ai'])
        topic('telemonitoring', 'Remote monitoring', 'digital-medicine')
        topic('personalised-medicine', 'Personalised medicine')
        topic('genomics', 'Genomics', 'personalised-medicine')
        topic('omics', 'Omics', 'personalised-medicine')
        tap.eq(topic('genomics', 'Again').status, 409, 'duplicate slug → 409')
        tap.eq(topic('Bad Slug', 'x').status, 422, 'bad slug → 422')
        tap.eq(topic('orphan', 'x', 'no-such-parent').status, 422, 'unknown parent → 422')
        r = R('GET', '/v1/topics', headers=A)
        tree = r.json()['items']
        tap.eq(sorted(t['slug'] for t in tree), ['digital-medicine', 'personalised-medicine'],
               'the tree has the two themes as roots')
        dm = [t for t in tree if t['slug'] == 'digital-medicine'][0]
        tap.eq(sorted(c['slug'] for c in dm['children']), ['ai-imaging', 'telemonitoring'],
               'with their sub-topics')
        r = R('PATCH', '/v1/topics/digital-medicine', headers=A, body={'parent': 'ai-imaging'})
        tap.eq(r.status, 422, 'a parent below the topic (cycle) is refused')
        r = R('PATCH', '/v1/topics/omics', headers=A, body={'label': 'Multi-omics'})
        tap.eq((r.status, r.json().get('label')), (200, 'Multi-omics'), 'edit a label')

        # ---- organisations ----
        def org(name, kind='sme', country='FR', **kw):
            body = dict(name=name, kind=kind, country=country, **kw)
            return R('POST', '/v1/organizations', headers=A, body=body)
        r = org('Alpha Diagnostics', region='Occitanie', website='https://alpha.example',
                description='Imaging software')
        tap.eq(r.status, 201, 'create an organisation')
        alpha = r.json()
        tap.eq(sorted(alpha), sorted(['id', 'name', 'kind', 'country', 'region', 'website',
                                      'description', 'created_at', 'updated_at']),
               'organisation fields are exactly the documented ones')
        tap.ok(r.headers.get('Location', '').endswith(alpha['id']), 'Location header')
        beta = org('Beta Hospital', kind='hospital').json()
        gamma = org('Gamma University', kind='university', country='BE').json()
        for bad, field in (({'name': '', 'kind': 'sme'}, 'name'),
                           ({'name': 'x' * 201, 'kind': 'sme'}, 'name'),
                           ({'name': 'X', 'kind': 'bank'}, 'kind'),
                           ({'name': 'X', 'kind': 'sme', 'country': 'France'}, 'country'),
                           ({'name': 'X', 'kind': 'sme', 'website': 'ftp://x'}, 'website'),
                           ({'name': 5, 'kind': 'sme'}, 'name'),
                           ({'name': 'X', 'kind': 'sme', 'id': 'mine'}, 'id')):
            r = R('POST', '/v1/organizations', headers=A, body=bad)
            tap.ok(r.status == 422 and field in r.json().get('errors', {}),
                   'bad organisation (%s) → 422 naming the field' % field)
        n = len(R('GET', '/v1/organizations?limit=100', headers=A).json()['items'])
        tap.eq(n, 3, 'bad input created nothing')

        r = R('PUT', '/v1/organizations/%s/topics' % alpha['id'], headers=A,
              body={'offers': [{'topic': 'ai-imaging', 'level': 3}],
                    'seeks': [{'topic': 'genomics', 'level': 2}]})
        tap.eq(r.status, 200, 'PUT topic profile')
        tap.eq(r.json(), {'offers': [{'topic': 'ai-imaging', 'level': 3}],
                          'seeks': [{'topic': 'genomics', 'level': 2}]}, 'profile echoed')
        r = R('PUT', '/v1/organizations/%s/topics' % alpha['id'], headers=A,
              body={'offers': [{'topic': 'quantum-healing', 'level': 1},
                               {'topic': 'ai-imaging', 'level': 1}], 'seeks': []})
        tap.ok(r.status == 422 and 'quantum-healing' in r.json()['errors'].get('topics', ''),
               'unknown topics → 422 naming them')
        r = R('GET', '/v1/organizations/%s/topics' % alpha['id'], headers=A)
        tap.eq(r.json()['offers'], [{'topic': 'ai-imaging', 'level': 3}],
               'and the profile is unchanged')
        r = R('PUT', '/v1/organizations/%s/topics' % beta['id'], headers=A,
              body={'offers': [{'topic': 'genomics', 'level': 2}],
                    'seeks': [{'topic': 'ai-imaging', 'level': 3}]})
        tap.eq(r.status, 200, 'second profile')
        tap.eq(R('PUT', '/v1/organizations/%s/topics' % beta['id'], headers=A,
                 body={'offers': [{'topic': 'genomics', 'level': 4}], 'seeks': []}).status, 422,
               'level outside 1–3 → 422')

        def names(q):
            return [o['name'] for o in R('GET', '/v1/organizations' + q, headers=A).json()['items']]
        tap.eq(names('?kind=hospital'), ['Beta Hospital'], 'filter by kind')
        tap.eq(names('?country=BE'), ['Gamma University'], 'filter by country')
        tap.eq(names('?topic=genomics'), ['Alpha Diagnostics', 'Beta Hospital'], 'filter by topic')
        tap.eq(names('?topic=personalised-medicine'), ['Alpha Diagnostics', 'Beta Hospital'],
               'a theme includes its sub-topics')
        tap.eq(names('?q=imaging'), ['Alpha Diagnostics'], 'text search in the description')
        tap.eq(names('?q=%25'), [], 'wildcards in q are literal')
        tap.eq(R('GET', '/v1/organizations?kind=bank', headers=A).status, 400, 'bad kind filter → 400')
        tap.eq(R('GET', '/v1/organizations?limit=0', headers=A).status, 400, 'limit 0 → 400')
        tap.eq(R('GET', '/v1/organizations?cursor=garbage', headers=A).status, 400,
               'a forged cursor → 400')

        # pagination, stable under inserts
        for i in range(7):
            org('Page Org %02d' % (i * 2))
        seen, cursor, pages = [], None, 0
        while True:
            q = '?limit=3' + ('&cursor=' + cursor if cursor else '')
            page = R('GET', '/v1/organizations' + q, headers=A).json()
            seen += [o['name'] for o in page['items']]
            pages += 1
            if pages == 2:  # insert before and after the current position meanwhile
                org('Aaa Early')
                org('Page Org 05')
                org('Zzz Late')
            cursor = page['next_cursor']
            if not cursor:
                break
        tap.eq(len(seen), len(set(seen)), 'no organisation appears twice while paging')
        before = ['Alpha Diagnostics', 'Beta Hospital', 'Gamma University'] + \
            ['Page Org %02d' % (i * 2) for i in range(7)]
        tap.ok(all(n in seen for n in before), 'none of the existing ones is skipped')
        tap.ok('Zzz Late' in seen and 'Aaa Early' not in seen,
               'rows inserted ahead appear, rows behind do not')

        # A topic held by many organisations is listed by walking the name index, a rare
        # one by collecting its holders: both give the SQL order, page after page.
        pg.psql("""
INSERT INTO sp_organizations (name, kind, country)
SELECT format('Bulk %s', lpad(g::text, 4, '0')), CASE WHEN g % 3 = 0 THEN 'hospital'
       ELSE 'sme' END, 'NL' FROM generate_series(1, 2300) g;
INSERT INTO sp_org_topics (org_id, relation, topic_id, level)
SELECT o.id, 'offers', t.id, 1 FROM sp_organizations o, sp_topics t
WHERE o.name LIKE 'Bulk %' AND t.slug = 'genomics';
ANALYZE;
""")

        def sql_names(where):
            return pg.psql("SELECT name FROM sp_organizations o WHERE %s ORDER BY name, id"
                           % where).split('\n')[:-1]

        def all_pages(q, limit):
            got, cursor = [], None
            for _ in range(200):
                page = R('GET', '/v1/organizations?limit=%d%s%s' % (
                    limit, q, '&cursor=' + cursor if cursor else ''), headers=A).json()
                got += [o['name'] for o in page['items']]
                cursor = page['next_cursor']
                if not cursor:
                    break
            return got
        held = ("EXISTS (SELECT 1 FROM sp_org_topics ot JOIN sp_topics t ON t.id = ot.topic_id "
                "WHERE ot.org_id = o.id AND t.slug = '%s')")
        tap.eq(all_pages('&topic=genomics', 100), sql_names(held % 'genomics'),
               'a topic of 2,300 organisations: every page, in order')
        tap.eq(all_pages('&topic=personalised-medicine&kind=hospital', 100),
               sql_names("EXISTS (WITH RECURSIVE d AS (SELECT id FROM sp_topics WHERE slug = "
                         "'personalised-medicine' UNION ALL SELECT t.id FROM sp_topics t "
                         "JOIN d ON t.parent_id = d.id) SELECT 1 FROM sp_org_topics ot JOIN d "
                         "ON d.id = ot.topic_id WHERE ot.org_id = o.id) AND kind = 'hospital'"),
               'its theme with a kind filter: the same')
        tap.eq(all_pages('&topic=ai-imaging', 1), sql_names(held % 'ai-imaging'),
               'a rare topic, one per page: every holder, in order')
        tap.eq(all_pages('&topic=no-such-topic', 10), [], 'an unknown topic: nobody')
        pg.psql("DELETE FROM sp_organizations WHERE name LIKE 'Bulk %'")

        r = R('PATCH', '/v1/organizations/' + alpha['id'], headers=A,
              body={'description': None, 'region': 'Bretagne'})
        tap.ok(r.status == 200 and r.json()['description'] is None and
               r.json()['region'] == 'Bretagne', 'PATCH sets and clears fields')
        tap.eq(R('GET', '/v1/organizations/00000000-0000-0000-0000-000000000000',
                 headers=A).status, 404, 'unknown organisation → 404')
        tap.eq(R('GET', '/v1/organizations/not-an-id', headers=A).status, 404, 'malformed id → 404')

        # ---- members ----
        r = R('POST', '/v1/organizations/%s/members' % alpha['id'], headers=A,
              body={'email': 'Manager@alpha.example', 'display_name': 'Ann', 'role': 'manager'})
        tap.eq(r.status, 201, 'add a manager by e-mail')
        mgr = r.json()
        tap.ok(len(mgr.get('initial_password', '')) >= 16, 'with a generated initial password')
        r = R('POST', '/v1/auth/login', body={'email': 'manager@alpha.example',
                                              'password': mgr['initial_password']})
        tap.eq(r.status, 200, 'the new member can log in')
        M = auth(r.json()['token'])
        tap.eq(R('POST', '/v1/organizations/%s/members' % beta['id'], headers=A,
                 body={'email': 'manager@alpha.example'}).status, 409,
               'someone in another organisation cannot be added')
        tap.eq(R('POST', '/v1/organizations/%s/members' % alpha['id'], headers=A,
                 body={'email': 'manager@alpha.example'}).status, 409, 'nor added twice')
        r = R('POST', '/v1/organizations/%s/members' % alpha['id'], headers=M,
              body={'email': 'dev@alpha.example'})
        tap.eq(r.status, 201, 'a manager adds a member')
        dev = r.json()
        r = R('POST', '/v1/auth/login', body={'email': 'dev@alpha.example',
                                              'password': dev['initial_password']})
        D = auth(r.json()['token'])
        r = R('GET', '/v1/me', headers=D)
        tap.eq((r.json()['organization'] or {}).get('id'), alpha['id'], '/v1/me shows the organisation')
        tap.eq(r.json()['roles'], ['member'], 'and the member role')
        tap.eq(R('PATCH', '/v1/organizations/' + alpha['id'], headers=D,
                 body={'region': 'x'}).status, 403, 'a member cannot edit the organisation')
        r = R('PATCH', '/v1/organizations/' + alpha['id'], headers=M, body={'region': 'Normandie'})
        tap.eq(r.status, 200, 'its manager can')
        r = R('PATCH', '/v1/organizations/' + alpha['id'], headers=M, body={'kind': 'large_enterprise'})
        tap.ok(r.status == 422 and 'kind' in r.json()['errors'], 'but not its kind (422)')
        tap.eq(R('GET', '/v1/organizations/' + alpha['id'], headers=A).json()['kind'], 'sme',
               'kind unchanged')
        tap.eq(R('PATCH', '/v1/organizations/' + beta['id'], headers=M, body={'region': 'x'}).status,
               403, 'a manager cannot edit another organisation')
        r = R('GET', '/v1/organizations/%s/members' % alpha['id'], headers=D)
        tap.eq(sorted(m['email'] for m in r.json()['items']),
               ['Manager@alpha.example', 'dev@alpha.example'], 'members see their colleagues')
        tap.eq(R('GET', '/v1/organizations/%s/members' % beta['id'], headers=D).status, 403,
               'but not another organisation\'s people')
        tap.eq(R('PATCH', '/v1/organizations/%s/members/%s' % (alpha['id'], dev['id']),
                 headers=D, body={'role': 'manager'}).status, 403, 'a member cannot promote')
        r = R('PATCH', '/v1/organizations/%s/members/%s' % (alpha['id'], dev['id']), headers=M,
              body={'role': 'manager'})
        tap.eq((r.status, r.json().get('role')), (200, 'manager'), 'a manager promotes')
        tap.eq(R('DELETE', '/v1/organizations/%s/members/%s' % (alpha['id'], dev['id']),
                 headers=M).status, 204, 'a manager removes a member')
        tap.eq(R('GET', '/v1/me', headers=D).json()['organization'], None,
               'the removed person has no organisation any more')
        tap.eq(R('DELETE', '/v1/organizations/' + beta['id'], headers=M).status, 403,
               'only admins delete organisations')

        # ---- topics in use, merge ----
        tap.eq(R('DELETE', '/v1/topics/genomics', headers=A).status, 409, 'a topic in use → 409')
        tap.eq(R('DELETE', '/v1/topics/telemonitoring', headers=A).status, 204, 'an unused one goes')
        r = R('POST', '/v1/topics/genomics/merge', headers=A, body={'into': 'omics'})
        tap.eq(r.status, 200, 'merge genomics into omics')
        tap.ok('genomics' in r.json().get('synonyms', []), 'the old slug becomes a synonym')
        tap.eq(R('GET', '/v1/topics/genomics', headers=A).status, 404, 'the merged topic is gone')
        r = R('GET', '/v1/organizations/%s/topics' % alpha['id'], headers=A)
        tap.eq(r.json()['seeks'], [{'topic': 'omics', 'level': 2}], 'profiles moved to the target')
        tap.eq(R('POST', '/v1/topics/omics/merge', headers=A, body={'into': 'omics'}).status, 422,
               'merging into itself → 422')

        # ---- bus events reach plugins ----
        seen_events = R('GET', '/v1/good/seen').json()
        for t in ('org.created', 'org.updated', 'org.topics_changed', 'user.created',
                  'topic.changed'):
            tap.ok(t in seen_events, 'bus event %s was emitted' % t)
        tap.eq(R('DELETE', '/v1/organizations/' + gamma['id'], headers=A).status, 204,
               'an admin deletes an organisation')
        tap.ok(wait_for(lambda: 'org.deleted' in R('GET', '/v1/good/seen').json()),
               'org.deleted emitted')
        r = R('POST', '/v1/auth/logout', headers=M)
        tap.eq(r.status, 204, 'logout')
        tap.eq(R('GET', '/v1/me', headers=M).status, 401, 'the session token is revoked')
        tap.eq(srv.stop(), 0, 'clean exit')

tap.done()
