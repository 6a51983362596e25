"""Registration integrity under concurrency — the events plugin's core promise — over
two spearhead instances sharing one PostgreSQL:

- 2,000 concurrent registrations (distinct users) for 100 seats: exactly 100
  confirmed, 1,900 waitlisted numbered 1..1900, no 5xx, none lost;
- the same race with the test-only switch that skips the capacity guard overbooks
  (so the race test can fail), and a server without SPEARHEAD_TEST_UNSAFE=1 refuses
  that switch;
- one Idempotency-Key retried 50 times concurrently creates one registration;
- cancellations and registrations interleaved keep every invariant (checked by SQL);
- PostgreSQL restarted in the middle of 5,000 registrations for 200 seats: exactly 200
  confirmed, nothing lost or doubled, every request answered within 3 s;
- while another session holds the event's row lock, registrations answer 503 with
  Retry-After within about 3 s (lock_timeout)."""
import asyncio
import collections
import os
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))
sys.path.insert(0, HERE)
from sptest import PgCluster, Server, Tap, wait_for  # noqa: E402
import test_events_support as S  # noqa: E402

tap = Tap()
# The races put thousands of requests in flight at once: they wait their turn for a
# pool connection (no 503 for waiting). The restart and lock phases bound waiting: a
# request waiting 2 s for a connection gives up (503), so every request is answered
# within 3 s even while PostgreSQL restarts; lock waits give up after 3 s.
RACE_CONFIG = "[database]\nqueue_timeout_ms = 30000\n[log]\nlevel = warn\n"
CONFIG = "[database]\nqueue_timeout_ms = 2000\nlock_timeout_ms = 3000\n[log]\nlevel = warn\n"
UNSAFE_ENV = dict(S.ENV, SPEARHEAD_TEST_UNSAFE='1')


def register_all(servers, event_id, users, headers_of=None, body=None):
    """One POST per user, all in flight at once, spread over the servers."""
    path = '/v1/events/%s/registrations' % event_id

    async def one(i, u):
        h = S.auth(u['token'])
        if headers_of:
            h.update(headers_of(i, u))
        return await S.request(servers[i % len(servers)].port, 'POST', path, headers=h,
                               body=body, timeout=60)
    return S.run(S.gather([one(i, u) for i, u in enumerate(users)]))


def race_report(pg, event_id, users, replies, capacity):
    """What a race produced, seen by the clients and by the database."""
    statuses = collections.Counter(r.status for r in replies)
    ok = [r.json() for r in replies if r.status == 201]
    rows = pg.psql("SELECT id, status FROM events_registrations WHERE event_id = '%s'"
                   % event_id).split('\n')
    db = dict(line.split('|') for line in rows if line)
    return {
        'statuses': statuses,
        'confirmed': sum(1 for b in ok if b['status'] == 'confirmed'),
        'positions': sorted(b['waitlist_position'] for b in ok if b['status'] == 'waitlisted'),
        'answered_ids': {b['id'] for b in ok},
        'db': db,
        'db_confirmed': sum(1 for s in db.values() if s == 'confirmed'),
    }


def unsafe_mode(servers, on):
    want = 1.0 if on else 0.0
    return all(wait_for(lambda s=s: S.metric(s, 'spearhead_events_unsafe_mode') == want)
               for s in servers)


