#!/usr/bin/env python3
"""The matchmaking plugin against real servers and PostgreSQL: ranked, explained matches
whose reasons sum exactly to their scores (checked on every result returned), the
scoring semantics on a controlled taxonomy (partial credit, kinds, reciprocity), filters,
history, settings, a plugin scorer built here out of tree, bad input answered with
problem+json that changes nothing, index updates from instance A seen by instance B
within a second, introductions (pending, 409, accept/decline, contacts only after
acceptance, quota, bus events), consortium suggestions, and the plugin built out of tree
from its sources against the public header alone."""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from sptest import PgCluster, Server, Tap  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.realpath(os.environ.get('SP_SRCDIR') or os.path.join(HERE, '..', '..'))
BIN = os.environ.get('SPEARHEAD_BIN', './spearhead')
PLUGINDIR = os.environ.get('SP_TEST_PLUGINDIR', '')
FIXTURES = os.environ.get('SP_TEST_FIXTUREDIR', '')
TMP = tempfile.mkdtemp(prefix='sp-mm-', dir='/tmp')
SCORERDIR = os.path.join(TMP, 'scorer')
tap = Tap()

DEMO = os.path.join(SRC, 'contrib', 'demo')
with open(os.path.join(DEMO, 'organizations.json'), encoding='utf-8') as f:
    DEMO_ORGS = {o['name']: o for o in json.load(f)}
MEDISIGHT = DEMO_ORGS['Medisight AI']['id']
WESTERHAVEN = DEMO_ORGS['Westerhaven University Medical Centre']['id']
PULSEWAVE = DEMO_ORGS['Pulsewave Health']['id']

# A plugin scorer, built here like an integrator would: it re-uses the built-in scorer
# through scorer_find and adds a bonus for French organisations. Its reasons are scaled
# by 0.8, so they are not multiples of 2^-24: the plugin must normalise them.
SCORER_C = r'''
#include <spearhead/plugin.h>
#include <string.h>
static const struct sp_api *A;
static double score(void *state, const struct sp_match_profile *req,
                    const struct sp_match_topic *sought, size_t ns,
                    const struct sp_match_profile *cand, json_t *reasons)
{
	const struct sp_scorer_ops *b = A->scorer_find("builtin");
	json_t *inner = json_array();
	double s = b ? b->score(b->state, req, sought, ns, cand, inner) : 0;
	size_t i;
	json_t *r;
	json_array_foreach(inner, i, r) {
		double c = json_number_value(json_object_get(r, "contribution"));
		json_object_set_new(r, "contribution", json_real(0.8 * c));
		json_array_append(reasons, r);
	}
	json_decref(inner);
	double bonus = cand->country && !strcmp(cand->country, "FR") ? 0.2 : 0;
	if (bonus > 0)
		json_array_append_new(reasons, json_pack("{s:n, s:s, s:f}", "topic", "relation",
		                                         "country", "contribution", bonus));
	return 0.8 * s + bonus;
}
static int init(const struct sp_api *api, struct sp_plugin *plugin, const json_t *settings,
                void **state)
{
	A = api;
	struct sp_scorer_ops ops = { sizeof(ops), "test: built-in x 0.8 + 0.2 if French",
	                             score, NULL };
	return api->scorer_register(plugin, "fr_first", &ops);
}
SP_PLUGIN_DEFINE(mmtest_scorer) = { SP_PLUGIN_DESC_HEADER, .name = "mmtest_scorer",
	.version = "1.0.0", .description = "test scorer", .init = init };
'''


def cli(*args, stdin=None, env=None):
    return subprocess.run([BIN] + list(args), input=stdin, capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=120)


def auth(token):
    return {'Authorization': 'Bearer ' + token}


def login(srv, email, password):
    r = srv.request('POST', '/v1/auth/login', body={'email': email, 'password': password})
    assert r.status == 200, r.text
    return auth(r.json()['token'])


CHECKED = {'results': 0, 'requests': 0}


def check_results(body, desc, requester=None, excluded=()):
    """Every result: score in [0, 1], reasons summing exactly (in order, reversed and
    with fsum) to the score, never the requester or an excluded organisation; ranked by
    score then id."""
    problems = []
    results = body.get('results', [])
    for i, r in enumerate(results):
        score = r['score']
        oid = r['organization']['id']
        if not 0 <= score <= 1:
            problems.append('score %r out of [0, 1]' % score)
        if 'reasons' in r:
            cs = [x['contribution'] for x in r['reasons']]
            if sum(cs) != score or sum(reversed(cs)) != score or math.fsum(cs) != score:
                problems.append('%s: reasons sum to %r, score %r' % (oid, sum(cs), score))
            for x in r['reasons']:
                if not (x.get('contribution', 0) > 0 and 'relation' in x and 'topic' in x):
                    problems.append('bad reason %r' % x)
        if oid == requester or oid in excluded:
            problems.append('%s must not appear' % oid)
        if i:
            prev = results[i - 1]
            if not (prev['score'] > score or
                    (prev['score'] == score and prev['organization']['id'] < oid)):
                problems.append('results %d and %d are out of order' % (i - 1, i))
    CHECKED['results'] += len(results)
    CHECKED['requests'] += 1
    if not tap.ok(not problems, desc):
        tap.diag('\n'.join(problems[:10]))
    return results


