"""`spearhead demo`: the demo data set (contrib/demo) mirrors the reference deployment,
loads in one transaction, prints the demo accounts, changes nothing when loaded again,
and a broken data set is refused with a message naming the file and entry."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from sptest import PgCluster, Server, Tap  # noqa: E402

BIN = os.environ.get('SPEARHEAD_BIN', './spearhead')
SRC = os.environ.get('SP_SRCDIR') or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  '..', '..')
DEMO = os.path.join(SRC, 'contrib', 'demo')
THEMES = {'personalised-medicine', 'digital-medicine', 'efficient-healthcare',
          'breakthrough-care-innovation'}
KINDS = {'sme': 45, 'large_enterprise': 14, 'hospital': 4, 'public_body': 1, 'association': 5,
         'research_centre': 3, 'university': 5}
TABLES = ('sp_topics', 'sp_organizations', 'sp_org_topics', 'sp_users')
# One digest per table over every column of every row (created_at included).
CHECKSUM = ' UNION ALL '.join(
    "SELECT '%s', md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM %s t"
    % (name, name) for name in TABLES)
tap = Tap()
TMP = tempfile.mkdtemp(prefix='sp-demo-', dir='/tmp')
os.chmod(TMP, 0o711)  # an embedded cluster's user must traverse it


def load(name):
    with open(os.path.join(DEMO, name), encoding='utf-8') as f:
        return json.load(f)


def demo(args, demo_dir=DEMO):
    env = dict(os.environ, SPEARHEAD_DEMO_DIR=demo_dir)
    return subprocess.run([BIN, 'demo'] + list(args), env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=600)


def rows(pg, sql, db):
    return [line.split('|') for line in pg.psql(sql, db=db).splitlines() if line]


def checksum(pg, db):
    return dict(rows(pg, CHECKSUM, db))


def broken_copy(name, mutate):
    """A copy of the data set with file name changed by mutate(data)."""
    d = tempfile.mkdtemp(prefix='bad-', dir=TMP)
    for f in ('topics.json', 'organizations.json', 'users.json'):
        shutil.copy(os.path.join(DEMO, f), d)
    path = os.path.join(d, name)
    if callable(mutate):
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
        mutate(data)
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(data, f, indent=2)
    else:
        with open(path, 'w', encoding='utf-8') as f:
            f.write(mutate)
    return d


topics, orgs, users = load('topics.json'), load('organizations.json'), load('users.json')

with tap.guard('the data set files'):
    slugs = {t['slug'] for t in topics}
    tap.eq({t['slug'] for t in topics if t['parent'] is None}, THEMES,
           'topics.json: the four themes are the roots')
    subs = [t for t in topics if t['parent'] is not None]
    tap.ok(20 <= len(subs) <= 40, 'topics.json: 20 to 40 sub-topics (%d)' % len(subs))
    tap.eq(dict((k, sum(1 for o in orgs if o['kind'] == k)) for k in KINDS), KINDS,
           'organizations.json: kinds as in the reference deployment (77 in all)')
    refs = {p['topic'] for o in orgs for p in o['offers'] + o['seeks']}
    tap.ok(refs <= slugs, 'every profile topic is in topics.json')
    tap.ok(all(o['website'].startswith('https://') and o['website'].endswith('.example')
               for o in orgs), 'websites are under the reserved .example domain')
    tap.ok(all(u['email'].endswith('@demo.spearhead.example') and len(u['password']) >= 12
               for u in users), 'demo accounts: @demo.spearhead.example, passwords >= 12')
    tap.eq([u['org'] for u in users if u['is_admin']], [None], 'one admin, in no organisation')
    members = [u for u in users if not u['is_admin']]
    tap.ok(4 <= len(members) <= 6 and all(u['org'] and u['org_role'] in ('member', 'manager')
                                          for u in members),
           'four to six members or managers of organisations')

with tap.guard('demo'), PgCluster() as pg:
    r = demo(['--help'])
    tap.ok(r.returncode == 0 and '--demo-dir' in r.stdout, 'demo --help')
    r = demo(['--bogus'])
    tap.eq(r.returncode, 2, 'an unknown argument is a usage error')

    url = pg.createdb('demo')
    r = demo(['--database', url])
    if not tap.eq(r.returncode, 0, 'spearhead demo loads the data set'):
        tap.diag(r.stderr[-3000:])
    db = 'demo'

    kinds = dict(rows(pg, 'SELECT kind, count(*) FROM sp_organizations GROUP BY kind', db))
    tap.eq({k: int(v) for k, v in kinds.items()}, KINDS,
           '45 SMEs, 14 large, 4 hospitals, 1 federation, 5 associations, 3 research, '
           '5 universities')
    roots = {x[0] for x in rows(pg, 'SELECT slug FROM sp_topics WHERE parent_id IS NULL', db)}
    tap.eq(roots, THEMES, 'the four themes are loaded as roots')
    n = int(pg.psql('SELECT count(*) FROM sp_topics WHERE parent_id IS NOT NULL', db=db))
    tap.ok(20 <= n <= 40, '%d sub-topics' % n)
    orphans = pg.psql("""
        WITH RECURSIVE up(id, root, depth) AS (
            SELECT id, id, 1 FROM sp_topics WHERE parent_id IS NULL
            UNION ALL SELECT t.id, up.root, up.depth + 1 FROM sp_topics t JOIN up
                ON t.parent_id = up.id)
        SELECT (SELECT count(*) FROM sp_topics) - count(*), max(depth) FROM up""", db=db)
    tap.eq(orphans.strip(), '0|3', 'every sub-topic hangs under a theme, three levels at most')
    tap.eq(pg.psql("""SELECT count(*) FROM sp_organizations o WHERE
        NOT EXISTS (SELECT 1 FROM sp_org_topics x WHERE x.org_id = o.id AND x.relation = 'offers')
        OR NOT EXISTS (SELECT 1 FROM sp_org_topics x WHERE x.org_id = o.id
                       AND x.relation = 'seeks')""", db=db).strip(), '0',
           'every organisation offers and seeks at least one topic')
    got = {tuple(x) for x in rows(pg, """SELECT o.id, x.relation, t.slug, x.level
        FROM sp_org_topics x JOIN sp_organizations o ON o.id = x.org_id
        JOIN sp_topics t ON t.id = x.topic_id""", db)}
    want = {(o['id'], rel, p['topic'], str(p['level']))
            for o in orgs for rel in ('offers', 'seeks') for p in o[rel]}
    tap.ok(got == want, 'the stored profiles are exactly those of organizations.json (%d rows)'
           % len(want))
    tap.eq({x[0] for x in rows(pg, 'SELECT id FROM sp_organizations', db)},
           {o['id'] for o in orgs}, 'organisations keep the fixed ids of the files')
    stored = {x[0]: x[1:] for x in rows(pg, """SELECT email, password_hash, is_admin,
        coalesce(org_id::text, ''), coalesce(org_role, '') FROM sp_users""", db)}
    tap.eq(set(stored), {u['email'] for u in users}, 'the demo accounts exist')
    admin = next(u for u in users if u['is_admin'])
    tap.ok(stored.get(admin['email'], [''])[0].startswith('$argon2id$'),
           'the admin password is stored as an argon2id hash')
    tap.ok(all(s[0].startswith('$argon2id$') and admin['password'] not in s[0]
               for s in stored.values()), 'no password is stored in clear')
    tap.ok(all(stored[u['email']][1:] == ['t' if u['is_admin'] else 'f', u['org'] or '',
                                          u['org_role'] or ''] for u in users),
           'roles and organisations of the accounts are as in users.json')
    tap.ok(all(u['email'] in r.stderr and u['password'] in r.stderr for u in users),
           'the demo accounts and passwords are printed')
    tap.ok('77 organisations (77 new' in r.stderr, 'progress is logged')
    tap.ok(not r.stdout.strip(), 'nothing on stdout')

    before = checksum(pg, db)
    r = demo(['--database', url])
    tap.eq(r.returncode, 0, 'loading twice succeeds')
    tap.eq(checksum(pg, db), before, 'and changes nothing')
    tap.ok('(0 new' in r.stderr and admin['password'] in r.stderr,
           'the second run reports nothing new and still prints the accounts')

    # the admin can log in with the printed password (when the server has the route)
    with Server(database=url) as srv:
        resp = srv.request('POST', '/v1/auth/login',
                           body={'email': admin['email'], 'password': admin['password']})
        if resp.status == 404:
            tap.skip('the admin logs in with the demo password', 'no /v1/auth/login yet')
        else:
            tap.ok(resp.status == 200 and resp.json().get('user', {}).get('is_admin'),
                   'the admin logs in with the demo password')
    before = checksum(pg, db)  # a login may touch nothing of ours, but be exact

    # broken data sets: refused with the file and entry named, nothing changes
    fresh = pg.createdb('fresh')
    bad_kind = next(i for i, o in enumerate(orgs) if o['kind'] == 'sme')
    cases = [
        ('organizations.json', lambda d: d[bad_kind].update(kind='startup'),
         ['organizations.json', 'entry %d' % (bad_kind + 1), orgs[bad_kind]['name'],
          'startup'], 'a bad kind'),
        ('organizations.json', lambda d: d[3]['seeks'].append({'topic': 'astrology', 'level': 1}),
         ['organizations.json', 'entry 4', 'astrology'], 'an unknown profile topic'),
        ('organizations.json', lambda d: d[5]['offers'][0].update(level=4),
         ['organizations.json', 'entry 6', 'level'], 'a level outside 1-3'),
        ('topics.json', lambda d: d[-1].update(parent='no-such-theme'),
         ['topics.json', 'entry %d' % len(topics), 'no-such-theme'], 'an unknown parent'),
        ('topics.json', lambda d: d[2].update(id='not-a-uuid'),
         ['topics.json', 'entry 3', 'UUID'], 'a malformed id'),
        ('users.json', lambda d: d[1].update(password='short'),
         ['users.json', 'entry 2', 'password'], 'a short password'),
        ('users.json', lambda d: d[2].update(org_role=None),
         ['users.json', 'entry 3', 'org_role'], 'an org without a role'),
        ('topics.json', '[{"id": ', ['topics.json:1'], 'broken JSON'),
    ]
    for name, mutate, needles, desc in cases:
        d = broken_copy(name, mutate)
        r = demo(['--database', url], demo_dir=d)
        ok = r.returncode == 1 and all(s in r.stderr for s in needles)
        if not tap.ok(ok, '%s is refused with a message naming the file and entry' % desc):
            tap.diag('exit %d: %s' % (r.returncode, r.stderr[-1500:]))
        tap.eq(checksum(pg, db), before, '%s changes nothing' % desc)
    d = broken_copy('organizations.json', lambda d: d[bad_kind].update(kind='startup'))
    r = demo(['--database', fresh, '--demo-dir', d], demo_dir='/nonexistent')
    tap.eq(r.returncode, 1, '--demo-dir is used (and a bad data set fails on a fresh database)')
    exists = pg.psql("SELECT to_regclass('sp_topics') IS NOT NULL", db='fresh').strip()
    tap.ok(exists == 'f' or pg.psql('SELECT (SELECT count(*) FROM sp_topics) + (SELECT count(*) '
                                    'FROM sp_organizations) + (SELECT count(*) FROM sp_users)',
                                    db='fresh').strip() == '0',
           'the fresh database holds no demo rows')
    r = demo(['--database', fresh], demo_dir=os.path.join(TMP, 'missing'))
    tap.ok(r.returncode == 1 and 'topics.json' in r.stderr, 'a missing data set is reported')

    # a failure inside the transaction rolls everything back
    def extend(data):
        data.append({'id': '00000000-0000-4000-8000-00000000d3e0',
                     'email': 'late@demo.spearhead.example', 'display_name': 'Late',
                     'password': 'late-password-123', 'is_admin': False, 'org': None,
                     'org_role': None})
    d = broken_copy('users.json', extend)
    with open(os.path.join(d, 'topics.json'), encoding='utf-8') as f:
        more = json.load(f)
    more.append({'id': '00000000-0000-4000-8000-00000000d3e1', 'slug': 'extra-topic',
                 'label': 'Extra', 'parent': 'digital-medicine', 'synonyms': []})
    with open(os.path.join(d, 'topics.json'), 'w', encoding='utf-8') as f:
        json.dump(more, f)
    pg.psql("""CREATE FUNCTION demo_boom() RETURNS trigger LANGUAGE plpgsql AS
        $$BEGIN RAISE EXCEPTION 'refused by test trigger'; END$$;
        CREATE TRIGGER demo_boom BEFORE INSERT ON sp_users FOR EACH ROW
        EXECUTE FUNCTION demo_boom()""", db=db)
    r = demo(['--database', url], demo_dir=d)
    tap.ok(r.returncode == 1 and 'users.json' in r.stderr and 'late@demo' in r.stderr and
           'refused by test trigger' in r.stderr,
           'a database error names the file, the entry and the cause')
    pg.psql('DROP TRIGGER demo_boom ON sp_users; DROP FUNCTION demo_boom()', db=db)
    tap.eq(checksum(pg, db), before, 'the topic inserted before the failure was rolled back')

    # what exists is kept: no password reset, no profile re-added
    pg.psql("UPDATE sp_users SET password_hash = 'changed' WHERE email = '%s'" % admin['email'],
            db=db)
    pg.psql("DELETE FROM sp_org_topics WHERE org_id = '%s' AND relation = 'seeks'"
            % orgs[0]['id'], db=db)
    before = checksum(pg, db)
    r = demo(['--database', url])
    tap.eq(r.returncode, 0, 'loading over edited data succeeds')
    tap.eq(checksum(pg, db), before, 'a changed password and an edited profile are kept')
    tap.ok('not reset' in r.stderr, 'the account list says existing passwords were kept')

    # the embedded cluster of a state directory
    state = os.path.join(TMP, 'state')
    r = demo(['--state-dir', state])
    if not tap.eq(r.returncode, 0, 'demo --state-dir loads into the embedded cluster'):
        tap.diag(r.stderr[-3000:])
    r = demo(['--state-dir', state])
    tap.ok(r.returncode == 0 and '77 organisations (0 new' in r.stderr,
           'and a second run there adds nothing')
    tap.ok(not os.path.exists(os.path.join(state, 'pg', 'postmaster.pid')),
           'the embedded cluster is stopped afterwards')

shutil.rmtree(TMP, ignore_errors=True)
tap.done()