with tap.guard('events integrity'), PgCluster() as pg:
    admin = S.admin_token(pg)
    A = S.auth(admin)
    t0 = time.monotonic()
    users = S.make_users(pg, 5000, 'u')
    tap.diag('5000 users with tokens created by SQL in %.1f s' % (time.monotonic() - t0))
    with Server(database=pg, args=['--workers', '1'], env=UNSAFE_ENV,
                config_text=RACE_CONFIG) as a, \
            Server(database=pg, args=['--workers', '1'], env=UNSAFE_ENV,
                   config_text=RACE_CONFIG) as b:
        servers = [a, b]
        tap.eq(a.request('GET', '/v1/plugins/events').json().get('status'), 'running',
               'the events plugin runs on instance A')
        tap.eq(b.request('GET', '/v1/plugins/events').json().get('status'), 'running',
               'and on instance B')

        # ---- 2,000 concurrent registrations for 100 seats over two instances ----
        ev = S.new_event(a.request, admin, capacity=100)
        racers = users[:2000]
        t0 = time.monotonic()
        replies = register_all(servers, ev['id'], racers)
        took = time.monotonic() - t0
        rep = race_report(pg, ev['id'], racers, replies, 100)
        tap.diag('race: %d registrations in %.2f s (%.0f/s), statuses %s, slowest %.2f s'
                 % (len(racers), took, len(racers) / took, dict(rep['statuses']),
                    max(r.elapsed for r in replies)))
        tap.eq(dict(rep['statuses']), {201: 2000}, 'every one of the 2,000 requests got 201')
        tap.eq(rep['confirmed'], 100, 'exactly 100 answered confirmed')
        tap.eq(rep['positions'], list(range(1, 1901)),
               '1,900 answered waitlisted with positions 1..1900, no gap, no duplicate')
        tap.eq(rep['db_confirmed'], 100, 'exactly 100 confirmed in the database')
        tap.eq(len(rep['db']), 2000, '2,000 registrations in the database')
        tap.eq(set(rep['db']), rep['answered_ids'],
               'zero lost: every 201 is in the database and every row got its 201')
        tap.eq(S.invariant_violations(pg, ev['id']), [], 'every invariant holds (SQL)')
        tap.ok(S.waitlist_positions_ok(pg, ev['id']), 'the waiting list numbers 1..1900')
        r = a.request('GET', '/v1/events/%s' % ev['id'])
        tap.eq((r.json()['confirmed_count'], r.json()['waitlist_count']), (100, 1900),
               'the event shows 100 confirmed and 1,900 waiting')
        batches = sum(S.metric(s, 'spearhead_events_registration_batches_total') or 0
                      for s in servers)
        items = sum(S.metric(s, 'spearhead_events_registration_batch_items_total') or 0
                    for s in servers)
        tap.diag('%d registrations made by %d statements' % (items, batches))
        tap.ok(items >= 2000 and 0 < batches < items / 2,
               'registrations arriving together were made together (%d in %d batches)'
               % (items, batches))

        # ---- the same race without the capacity guard must overbook ----
        r = a.request('PUT', '/v1/plugins/events/settings', headers=A,
                      body={'unsafe_skip_capacity_guard': True})
        tap.eq(r.status, 200, 'test switch set (servers run with SPEARHEAD_TEST_UNSAFE=1)')
        tap.ok(unsafe_mode(servers, True), 'both instances report the guard off')
        ev2 = S.new_event(a.request, admin, capacity=100)
        replies = register_all(servers, ev2['id'], racers)
        rep2 = race_report(pg, ev2['id'], racers, replies, 100)
        tap.diag('without the guard: %d confirmed for 100 seats, statuses %s'
                 % (rep2['db_confirmed'], dict(rep2['statuses'])))
        tap.ok(rep2['db_confirmed'] > 100,
               'without the capacity guard the same race confirms more than 100 (%d): '
               'the race test can fail' % rep2['db_confirmed'])
        tap.ok(any('> capacity' in v for v in S.invariant_violations(pg, ev2['id'])),
               'and the SQL invariant check reports it')
        r = a.request('PUT', '/v1/plugins/events/settings', headers=A, body={})
        tap.eq(r.status, 200, 'test switch removed')
        tap.ok(unsafe_mode(servers, False), 'both instances guard capacity again')
        pg.psql("DELETE FROM events_events WHERE id = '%s'" % ev2['id'])

        # ---- one Idempotency-Key retried 50 times at once ----
        ev3 = S.new_event(a.request, admin, capacity=5)
        who = users[2000]
        body = {'attendee': {'email': who['email'], 'name': 'Retry Person'}}
        replies = register_all(servers, ev3['id'], [who] * 50,
                               headers_of=lambda i, u: {'Idempotency-Key': 'same-key-1'},
                               body=body)
        statuses = collections.Counter(r.status for r in replies)
        ids = {r.json()['id'] for r in replies if r.status == 201}
        tap.eq(dict(statuses), {201: 50}, '50 concurrent retries all answered 201')
        tap.eq(len(ids), 1, 'with the same registration')
        tap.eq(S.sql_value(pg, "SELECT count(*) FROM events_registrations WHERE event_id = '%s'"
                           % ev3['id']), '1', 'one registration in the database')
        tap.eq(S.sql_value(pg, "SELECT count(*) FROM events_notices WHERE event_id = '%s' "
                           "AND registration_id IS NOT NULL" % ev3['id']), '1', 'announced once')
        r = a.request('POST', '/v1/events/%s/registrations' % ev3['id'],
                      headers=dict(S.auth(who['token']), **{'Idempotency-Key': 'same-key-1'}),
                      body={'attendee': {'email': who['email'], 'name': 'Someone Else'}})
        tap.eq(r.status, 422, 'the same key with another body → 422')

        # ---- cancellations and registrations interleaved ----
        ev4 = S.new_event(a.request, admin, capacity=60,
                          categories=[{'name': 'company', 'quota': 25},
                                      {'name': 'academic', 'quota': 30},
                                      {'name': 'hospital'}])
        cats = ['company', 'academic', 'hospital']
        first = users[2100:2300]
        path4 = '/v1/events/%s/registrations' % ev4['id']

        async def phase1():
            return await S.gather([S.request(servers[i % 2].port, 'POST', path4,
                                             headers=S.auth(u['token']),
                                             body={'category': cats[i % 3]}, timeout=60)
                                   for i, u in enumerate(first)])
        replies = S.run(phase1())
        tap.eq(collections.Counter(r.status for r in replies), {201: 200},
               '200 registrations in three categories')
        regs = [(u, r.json()) for u, r in zip(first, replies)]
        tap.eq(S.invariant_violations(pg, ev4['id']), [], 'invariants hold after them')
        rng = random.Random(5)
        to_cancel = rng.sample(regs, 120)
        second = users[2300:2450]

        async def phase2():
            tasks = []
            for i, (u, reg) in enumerate(to_cancel):
                who = u if i % 3 else None  # two thirds by the attendee, one by the admin
                tasks.append(S.request(servers[i % 2].port, 'DELETE',
                                       '%s/%s' % (path4, reg['id']),
                                       headers=S.auth(who['token'] if who else admin),
                                       timeout=60))
            for i, u in enumerate(second):
                tasks.append(S.request(servers[(i + 1) % 2].port, 'POST', path4,
                                       headers=S.auth(u['token']),
                                       body={'category': cats[i % 3]}, timeout=60))
            rng.shuffle(tasks)
            return await S.gather(tasks)
        replies = S.run(phase2())
        st = collections.Counter(r.status for r in replies)
        tap.eq(dict(st), {200: 120, 201: 150},
               '120 cancellations and 150 registrations interleaved, all answered 2xx')
        tap.eq(S.invariant_violations(pg, ev4['id']), [],
               'invariants hold: capacity, quotas, counters, nobody waiting for a free '
               'seat, nobody skipped in their category, one notice per promotion')
        tap.ok(S.waitlist_positions_ok(pg, ev4['id']), 'the waiting list numbers 1..n')
        promoted = S.sql_value(pg, "SELECT count(*) FROM events_registrations "
                                   "WHERE event_id = '%s' AND promoted_at IS NOT NULL" % ev4['id'])
        tap.ok(int(promoted) > 0, 'people were promoted from the waiting list (%s)' % promoted)

        tap.eq(a.stop(), 0, 'instance A exits cleanly')
        tap.eq(b.stop(), 0, 'instance B exits cleanly')

    with Server(database=pg, args=['--workers', '1'], env=S.ENV, config_text=CONFIG) as a, \
            Server(database=pg, args=['--workers', '1'], env=S.ENV, config_text=CONFIG) as b:
        servers = [a, b]
        rng = random.Random(7)
        # ---- PostgreSQL restarts during 5,000 registrations for 200 seats ----
        ev5 = S.new_event(a.request, admin, capacity=200)
        path5 = '/v1/events/%s/registrations' % ev5['id']
        crowd = list(users)
        final = {}
        latencies = []
        slow = []
        statuses = collections.Counter()
        progress = {'done': 0, 'restart_at': None, 'restart_done': None}

        def restart():
            progress['restart_at'] = progress['done']
            pg.restart()
            progress['restart_done'] = progress['done']

        async def restart_run():
            queue = collections.deque(crowd)
            loop = asyncio.get_running_loop()
            restarted = []

            async def client(c):
                while queue:
                    u = queue.popleft()
                    key = 'k-' + u['email']
                    give_up = time.monotonic() + 60
                    while True:
                        srv = servers[rng.randrange(2)]
                        r = await S.request(srv.port, 'POST', path5, timeout=20,
                                            headers=dict(S.auth(u['token']),
                                                         **{'Idempotency-Key': key}))
                        latencies.append(r.elapsed)
                        if r.elapsed > 1.0:
                            slow.append((round(r.elapsed, 2), r.status,
                                         round(time.monotonic() - t0, 2)))
                        statuses[r.status] += 1
                        if r.status == 201 or r.status not in (503, None) or \
                                time.monotonic() > give_up:
                            final[u['email']] = r
                            break
                        await asyncio.sleep(0.1 + rng.random() * 0.2)
                    progress['done'] += 1
                    if progress['done'] == 1500 and not restarted:
                        restarted.append(loop.run_in_executor(None, restart))
            await S.gather([client(c) for c in range(100)])
            if restarted:
                await restarted[0]
        t0 = time.monotonic()
        S.run(restart_run())
        took = time.monotonic() - t0
        tap.diag('5,000 registrations with a PostgreSQL restart in %.1f s; attempts by '
                 'status %s; slowest attempt %.2f s'
                 % (took, dict(statuses), max(latencies)))
        tap.ok(progress['restart_at'] is not None and progress['restart_done'] < 5000,
               'PostgreSQL restarted in the middle (after %s, back after %s registrations)'
               % (progress['restart_at'], progress['restart_done']))
        tap.ok(statuses.get(503, 0) > 0, 'clients saw 503 while it was away (%d)'
               % statuses.get(503, 0))
        tap.ok(set(statuses) <= {201, 503}, 'every attempt got 201 or 503 (%s)'
               % sorted(statuses, key=str))
        tap.ok(max(latencies) < 3.0, 'every request answered within 3 s (slowest %.2f s)'
               % max(latencies))
        if slow:
            tap.diag('attempts slower than 1 s (seconds, status, at): %s' % sorted(slow)[-5:])
        tap.eq(collections.Counter(r.status for r in final.values()), {201: 5000},
               'every client ended with 201 (retrying with its Idempotency-Key)')
        rep5 = race_report(pg, ev5['id'], crowd, list(final.values()), 200)
        tap.eq(rep5['db_confirmed'], 200, 'exactly 200 confirmed')
        tap.eq(len(rep5['db']), 5000, 'exactly 5,000 registrations: nothing lost or doubled')
        tap.eq(set(rep5['db']), rep5['answered_ids'], 'each client holds its own registration')
        tap.eq(S.invariant_violations(pg, ev5['id']), [], 'every invariant holds (SQL)')
        tap.ok(S.waitlist_positions_ok(pg, ev5['id']), 'the waiting list numbers 1..4800')
        tap.ok(wait_for(lambda: S.sql_value(pg, "SELECT count(*) FROM events_notices "
                                                  "WHERE relayed_at IS NULL") == '0', 20),
               'every notice reached the notification outbox after the restart')

        # ---- a held lock gives 503 + Retry-After within about 3 s ----
        ev6 = S.new_event(a.request, admin, capacity=10)
        psql = os.path.join(pg.bindir, 'psql')
        holder = subprocess.Popen(
            [psql, '-XAtq', '-h', pg.sockdir, '-p', str(pg.port), '-U', 'postgres', '-c',
             "BEGIN; SELECT events_lock('%s'); "
             "SELECT pg_sleep(10) /* lock holder */; COMMIT;" % ev6['id']],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            held = wait_for(lambda: S.sql_value(
                pg, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                    "'%lock holder%' AND pid <> pg_backend_pid()") == '1', timeout=10)
            tap.ok(held, "another session holds the event's lock")
            t0 = time.monotonic()
            replies = register_all(servers, ev6['id'], users[4990:4996])
            took = [r.elapsed for r in replies]
            tap.eq([r.status for r in replies], [503] * 6,
                   'registrations meanwhile answer 503')
            tap.ok(all(r.headers.get('retry-after') for r in replies), 'with Retry-After')
            tap.ok(all(2.5 <= t < 5.0 for t in took),
                   'within about 3 s (lock_timeout): %s' % ', '.join('%.2f' % t for t in took))
        finally:
            pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE '%lock holder%' AND pid <> pg_backend_pid()")
            holder.wait(timeout=20)
        r = a.request('POST', '/v1/events/%s/registrations' % ev6['id'],
                      headers=S.auth(users[4997]['token']))
        tap.eq(r.status, 201, 'once the lock is gone, registration works again')
        tap.eq(a.stop(), 0, 'instance A exits cleanly')
        tap.eq(b.stop(), 0, 'instance B exits cleanly')

    # ---- without SPEARHEAD_TEST_UNSAFE=1 the test switch is refused ----
    url = pg.createdb('refusing')
    S.cli('user', 'add', '--email', 'staff2@cluster.example', '--admin', '--database', url)
    admin2 = S.cli('token', 'create', '--email', 'staff2@cluster.example',
                   '--database', url).stdout.strip()

    class DbOf:  # psql on the second database, for make_users
        def __init__(self, cluster, db):
            self.cluster, self.db = cluster, db

        def psql(self, sql):
            return self.cluster.psql(sql, db=self.db)
    others = S.make_users(DbOf(pg, 'refusing'), 200, 'r')
    config = CONFIG + "[plugin.events]\nunsafe_skip_capacity_guard = true\n"
    with Server(database=url, args=['--workers', '1'], env=dict(S.ENV, SPEARHEAD_TEST_UNSAFE=None),
                config_text=config) as c:
        tap.ok(wait_for(lambda: 'unsafe_skip_capacity_guard refused' in c.log_text()),
               'the switch in the config file is refused at start (logged)')
        tap.eq(S.metric(c, 'spearhead_events_unsafe_mode'), 0.0, 'and the guard stays on')
        r = c.request('PUT', '/v1/plugins/events/settings', headers=S.auth(admin2),
                      body={'unsafe_skip_capacity_guard': False})
        tap.eq(r.status, 200, 'switched off through the API')
        r = c.request('PUT', '/v1/plugins/events/settings', headers=S.auth(admin2),
                      body={'unsafe_skip_capacity_guard': True})
        tap.eq(r.status, 422, 'switching it on through the API is refused (422)')
        tap.ok(c.log_text().count('unsafe_skip_capacity_guard refused') >= 2,
               'with the reason in the log')
        r = c.request('GET', '/v1/plugins/events/settings', headers=S.auth(admin2))
        tap.eq(r.json()['settings'].get('unsafe_skip_capacity_guard'), False,
               'the effective setting stays off')
        tap.eq(S.metric(c, 'spearhead_events_unsafe_mode'), 0.0, 'and the guard stays on')
        ev7 = S.new_event(c.request, admin2, capacity=10)
        replies = register_all([c], ev7['id'], others)
        confirmed = sum(1 for r in replies if r.status == 201 and
                        r.json()['status'] == 'confirmed')
        tap.eq(confirmed, 10, 'a race on that server still confirms exactly 10 of 200')
        tap.eq(c.stop(), 0, 'that server exits cleanly too')

tap.done()
