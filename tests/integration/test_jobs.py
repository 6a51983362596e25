"""Durable jobs and the notification outbox against real servers: retries with
backoff until success, dead after the last attempt and retried by an admin, a job of
a killed worker taken over after its lease, two instances sharing one queue without
double work, dedupe keys, and notifications that exist only when their cause commits
(delivered through a channel plugin)."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from sptest import PgCluster, Server, Tap  # noqa: E402

JOBS = os.environ.get('SP_TEST_JOBSDIR', '')
BIN = os.environ.get('SPEARHEAD_BIN', './spearhead')
ENV = {'SPEARHEAD_PLUGIN_PATH': JOBS, 'SPEARHEAD_PLUGIN_DIR': '/nonexistent',
       'SPEARHEAD_JOBS_LEASE_S': '3'}
tap = Tap()


def wait_for(pred, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


with tap.guard('jobs and outbox'), PgCluster() as pg:
    url = pg.url()

    def q(sql):
        return pg.psql(sql).strip()

    with Server(database=url, args=['--workers', '1'], env=ENV) as a:
        tap.eq(a.request('POST', '/v1/jobber/jobs', body={'tag': 'ok'}).status, 202, 'enqueue')
        tap.ok(wait_for(lambda: q("SELECT count(*) FROM jobber_runs WHERE tag = 'ok'") == '1'),
               'a job runs once')
        tap.ok(wait_for(lambda: q("SELECT state FROM sp_jobs WHERE payload->>'tag' = 'ok'") ==
                        'done'), 'and is marked done')

        a.request('POST', '/v1/jobber/jobs', body={'tag': 'flaky', 'fail_first': 2})
        tap.ok(wait_for(lambda: q("SELECT state || ':' || attempts FROM sp_jobs WHERE "
                                  "payload->>'tag' = 'flaky'") == 'done:3'),
               'a job failing twice succeeds on its third attempt')
        tap.eq(q("SELECT string_agg(outcome, ',' ORDER BY attempt) FROM jobber_runs WHERE "
                 "tag = 'flaky'"), 'failed,failed,done', 'each attempt ran once')

        pg.psql("INSERT INTO sp_jobs (queue, payload, max_attempts) VALUES ('jobber.work', "
                "'{\"tag\": \"doomed\", \"fail_for_good\": true}', 2)")
        tap.ok(wait_for(lambda: q("SELECT state FROM sp_jobs WHERE payload->>'tag' = "
                                  "'doomed'") == 'dead'),
               'a job out of attempts is dead (found by polling, without NOTIFY)')
        tap.eq(q("SELECT last_error FROM sp_jobs WHERE payload->>'tag' = 'doomed'"),
               'failing on purpose', 'with its last error kept')

        subprocess.run([BIN, 'user', 'add', '--email', 'ops@x.example', '--admin', '--database',
                        url], capture_output=True, env=dict(os.environ, **ENV))
        token = subprocess.run([BIN, 'token', 'create', '--email', 'ops@x.example',
                                '--database', url], capture_output=True, text=True,
                               env=dict(os.environ, **ENV)).stdout.strip()
        H = {'Authorization': 'Bearer ' + token}
        r = a.request('GET', '/v1/admin/jobs?state=dead', headers=H)
        dead = [j for j in r.json()['items'] if j['payload'].get('tag') == 'doomed']
        tap.ok(r.status == 200 and len(dead) == 1, 'admins list dead jobs')
        tap.eq(a.request('GET', '/v1/admin/jobs').status, 401, 'not anonymously')
        tap.eq(a.request('GET', '/v1/admin/jobs?state=weird', headers=H).status, 400,
               'a bad state filter is refused')
        r = a.request('POST', '/v1/admin/jobs/%s/retry' % dead[0]['id'], headers=H)
        tap.eq((r.status, r.json().get('state')), (200, 'pending'), 'an admin retries it')
        tap.ok(wait_for(lambda: q("SELECT count(*) FROM jobber_runs WHERE tag = 'doomed'") ==
                        '3'), 'and it runs again')
        tap.eq(a.request('POST', '/v1/admin/jobs/999999/retry', headers=H).status, 404,
               'retrying an unknown job → 404')

        # dedupe keys
        for _ in range(3):
            a.request('POST', '/v1/jobber/jobs', body={'tag': 'once', 'dedupe_key': 'k1'})
        tap.ok(wait_for(lambda: q("SELECT count(*) FROM jobber_runs WHERE tag = 'once'") == '1'),
               'the same dedupe key enqueues one job')

        # notifications: outbox + channel
        uid = q("INSERT INTO sp_users (email) VALUES ('ann@x.example') RETURNING id")
        uid = uid.splitlines()[0]
        for _ in range(2):
            r = a.request('POST', '/v1/jobber/notify', body={'user_id': uid, 'key': 'hello-1'})
            tap.eq(r.status, 202, 'notify in a transaction')
        tap.ok(wait_for(lambda: q("SELECT count(*) FROM jobber_deliveries") == '1'),
               'delivered once through the channel, although notified twice (dedupe key)')
        tap.eq(q("SELECT count(*) FROM sp_outbox WHERE dedupe_key = 'hello-1'"), '1',
               'one outbox row')
        # preferences choose the channels of a person
        ann_token = subprocess.run([BIN, 'token', 'create', '--email', 'ann@x.example',
                                    '--database', url], capture_output=True, text=True,
                                   env=dict(os.environ, **ENV)).stdout.strip()
        ANN = {'Authorization': 'Bearer ' + ann_token}
        r = a.request('GET', '/v1/me/notification-preferences', headers=ANN)
        tap.ok(r.status == 200 and r.json()['source'] == 'default' and
               'testlog' in r.json()['available_channels'], 'default preferences, channels listed')
        r = a.request('PUT', '/v1/me/notification-preferences', headers=ANN,
                      body={'channels': {'jobber.*': [], '*': ['testlog']},
                            'reminder_offsets_days': [14, 3]})
        tap.eq(r.status, 200, 'a person sets preferences')
        for bad in ({'channels': {'Bad Key': []}}, {'channels': {'*': 'feed'}},
                    {'reminder_offsets_days': [400]}, {'topics': ['no-such-topic']},
                    {'colour': 'blue'}):
            r = a.request('PUT', '/v1/me/notification-preferences', headers=ANN, body=bad)
            tap.eq(r.status, 422, 'bad preferences %s → 422' % list(bad))
        tap.eq(a.request('GET', '/v1/me/notification-preferences', headers=ANN).json()
               ['reminder_offsets_days'], [14, 3], 'and bad ones change nothing')
        a.request('POST', '/v1/jobber/notify', body={'user_id': uid, 'key': 'muted'})
        time.sleep(1.5)
        tap.eq(q("SELECT count(*) FROM sp_outbox WHERE dedupe_key = 'muted'"), '0',
               'a type muted by the person\'s preferences creates no outbox row')
        a.request('PUT', '/v1/me/notification-preferences', headers=ANN,
                  body={'channels': {'jobber.hello': ['testlog'], 'jobber.*': []}})
        a.request('POST', '/v1/jobber/notify', body={'user_id': uid, 'key': 'exact'})
        tap.ok(wait_for(lambda: q("SELECT count(*) FROM jobber_deliveries d JOIN sp_outbox o "
                                  "ON o.id = d.outbox_id WHERE o.dedupe_key = 'exact'") == '1'),
               'the exact type wins over the prefix rule')
        r = a.request('POST', '/v1/jobber/notify', body={'user_id': uid, 'key': 'hello-2',
                                                         'rollback': True})
        tap.eq(r.json().get('committed'), False, 'a cause that rolls back')
        time.sleep(1.5)
        tap.eq(q("SELECT count(*) FROM sp_outbox WHERE dedupe_key = 'hello-2'"), '0',
               'leaves no outbox row')
        tap.eq(q("SELECT count(*) FROM jobber_deliveries d JOIN sp_outbox o ON o.id = "
                 "d.outbox_id WHERE o.dedupe_key = 'hello-2'"), '0', 'and sends nothing')
        tap.eq(a.stop(), 0, 'clean exit')

    # Two instances share one queue: every job runs exactly once while both are healthy.
    with Server(database=url, args=['--workers', '1'], env=ENV) as a, \
            Server(database=url, args=['--workers', '1'], env=ENV) as b:
        pg.psql("INSERT INTO sp_jobs (queue, payload) SELECT 'jobber.work', "
                "jsonb_build_object('tag', 'batch') FROM generate_series(1, 300)")
        tap.ok(wait_for(lambda: q("SELECT count(*) FROM sp_jobs WHERE payload->>'tag' = "
                                  "'batch' AND state = 'done'") == '300', 60),
               '300 jobs done by two instances')
        tap.eq(q("SELECT count(*) - count(DISTINCT job_id) FROM jobber_runs WHERE tag = "
                 "'batch'"), '0', 'none ran twice')
        a.stop()
        b.stop()

    # Jobs ended in the same loop pass are written by one statement: each row still gets
    # its own outcome, and one failing among others retries alone.
    with Server(database=url, args=['--workers', '1'], env=ENV) as a:
        pg.psql("INSERT INTO sp_jobs (queue, payload) SELECT 'jobber.work', CASE WHEN g % 3 = 0 "
                "THEN jsonb_build_object('tag', 'mix-retry', 'fail_first', 1) ELSE "
                "jsonb_build_object('tag', 'mix-ok') END FROM generate_series(1, 120) g")
        tap.ok(wait_for(lambda: q("SELECT count(*) FROM sp_jobs WHERE payload->>'tag' LIKE "
                                  "'mix-%' AND state = 'done'") == '120', 60),
               '120 jobs, a third of them failing once, all end done')
        tap.eq(q("SELECT string_agg(DISTINCT payload->>'tag' || ':' || attempts, ',') FROM "
                 "sp_jobs WHERE payload->>'tag' LIKE 'mix-%'"), 'mix-ok:1,mix-retry:2',
               'each with its own outcome: the failing ones took a second attempt, no other did')
        tap.eq(q("SELECT string_agg(DISTINCT runs, ',') FROM (SELECT tag, job_id, string_agg("
                 "outcome, '>' ORDER BY attempt) AS runs FROM jobber_runs WHERE tag LIKE 'mix-%' "
                 "GROUP BY tag, job_id) x"), 'done,failed>done',
               'every job ran once per attempt')
        tap.eq(q("SELECT count(*) FROM sp_jobs WHERE payload->>'tag' LIKE 'mix-%' AND "
                 "last_error IS NOT NULL"), '0', 'a job ending done keeps no error')
        # updated_at is the end statement's now(): shared values mean shared statements.
        tap.ok(int(q("SELECT count(*) - count(DISTINCT updated_at) FROM sp_jobs WHERE "
                     "payload->>'tag' LIKE 'mix-%'")) > 0,
               'jobs ending together were written together')
        tap.eq(a.stop(), 0, 'clean exit')

    # A worker dies holding a job: another instance takes it over after the lease (3 s).
    with Server(database=url, args=['--workers', '1'], env=ENV) as a:
        a.request('POST', '/v1/jobber/jobs', body={'tag': 'orphan', 'hang': True})
        tap.ok(wait_for(lambda: q("SELECT state FROM sp_jobs WHERE payload->>'tag' = "
                                  "'orphan'") == 'running'), 'the hanging job is claimed')
        a.kill()
        with Server(database=url, args=['--workers', '1'], env=ENV) as b:
            ok = wait_for(lambda: q("SELECT state || ':' || attempts FROM sp_jobs WHERE "
                                    "payload->>'tag' = 'orphan'") == 'done:2', 30)
            tap.ok(ok, 'after the lease another instance runs it (second attempt) to the end')
            if not ok:
                tap.diag(q("SELECT state, attempts, locked_by, locked_until, now() FROM sp_jobs WHERE "
                           "payload->>'tag' = 'orphan'"))
                tap.diag(b.log_text()[-1500:])

tap.done()