SUMS = {'answers': 0, 'results': 0, 'problems': []}


def checked(srv):
    """srv.request, checking the exact sums of every match answer it sees (also GET
    /v1/matches/{id} and replays)."""
    def request(method, path, **kw):
        r = srv.request(method, path, **kw)
        if r.status == 200 and (path == '/v1/matches' and method == 'POST' or
                                path.startswith('/v1/matches/')):
            SUMS['answers'] += 1
            for x in r.json().get('results', []):
                SUMS['results'] += 1
                cs = [y['contribution'] for y in x.get('reasons', [])]
                if 'reasons' in x and (sum(cs) != x['score'] or
                                       math.fsum(cs) != x['score']):
                    SUMS['problems'].append((path, x['organization']['id'], x['score'], cs))
                if not 0 <= x['score'] <= 1:
                    SUMS['problems'].append((path, x['organization']['id'], x['score']))
        return r
    return request


def ids(body):
    return [r['organization']['id'] for r in body['results']]


def names(body):
    return [r['organization']['name'] for r in body['results']]


def wait_for(pred, timeout=5.0, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


def build_scorer():
    os.makedirs(SCORERDIR)
    src = os.path.join(TMP, 'mmtest_scorer.c')
    with open(src, 'w', encoding='utf-8') as f:
        f.write(SCORER_C)
    return subprocess.run(['cc', '-std=c11', '-Wall', '-Wno-unused-parameter', '-fPIC',
                           '-shared', '-I', os.path.join(SRC, 'core', 'include'), '-o',
                           os.path.join(SCORERDIR, 'mmtest_scorer.so'), src, '-ljansson'],
                          capture_output=True, text=True, timeout=120)


def out_of_tree_build():
    """The plugin's sources compiled against the public header alone (no core/ on the
    include path), with its SQL embedded by sql2c, linked with -z defs."""
    d = os.path.join(TMP, 'oot')
    os.makedirs(d)
    sqls = sorted(os.path.join(SRC, 'plugins', 'matchmaking', 'sql', n)
                  for n in os.listdir(os.path.join(SRC, 'plugins', 'matchmaking', 'sql')))
    with open(os.path.join(d, 'sql.c'), 'w', encoding='utf-8') as f:
        p = subprocess.run(['sh', os.path.join(SRC, 'build-aux', 'sql2c'), 'mm_migrations'] +
                           sqls, stdout=f, stderr=subprocess.PIPE, text=True)
    if p.returncode:
        return p
    srcs = [os.path.join(SRC, 'plugins', 'matchmaking', n)
            for n in sorted(os.listdir(os.path.join(SRC, 'plugins', 'matchmaking')))
            if n.endswith('.c')]
    return subprocess.run(['cc', '-std=c11', '-O0', '-Wall', '-Wextra', '-Werror',
                           '-Wno-unused-parameter', '-fPIC', '-shared', '-Wl,-z,defs',
                           '-I', os.path.join(SRC, 'core', 'include'), '-o',
                           os.path.join(d, 'matchmaking.so')] + srcs +
                          [os.path.join(d, 'sql.c'), '-ljansson', '-lm'],
                          capture_output=True, text=True, timeout=300, cwd=d)


ENV = {'SPEARHEAD_PLUGIN_DIR': PLUGINDIR, 'SPEARHEAD_PLUGINS': 'matchmaking',
       'SPEARHEAD_PLUGIN_PATH': FIXTURES + ':' + SCORERDIR}

try:
    with tap.guard('build the test scorer plugin'):
        p = build_scorer()
        tap.ok(p.returncode == 0, 'a plugin scorer builds out of tree') or tap.diag(p.stderr)

    with tap.guard('matchmaking'), PgCluster() as pg:
        url = pg.url()

        def count(table):
            return int(pg.psql('SELECT count(*) FROM %s' % table).strip())

        out = cli('user', 'add', '--email', 'staff@cluster.example', '--admin',
                  '--password-stdin', '--database', url, stdin='staff-password-1\n', env=ENV)
        tap.eq(out.returncode, 0, 'admin created')
        with Server(database=url, args=['--workers', '1', '--demo'], env=ENV) as a, \
                Server(database=url, args=['--workers', '1'], env=ENV) as b:
            RA, RB = checked(a), checked(b)
            A = login(a, 'staff@cluster.example', 'staff-password-1')
            tom = login(a, 'tom.dewit@demo.spearhead.example', 'demo-tom-password')
            sara = login(a, 'sara.visser@demo.spearhead.example', 'demo-sara-password')
            eva = login(a, 'eva.jansen@demo.spearhead.example', 'demo-eva-password')
            lina = login(a, 'lina.bakker@demo.spearhead.example', 'demo-lina-password')
            plugins = {p['name']: p for p in RA('GET', '/v1/plugins').json()['items']}
            tap.eq(plugins.get('matchmaking', {}).get('status'), 'running',
                   'the matchmaking plugin runs')
            tap.eq(plugins.get('mmtest_scorer', {}).get('status'), 'running',
                   'and the test scorer plugin')
            # Instance B started before the demo data arrived on A? It read the index at
            # its own start; wait until both indexes have the demo organisations.
            for srv, who in ((a, 'A'), (b, 'B')):
                st = wait_for(lambda srv=srv: (lambda j: j if j.get('ready') and
                                               j['organizations'] >= 77 else None)(
                    srv.request('GET', '/v1/matchmaking/index', headers=A).json()), 10)
                tap.ok(st, 'instance %s has the demo organisations in its index' % who)
            tap.eq(RA('GET', '/v1/matchmaking/index', headers=tom).status, 403,
                   'the index state is for admins')

            # ---- the demo: a member's match request, defaults from the profile ----
            r = RA('POST', '/v1/matches', headers=tom, body={})
            tap.eq(r.status, 200, 'POST /v1/matches {} by a manager of Medisight AI')
            m1 = r.json()
            tap.ok({'id', 'results', 'took_ms', 'org', 'topics'} <= set(m1),
                   'answer has id, org, topics, took_ms, results')
            tap.eq(m1['org'], MEDISIGHT, 'for the caller\'s organisation')
            tap.eq([t['topic'] for t in m1['topics']],
                   [t['topic'] for t in sorted(DEMO_ORGS['Medisight AI']['seeks'],
                                               key=lambda t: t['topic'])],
                   'topics default to what the profile seeks')
            res = check_results(m1, 'demo match: every result well formed, reasons sum '
                                'exactly, requester absent, ranked', requester=MEDISIGHT)
            tap.eq(len(res), 10, 'ten results by default')
            tap.ok(res[0]['organization'].keys() >= {'id', 'name', 'kind', 'country',
                                                     'region'}, 'organisation fields')
            rel = {x['relation'] for r0 in res for x in r0['reasons']}
            tap.ok({'offers', 'kind'} <= rel, 'reasons name offers and kind relations')
            tap.ok(WESTERHAVEN in ids(m1), 'a university hospital is among the partners of '
                   'an AI SME seeking clinical validation')
            r2 = RA('POST', '/v1/matches', headers=sara, body={}).json()
            tap.eq([(x['organization']['id'], x['score'], x['reasons']) for x in r2['results']],
                   [(x['organization']['id'], x['score'], x['reasons']) for x in m1['results']],
                   'the same request gives the same answer (deterministic)')
            check_results(r2, 'repeat: results well formed')
            rb = RB('POST', '/v1/matches', headers=tom, body={}).json()
            tap.eq(ids(rb), ids(m1), 'instance B ranks the same')

            # ---- filters ----
            r = RA('POST', '/v1/matches', headers=tom, body={'kinds': ['hospital']}).json()
            check_results(r, 'kinds filter: well formed')
            tap.ok(r['results'] and all(x['organization']['kind'] == 'hospital'
                                        for x in r['results']), 'kinds filter keeps hospitals')
            r = RA('POST', '/v1/matches', headers=tom, body={'countries': ['be']}).json()
            check_results(r, 'countries filter: well formed')
            tap.ok(r['results'] and all(x['organization']['country'] == 'BE'
                                        for x in r['results']), 'countries filter (BE)')
            region = res[0]['organization']['region']
            r = RA('POST', '/v1/matches', headers=tom, body={'regions': [region.upper()]}).json()
            tap.ok(r['results'] and all(x['organization']['region'] == region
                                        for x in r['results']),
                   'regions filter (case-insensitive)')
            top2 = ids(m1)[:2]
            r = RA('POST', '/v1/matches', headers=tom, body={'exclude': top2}).json()
            check_results(r, 'exclude: well formed', excluded=top2)
            tap.eq(ids(r)[:8], ids(m1)[2:10], 'excluding the top two shifts the ranking')
            r = RA('POST', '/v1/matches', headers=tom, body={'limit': 3, 'explain': False}).json()
            tap.ok(len(r['results']) == 3 and all('reasons' not in x for x in r['results']),
                   'limit 3 and explain false: three results without reasons')
            tap.eq([x['score'] for x in r['results']], [x['score'] for x in res[:3]],
                   'with the same scores')
            r = RA('POST', '/v1/matches', headers=tom,
                   body={'topics': ['medical-imaging-ai', {'topic': 'biobanking',
                                                           'level': 1}]}).json()
            check_results(r, 'explicit topics: well formed', requester=MEDISIGHT)
            tap.eq([t['topic'] for t in r['topics']], ['medical-imaging-ai', 'biobanking'],
                   'explicit topics are used, in order')

            # ---- history ----
            r = RA('GET', '/v1/matches/' + m1['id'], headers=sara)
            tap.eq(r.status, 200, 'GET /v1/matches/{id} by a colleague')
            tap.eq(r.json()['results'], m1['results'], 'the stored results are the answer')
            tap.eq(RA('GET', '/v1/matches/' + m1['id'], headers=lina).status, 404,
                   'another organisation does not see it (404)')
            tap.eq(RA('GET', '/v1/matches/' + m1['id'], headers=A).status, 200, 'admins do')
            tap.eq(RA('GET', '/v1/matches/nope', headers=A).status, 404, 'malformed id → 404')
            r = RA('GET', '/v1/matches?limit=2', headers=tom).json()
            seen, cursor = [], None
            while True:
                q = '/v1/matches?limit=2' + ('&cursor=' + cursor if cursor else '')
                page = RA('GET', q, headers=tom).json()
                seen += [i['id'] for i in page['items']]
                cursor = page['next_cursor']
                if not cursor:
                    break
            tap.ok(m1['id'] in seen and len(seen) == len(set(seen)) and len(seen) >= 9,
                   'GET /v1/matches pages through the organisation\'s history (%d)' % len(seen))
            tap.eq(RA('GET', '/v1/matches?org=' + MEDISIGHT, headers=lina).status, 403,
                   '?org= of another organisation → 403')
            tap.eq(RA('GET', '/v1/matches?org=' + MEDISIGHT, headers=A).status, 200,
                   'admins read any history')
            tap.eq(RA('GET', '/v1/matches?cursor=x1', headers=tom).status, 400, 'bad cursor → 400')

            # ---- Idempotency-Key ----
            k = {'Idempotency-Key': 'match-1'}
            r1 = RA('POST', '/v1/matches', headers=dict(tom, **k), body={'limit': 4})
            n_before = count('matchmaking_matches')
            r2 = RA('POST', '/v1/matches', headers=dict(tom, **k), body={'limit': 4})
            tap.ok(r1.status == 200 and r2.status == 200 and r2.json()['id'] == r1.json()['id']
                   and r2.json()['results'] == r1.json()['results'] and r2.json()['replayed'],
                   'a retried request with its Idempotency-Key gets the stored answer')
            r3 = RA('POST', '/v1/matches', headers=dict(tom, **k), body={'limit': 5})
            tap.eq(r3.status, 422, 'the same key with another body → 422')
            tap.eq(count('matchmaking_matches'), n_before, 'and neither stored anything')

            # ---- bad input: problem+json, nothing stored ----
            n_before = count('matchmaking_matches')
            bad = [
                ({'topics': ['no-such-topic', 'medical-imaging-ai', 'nor-this']}, tom, 422,
                 'topics', 'no-such-topic', 'unknown topic slugs → 422 naming them'),
                ({'limit': 0}, tom, 422, 'limit', None, 'limit 0 → 422'),
                ({'limit': 101}, tom, 422, 'limit', None, 'limit 101 → 422'),
                ({'limit': 'ten'}, tom, 422, 'limit', None, 'limit not an integer → 422'),
                ({'org': PULSEWAVE}, tom, 403, None, None,
                 'acting for another organisation → 403'),
                ({'kinds': ['bank']}, tom, 422, 'kinds', None, 'unknown kind → 422'),
                ({'countries': ['France']}, tom, 422, 'countries', None, 'bad country → 422'),
                ({'exclude': ['x']}, tom, 422, 'exclude', None, 'bad exclude → 422'),
                ({'explain': 'yes'}, tom, 422, 'explain', None, 'explain not a boolean → 422'),
                ({'scorer': 'nope'}, tom, 422, 'scorer', 'nope', 'unknown scorer → 422'),
                ({'colour': 'red'}, tom, 422, 'colour', None, 'unknown field → 422'),
                ({}, A, 422, 'org', None, 'an admin without organisation must name one'),
                ({'org': '00000000-0000-4000-8000-000000000000'}, A, 422, 'org', None,
                 'unknown organisation → 422'),
            ]
            for body, who, status, field, text, desc in bad:
                r = RA('POST', '/v1/matches', headers=who, body=body)
                good = r.status == status and \
                    r.headers.get('Content-Type', '').startswith('application/problem+json')
                if field:
                    errs = r.json().get('errors', {})
                    good = good and field in errs and (text is None or text in errs[field])
                tap.ok(good, desc) or tap.diag(r.text)
            r = RA('POST', '/v1/matches', headers=tom, raw='[1', )
            tap.ok(r.status in (400, 415), 'malformed body → 400/415')
            tap.eq(count('matchmaking_matches'), n_before, 'bad requests stored nothing')

            # ---- a controlled taxonomy: partial credit, kinds, reciprocity ----
            def topic(slug, parent=None):
                body = {'slug': slug, 'label': slug}
                if parent:
                    body['parent'] = parent
                r = RA('POST', '/v1/topics', headers=A, body=body)
                assert r.status == 201, r.text

            for slug, parent in (('zz-theme', None), ('zz-area-a', 'zz-theme'),
                                 ('zz-a1', 'zz-area-a'), ('zz-a2', 'zz-area-a'),
                                 ('zz-area-b', 'zz-theme'), ('zz-b1', 'zz-area-b'),
                                 ('zz-b2', 'zz-area-b')):
                topic(slug, parent)

            def org(name, kind, offers=(), seeks=(), country='FR', srv=a):
                r = srv.request('POST', '/v1/organizations', headers=A,
                                body={'name': name, 'kind': kind, 'country': country,
                                      'region': 'Bretagne'})
                assert r.status == 201, r.text
                oid = r.json()['id']
                r = srv.request('PUT', '/v1/organizations/%s/topics' % oid, headers=A,
                                body={'offers': [{'topic': t, 'level': 3} for t in offers],
                                      'seeks': [{'topic': t, 'level': 3} for t in seeks]})
                assert r.status == 200, r.text
                return oid

            R = org('ZZ Requester', 'sme', offers=['zz-b1'], seeks=['zz-a1'])
            X = org('ZZ Exact', 'sme', offers=['zz-a1'])
            S = org('ZZ Sibling', 'sme', offers=['zz-a2'], country='BE')
            P = org('ZZ Parent', 'sme', offers=['zz-area-a'])
            H = org('ZZ Hospital', 'hospital', offers=['zz-a1'])
            Y = org('ZZ Reciprocal', 'sme', offers=['zz-a1'], seeks=['zz-b1'])
            C = org('ZZ Cousin', 'sme', offers=['zz-b2'])
            E = org('ZZ Empty', 'university')
            r = RA('POST', '/v1/organizations/%s/members' % R, headers=A,
                   body={'email': 'rita@zz.example', 'role': 'manager'})
            rita = login(a, 'rita@zz.example', r.json()['initial_password'])
            r = RA('POST', '/v1/organizations/%s/members' % E, headers=A,
                   body={'email': 'emil@zz.example', 'role': 'member'})
            emil = login(a, 'emil@zz.example', r.json()['initial_password'])

            def zz_match(srv=a, who=None, **body):
                r = checked(srv)('POST', '/v1/matches', headers=who or rita, body=body)
                assert r.status == 200, r.text
                return r.json()

            zm = wait_for(lambda: (lambda j: j if len(j['results']) >= 5 else None)(
                zz_match()), 3)
            tap.ok(zm, 'the new organisations are matched on instance A')
            check_results(zm, 'controlled: well formed', requester=R)
            tap.eq(ids(zm), [Y, H, X, P, S],
                   'reciprocal > hospital (kinds) > exact SME > parent > sibling; cousin '
                   'beyond max distance absent')
            byid = {x['organization']['id']: x for x in zm['results']}
            wt, wk, wr, g = 0.5, 0.25, 0.25, 0.5
            # topic vectors {topic, its parent at gamma}: the parent's cosine with the
            # sought one is gamma / (1 + gamma^2), a sibling's gamma^2 / (1 + gamma^2)
            expect = {Y: wt + wk * 0.3 + wr, H: wt + wk * 1.0, X: wt + wk * 0.3,
                      P: g / (1 + g * g) * (wt + wk * 0.3),
                      S: g * g / (1 + g * g) * (wt + wk * 0.3)}
            tap.ok(all(abs(byid[o]['score'] - v) < 1e-6 for o, v in expect.items()),
                   'scores follow the documented formula (gamma 0.5, weights .5/.25/.25)')
            rs = byid[S]['reasons'][0]
            tap.eq((rs['topic'], rs['matched'], rs['distance']), ('zz-a1', 'zz-a2', 2),
                   'the sibling\'s reason names both topics and the distance')
            ry = [x for x in byid[Y]['reasons'] if x['relation'] == 'seeks']
            tap.eq([(x['topic'], x['matched']) for x in ry], [('zz-b1', 'zz-b1')],
                   'reciprocity reason: the candidate seeks what the requester offers')
            rk = [x for x in byid[H]['reasons'] if x['relation'] == 'kind']
            tap.eq(rk and rk[0]['kinds'], ['sme', 'hospital'], 'kind reason names both kinds')
            r = RA('POST', '/v1/matches', headers=emil, body={})
            tap.ok(r.status == 422 and 'topics' in r.json().get('errors', {}) and
                   'PUT /v1/organizations/' in r.json().get('detail', ''),
                   'empty topics with an empty profile → 422 with a hint')
            r = RA('POST', '/v1/matches', headers=emil, body={'topics': []})
            tap.eq(r.status, 422, 'an empty topics list falls back to the (empty) profile')

            # ---- a scorer from another plugin ----
            r = RA('POST', '/v1/matches', headers=rita, body={'scorer': 'fr_first'})
            tap.eq(r.status, 200, 'scorer fr_first, registered by another plugin')
            fr = r.json()
            check_results(fr, 'plugin scorer: reasons normalised to sum exactly', requester=R)
            tap.eq(fr['scorer'], 'fr_first', 'the answer names the scorer')
            frs = {x['organization']['id']: x['score'] for x in fr['results']}
            tap.ok(all(abs(frs[o] - (0.8 * byid[o]['score'] +
                                     (0.2 if o != S else 0))) < 1e-5 for o in expect),
                   'its scores (0.8 x built-in + 0.2 if French) are used')
            tap.eq(ids(fr)[-1], S, 'and its ranking (the Belgian one last)')
            r = RA('POST', '/v1/matches', headers=rita, body={'scorer': 'builtin'})
            tap.eq(ids(r.json()), ids(zm), 'scorer builtin is the default')

            # ---- settings ----
            r = RA('PUT', '/v1/plugins/matchmaking/settings', headers=A,
                   body={'weight_kinds': 0, 'kind_matrix': '{"sme": {"sme": 1}}'})
            tap.eq(r.status, 200, 'settings changed through the API')
            z2 = zz_match()
            check_results(z2, 'without kinds: well formed', requester=R)
            tap.ok(all(x['relation'] != 'kind' for r0 in z2['results'] for x in r0['reasons'])
                   and ids(z2)[0] == Y and {ids(z2)[1], ids(z2)[2]} == {H, X},
                   'weight_kinds 0: no kind reasons, the hospital no longer ahead of the SME')
            RA('PUT', '/v1/plugins/matchmaking/settings', headers=A,
               body={'kind_matrix': '{"sme": {"sme": 1}}'})
            z3 = zz_match()
            f3 = {x['organization']['id']: [y for y in x['reasons'] if y['relation'] == 'kind']
                  for x in z3['results']}
            tap.ok(f3[X] and f3[X][0]['factor'] == 1.0,
                   'kind_matrix overrides the complementarity table')
            tap.eq(RA('PUT', '/v1/plugins/matchmaking/settings', headers=A,
                      body={'gamma': 2}).status, 422, 'gamma out of bounds → 422')
            RA('PUT', '/v1/plugins/matchmaking/settings', headers=A, body={})
            tap.eq(ids(zz_match()), ids(zm), 'defaults restored')

            # ---- instance A → instance B through NOTIFY ----
            # (the settings restored just above reach B through NOTIFY too: wait for them)
            zb = wait_for(lambda: (lambda j: j if ids(j) == ids(zm) else None)(
                zz_match(srv=b)), 3) or zz_match(srv=b)
            tap.eq(ids(zb), ids(zm), 'instance B has the organisations created on A')
            t0 = time.monotonic()
            r = RA('PUT', '/v1/organizations/%s/topics' % C, headers=A,
                   body={'offers': [{'topic': 'zz-a1', 'level': 3}], 'seeks': []})
            tap.eq(r.status, 200, 'A: the cousin now offers zz-a1')
            seen_b = wait_for(lambda: C in ids(zz_match(srv=b)), 1.0, 0.01)
            dt = time.monotonic() - t0
            tap.ok(seen_b, 'B matches it %.0f ms after the update on A (< 1 s)' % (dt * 1000))
            t0 = time.monotonic()
            RA('PATCH', '/v1/organizations/' + X, headers=A, body={'name': 'ZZ Renamed'})
            ok_b = wait_for(lambda: 'ZZ Renamed' in names(zz_match(srv=b)), 1.0, 0.01)
            tap.ok(ok_b, 'a renamed organisation shows on B within a second (%.0f ms)'
                   % ((time.monotonic() - t0) * 1000))
            t0 = time.monotonic()
            RA('DELETE', '/v1/organizations/' + P, headers=A)
            gone = wait_for(lambda: P not in ids(zz_match(srv=b)), 1.0, 0.01)
            tap.ok(gone, 'a deleted organisation leaves B\'s results within a second (%.0f ms)'
                   % ((time.monotonic() - t0) * 1000))
            t0 = time.monotonic()
            topic('zz-a9', 'zz-area-a')
            N = org('ZZ Newcomer', 'research_centre', offers=['zz-a9'])
            ok_b = wait_for(lambda: N in ids(zz_match(srv=b, topics=['zz-a9'])) if RB(
                'POST', '/v1/matches', headers=rita, body={'topics': ['zz-a9']}).status == 200
                else None, 2.0, 0.02)
            tap.ok(ok_b, 'a new topic (index rebuilt) and its offer reach B (%.0f ms)'
                   % ((time.monotonic() - t0) * 1000))
            st = RB('GET', '/v1/matchmaking/index', headers=A).json()
            tap.ok(st['generation'] >= 2 and st['events_applied'] >= 3,
                   'B applied the events and rebuilt once the taxonomy changed')

            # ---- introductions ----
            n_before = count('matchmaking_introductions')
            r = RA('POST', '/v1/introductions', headers=tom,
                   body={'to': WESTERHAVEN, 'message': 'Validate our CT triage with you?',
                         'match_id': m1['id']})
            tap.eq(r.status, 201, 'POST /v1/introductions → 201')
            intro = r.json()
            tap.ok(intro['status'] == 'pending' and intro['contacts'] is None and
                   intro['from']['id'] == MEDISIGHT and intro['to']['id'] == WESTERHAVEN,
                   'pending, no contacts yet')
            r = RA('POST', '/v1/introductions', headers=sara,
                   body={'to': WESTERHAVEN, 'message': 'again'})
            tap.eq(r.status, 409, 'a second pending request to the same organisation → 409')
            r = RA('GET', '/v1/introductions?direction=in', headers=eva).json()
            tap.ok([i['id'] for i in r['items']] == [intro['id']] and
                   r['items'][0]['contacts'] is None,
                   'the receiving side lists it (direction=in), without contacts')
            r = RA('GET', '/v1/introductions?direction=out', headers=sara).json()
            tap.eq([i['id'] for i in r['items']], [intro['id']],
                   'the requesting side lists it (direction=out)')
            tap.eq(RA('GET', '/v1/introductions?direction=in', headers=sara).json()['items'],
                   [], 'and not as incoming')
            tap.eq(RA('GET', '/v1/introductions/' + intro['id'], headers=lina).status, 404,
                   'a third organisation does not see it')
            tap.eq(RA('POST', '/v1/introductions/%s/accept' % intro['id'],
                      headers=sara).status, 403, 'the requesting side cannot accept it')
            tap.eq(RA('POST', '/v1/introductions/%s/accept' % intro['id'],
                      headers=lina).status, 404, 'nor can a third organisation')
            r = RA('POST', '/v1/introductions/%s/accept' % intro['id'], headers=eva)
            tap.eq(r.status, 200, 'the receiving organisation accepts')
            acc = r.json()
            tap.ok(acc['status'] == 'accepted' and acc['contacts'] and
                   acc['contacts']['requester']['email'] == 'tom.dewit@demo.spearhead.example'
                   and acc['contacts']['accepter']['email'] ==
                   'eva.jansen@demo.spearhead.example',
                   'contacts of both people are revealed once accepted')
            r = RA('GET', '/v1/introductions/' + intro['id'], headers=tom).json()
            tap.eq(r['contacts'], acc['contacts'], 'to the requester as well')
            tap.eq(RA('POST', '/v1/introductions/%s/decline' % intro['id'],
                      headers=eva).status, 409, 'answering twice → 409')
            k = {'Idempotency-Key': 'intro-lina-1'}
            r = RA('POST', '/v1/introductions', headers=dict(lina, **k),
                   body={'to': MEDISIGHT, 'message': 'Patch data for your models?'})
            tap.eq(r.status, 201, 'a second introduction (Pulsewave → Medisight)')
            i2 = r.json()
            r = RA('POST', '/v1/introductions', headers=dict(lina, **k),
                   body={'to': MEDISIGHT, 'message': 'Patch data for your models?'})
            tap.ok(r.status == 200 and r.json()['id'] == i2['id'],
                   'retried with its Idempotency-Key: the same introduction, not a 409')
            r = RA('POST', '/v1/introductions/%s/decline' % i2['id'], headers=sara)
            tap.ok(r.status == 200 and r.json()['status'] == 'declined' and
                   r.json()['contacts'] is None,
                   'a member of the receiving organisation declines; no contacts')
            events = wait_for(lambda: (lambda s: s if {'introduction.requested',
                                                       'introduction.accepted',
                                                       'introduction.declined'} <= set(s)
                                       else None)(RA('GET', '/v1/good/seen').json()), 3)
            tap.ok(events, 'bus events introduction.requested, accepted and declined')
            if events:
                tap.eq(events['introduction.accepted'].get('id'), intro['id'],
                       'the accepted event names the introduction')
            n_mid = count('matchmaking_introductions')
            badi = [
                ({'to': MEDISIGHT, 'message': 'me'}, tom, 422, 'to', 'to itself → 422'),
                ({'to': '00000000-0000-4000-8000-000000000000', 'message': 'x'}, tom, 422,
                 'to', 'unknown organisation → 422'),
                ({'to': PULSEWAVE, 'message': ''}, tom, 422, 'message', 'empty message → 422'),
                ({'to': PULSEWAVE, 'message': 'x' * 2001}, tom, 422, 'message',
                 'message too long → 422'),
                ({'to': WESTERHAVEN, 'message': 'x', 'match_id': m1['id']}, lina, 422,
                 'match_id', 'someone else\'s match → 422'),
                ({'to': PULSEWAVE}, tom, 422, 'message', 'missing message → 422'),
                ({'to': PULSEWAVE, 'message': 'x'}, A, 403, None,
                 'an admin without organisation → 403'),
            ]
            for body, who, status, field, desc in badi:
                r = RA('POST', '/v1/introductions', headers=who, body=body)
                good = r.status == status and \
                    r.headers.get('Content-Type', '').startswith('application/problem+json')
                if field:
                    good = good and field in r.json().get('errors', {})
                tap.ok(good, 'introduction: ' + desc) or tap.diag(r.text)
            tap.eq(count('matchmaking_introductions'), n_mid, 'bad introductions created nothing')
            tap.eq(n_mid, n_before + 2, 'two introductions in all')
            RA('PUT', '/v1/plugins/matchmaking/settings', headers=A,
               body={'introductions_per_day': 2})
            time.sleep(0.2)
            r = RA('POST', '/v1/introductions', headers=tom,
                   body={'to': PULSEWAVE, 'message': 'one more'})
            tap.eq(r.status, 201, 'within the daily quota (2)')
            r = RA('POST', '/v1/introductions', headers=tom,
                   body={'to': DEMO_ORGS['Helixa Genomics']['id'], 'message': 'and another'})
            tap.eq(r.status, 429, 'over the quota → 429')
            RA('PUT', '/v1/plugins/matchmaking/settings', headers=A, body={})

            # ---- consortia ----
            call = ['clinical-validation', 'medical-imaging-ai', 'regulatory-affairs',
                    'biobanking', 'health-data-interoperability']
            rules = {'min_partners': 2, 'max_partners': 5,
                     'required_kinds': {'sme': 1, 'research': 1}, 'countries': ['NL']}
            r = RA('POST', '/v1/consortia', headers=tom,
                   body={'topics': call, 'rules': rules, 'include': [MEDISIGHT], 'limit': 3})
            tap.eq(r.status, 200, 'POST /v1/consortia for a five-topic call')
            cs = r.json()
            kinds_of = {}
            problems = []
            for c in cs['consortia']:
                mem = c['members']
                oids = [x['organization']['id'] for x in mem]
                ks = [x['organization']['kind'] for x in mem]
                kinds_of[tuple(sorted(oids))] = ks
                if not 2 <= len(mem) <= 5:
                    problems.append('size %d' % len(mem))
                if MEDISIGHT not in oids:
                    problems.append('the included organisation is missing')
                if 'sme' not in ks or not {'university', 'research_centre'} & set(ks):
                    problems.append('kinds %s' % ks)
                if any(x['organization']['country'] != 'NL' for x in mem):
                    problems.append('a member outside NL')
                covered = {t['topic'] for t in c['coverage_by_topic'] if t['organization']}
                if covered != set(call):
                    problems.append('uncovered %s' % (set(call) - covered))
                for t in c['coverage_by_topic']:
                    if t['organization'] not in oids:
                        problems.append('coverage by a non-member')
            tap.ok(cs['consortia'] and not problems,
                   '%d consortia, each covering every topic under the rules'
                   % len(cs['consortia'])) or tap.diag(problems)
            tap.eq(len(kinds_of), len(cs['consortia']), 'the consortia are distinct')
            tap.ok(cs['exact'], 'the search proved them optimal (exact)')
            objs = [c['objective'] for c in cs['consortia']]
            tap.eq(objs, sorted(objs, reverse=True), 'best first')
            tap.ok(cs['took_ms'] < 100, 'in %.1f ms' % cs['took_ms'])
            r = RA('POST', '/v1/consortia', headers=tom,
                   body={'topics': call, 'include': [MEDISIGHT],
                         'rules': dict(rules, max_partners=4)})
            tap.ok(r.status == 200 and r.json()['consortia'] == [] and r.json()['exact'],
                   'with at most 4 partners the rules cannot be met: none, proven')
            badc = [
                ({'topics': ['nope', 'biobanking']}, 'topics', 'nope',
                 'unknown topics → 422 naming them'),
                ({'topics': []}, 'topics', None, 'no topics → 422'),
                ({'topics': ['biobanking'], 'rules': {'max_partners': 9}},
                 'rules.max_partners', None, 'max_partners 9 → 422'),
                ({'topics': ['biobanking'], 'rules': {'min_partners': 5, 'max_partners': 3}},
                 'rules.min_partners', None, 'min above max → 422'),
                ({'topics': ['biobanking'], 'rules': {'required_kinds': {'bank': 1}}},
                 'rules.required_kinds', None, 'unknown required kind → 422'),
                ({'topics': ['biobanking'], 'include': ['00000000-0000-4000-8000-00000000000a']},
                 'include', 'unknown', 'unknown included organisation → 422'),
                ({'topics': ['biobanking'], 'limit': 11}, 'limit', None, 'limit 11 → 422'),
                ({'topics': ['biobanking'], 'rules': {'size': 3}}, 'rules.size', None,
                 'unknown rule → 422'),
            ]
            for body, field, text, desc in badc:
                r = RA('POST', '/v1/consortia', headers=tom, body=body)
                errs = r.json().get('errors', {}) if r.status == 422 else {}
                tap.ok(field in errs and (text is None or text in errs[field]),
                       'consortia: ' + desc) or tap.diag(r.text)

            # ---- shut down cleanly (ASan builds report leaks through the status) ----
            tap.eq(b.stop(), 0, 'instance B exits cleanly')
            tap.eq(a.stop(), 0, 'instance A exits cleanly')
            tap.ok(SUMS['results'] > 100 and not SUMS['problems'],
                   'every result of all %d match answers (%d results) has reasons summing '
                   'exactly to a score in [0, 1]' % (SUMS['answers'], SUMS['results'])) or \
                tap.diag(SUMS['problems'][:5])

    with tap.guard('out of tree'):
        p = out_of_tree_build()
        tap.ok(p.returncode == 0, 'the plugin builds from its sources against the public '
               'header alone (-Werror, -z defs)') or tap.diag(p.stderr[-3000:])
        out = cli('plugins', '--json', env={'SPEARHEAD_PLUGIN_DIR': os.path.join(TMP, 'oot'),
                                            'SPEARHEAD_PLUGINS': 'matchmaking',
                                            'SPEARHEAD_PLUGIN_PATH': ''})
        try:
            listed = {p['name']: p for p in json.loads(out.stdout)['items']}
        except (ValueError, KeyError, TypeError):
            listed = {}
            tap.diag(out.stdout + out.stderr)
        tap.eq(listed.get('matchmaking', {}).get('status'), 'loaded',
               'and the core accepts that module')
finally:
    shutil.rmtree(TMP, ignore_errors=True)
tap.done()
