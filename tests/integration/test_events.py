"""The events plugin over HTTP, one instance: events (create, validate, drafts hidden,
publish/close, PATCH with capacity and quota rules, delete, organiser grants, list
filters and cursor pagination), registration (rules, questions and answers, categories
and quotas, waiting list, cancellation with promotion, Idempotency-Key, registering
someone else), the caller's registrations, the organisers' list as JSON and CSV,
check-in by id and by code, iCalendar, bus events, and bad input answered with
problem+json that changes nothing."""
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))
sys.path.insert(0, HERE)
from sptest import PgCluster, Server, Tap, wait_for  # noqa: E402
import test_events_support as S  # noqa: E402

tap = Tap()
SRC = os.environ.get('SP_SRCDIR') or os.path.normpath(os.path.join(HERE, '..', '..'))
FUTURE = '2031-06-10T09:00:00+02:00'
FUTURE_END = '2031-06-10T18:00:00+02:00'
EVENT_FIELDS = {'id', 'title', 'description', 'venue', 'online_url', 'starts_at', 'ends_at',
                'timezone', 'topics', 'capacity', 'registration_opens_at',
                'registration_closes_at', 'categories', 'questions', 'settings', 'status',
                'confirmed_count', 'waitlist_count', 'version', 'created_at', 'updated_at',
                'published_at', 'closed_at'}
REG_FIELDS = {'id', 'event_id', 'status', 'waitlist_position', 'category', 'attendee',
              'answers', 'checkin_code', 'checked_in_at', 'created_at', 'promoted_at',
              'cancelled_at'}


def event_body(**kw):
    body = {'title': 'Brokerage day', 'description': 'Meet partners, pitch projects.',
            'venue': 'Hall B, Toulouse', 'starts_at': FUTURE, 'ends_at': FUTURE_END,
            'timezone': 'Europe/Paris', 'capacity': 3}
    body.update(kw)
    return body


def problem(r, status, field=None):
    """r is a problem+json answer with that status (and naming field in errors)."""
    if r.status != status:
        return False
    if not (r.headers.get('Content-Type') or '').startswith('application/problem+json'):
        return False
    return field is None or field in (r.json().get('errors') or {})


with tap.guard('events API'), PgCluster() as pg:
    admin = S.admin_token(pg)
    A = S.auth(admin)
    m1, m2, m3, m4 = S.make_users(pg, 4, 'member')
    M1, M2, M3, M4 = (S.auth(u['token']) for u in (m1, m2, m3, m4))
    # A channel plugin, when built, shows the notices reaching the outbox.
    FEED = os.path.exists(os.path.join(S.PLUGINDIR, 'feed.so'))
    env = dict(S.ENV, SPEARHEAD_PLUGINS='events,feed' if FEED else 'events')
    with Server(database=pg, args=['--workers', '1'], env=env) as srv:
        R = srv.request
        tap.eq(R('GET', '/v1/plugins/events').json().get('status'), 'running',
               'the events plugin runs')
        for slug, label, parent in (('digital-medicine', 'Digital medicine', None),
                                    ('ai-imaging', 'AI imaging', 'digital-medicine'),
                                    ('genomics', 'Genomics', None)):
            body = {'slug': slug, 'label': label}
            if parent:
                body['parent'] = parent
            R('POST', '/v1/topics', headers=A, body=body)

        # ---- creating events ----
        tap.eq(R('POST', '/v1/events', headers=M1, body=event_body()).status, 403,
               'a member without an organiser grant cannot create events')
        tap.eq(R('POST', '/v1/events', body=event_body()).status, 401, 'anonymous → 401')
        r = R('POST', '/v1/events', headers=A, body=event_body(
            topics=['ai-imaging'],
            categories=[{'name': 'company', 'quota': 1}, {'name': 'academic'}],
            questions=[{'id': 'diet', 'label': 'Diet', 'type': 'choice',
                        'options': ['none', 'vegetarian'], 'required': True},
                       {'id': 'interests', 'label': 'Interests', 'type': 'multi_choice',
                        'options': ['ai', 'omics', 'devices']},
                       {'id': 'note', 'label': 'Anything else?', 'type': 'text'}],
            settings={'meetings': {'slot_minutes': 20}}))
        tap.eq(r.status, 201, 'an admin creates an event')
        ev = r.json()
        tap.eq(r.headers.get('Location'), '/v1/events/' + ev['id'], 'with its Location')
        tap.eq(set(ev), EVENT_FIELDS, 'event fields are the documented ones')
        tap.eq(ev['status'], 'draft', 'a new event is a draft')
        tap.eq(ev['starts_at'], '2031-06-10T07:00:00Z', 'times are answered in UTC (RFC 3339)')
        tap.eq(ev['timezone'], 'Europe/Paris', 'with the event time zone')
        tap.eq(ev['categories'], [{'name': 'company', 'quota': 1},
                                  {'name': 'academic', 'quota': None}], 'categories')
        tap.eq(ev['settings'], {'meetings': {'slot_minutes': 20}}, 'per-event plugin settings')
        E = '/v1/events/' + ev['id']

        bad_cases = [
            (event_body(title=''), 'title'), (event_body(capacity=-1), 'capacity'),
            (event_body(capacity='ten'), 'capacity'),
            (event_body(ends_at='2031-06-10T08:00:00+02:00'), 'ends_at'),
            (event_body(starts_at='next monday'), 'starts_at'),
            (event_body(starts_at='2031-06-10T09:00:00'), 'starts_at'),
            (event_body(timezone='Mars/Olympus_Mons'), 'timezone'),
            (event_body(topics=['no-such-topic']), 'topics'),
            (event_body(venue=None), 'venue'),
            (event_body(online_url='javascript:alert(1)'), 'online_url'),
            (event_body(categories=[{'name': 'a'}, {'name': 'a'}]), 'categories[1].name'),
            (event_body(questions=[{'id': 'q', 'label': 'Q', 'type': 'choice'}]),
             'questions[0].options'),
            (event_body(status='closed'), 'status'),
            (event_body(id='mine'), 'id'), (event_body(colour='red'), 'colour'),
            (event_body(registration_opens_at='2031-06-02T00:00:00Z',
                        registration_closes_at='2031-06-01T00:00:00Z'),
             'registration_closes_at'),
        ]
        for body, field in bad_cases:
            r = R('POST', '/v1/events', headers=A, body=body)
            tap.ok(problem(r, 422, field), 'bad event (%s) → 422 naming it' % field)
        tap.eq(S.sql_value(pg, 'SELECT count(*) FROM events_events'), '1',
               'bad input created nothing')
        tap.eq(R('POST', '/v1/events', headers=A, raw='{"title":').status, 415,
               'no JSON content type → 415')

        # ---- drafts are hidden ----
        tap.eq(R('GET', E, headers=M1).status, 404, 'a member does not see a draft')
        tap.eq(R('GET', E).status, 404, 'nor does anyone anonymous')
        tap.eq(R('GET', E, headers=A).status, 200, 'an admin does')
        tap.eq([e['id'] for e in R('GET', '/v1/events', headers=M1).json()['items']], [],
               'drafts are not listed for members')
        tap.eq(R('POST', E + '/registrations', headers=M1).status, 404,
               'nor open to registration')
        tap.eq(R('GET', E + '/calendar.ics').status, 404, 'nor in a calendar')

        # ---- organiser grants ----
        r = R('POST', E + '/organisers', headers=A, body={'email': m1['email'].upper()})
        tap.eq(r.status, 201, 'an admin grants the organiser role (by e-mail)')
        tap.eq(r.json()['user_id'], m1['id'], 'to the right user')
        tap.eq(R('POST', E + '/organisers', headers=A, body={'user_id': m1['id']}).status, 200,
               'granting again changes nothing (200)')
        tap.ok(problem(R('POST', E + '/organisers', headers=A,
                         body={'email': 'nobody@nowhere.example'}), 422, 'email'),
               'an unknown user → 422')
        tap.ok(problem(R('POST', E + '/organisers', headers=A, body={}), 422),
               'no one named → 422')
        tap.eq(R('POST', E + '/organisers', headers=M2, body={'user_id': m2['id']}).status, 404,
               'a member cannot grant themselves (the draft is hidden)')
        tap.eq(R('POST', E + '/organisers', headers=M2, body={'bogus': 1}).status, 404,
               'nor learn anything from a malformed grant (the draft stays hidden)')
        r = R('GET', E + '/organisers', headers=M1)
        tap.eq(sorted(o['email'] for o in r.json()['items']),
               sorted(['staff@cluster.example', m1['email']]),
               'organisers: the creator and the granted member')
        tap.eq(R('GET', E, headers=M1).status, 200, 'the organiser sees the draft')
        r = R('POST', '/v1/events', headers=M1, body=event_body(title='Organiser own event'))
        tap.eq(r.status, 201, 'a member holding an organiser grant creates an event')
        own = r.json()

        # ---- PATCH ----
        r = R('PATCH', E, headers=M1, body={'title': 'Brokerage day 2031', 'capacity': 3})
        tap.eq((r.status, r.json().get('title')), (200, 'Brokerage day 2031'),
               'an organiser changes the event')
        tap.eq(r.json()['version'], 2, 'version bumped')
        tap.ok(problem(R('PATCH', E, headers=M1, body={'status': 'published'}), 422, 'status'),
               'status is changed by publish/close only')
        tap.ok(problem(R('PATCH', E, headers=M1, body={'ends_at': '2020-01-01T00:00:00Z'}),
                       422, 'ends_at'), 'a PATCH that breaks the event → 422')
        tap.ok(problem(R('PATCH', E, headers=M1, body={'confirmed_count': 0}), 422,
                       'confirmed_count'), 'read-only fields → 422')
        tap.eq(R('GET', E, headers=A).json()['title'], 'Brokerage day 2031', 'unchanged')

        # ---- publishing ----
        seen_before = R('GET', '/v1/good/seen').json()
        tap.ok('event.published' not in seen_before, 'no event.published yet')
        r = R('POST', E + '/publish', headers=M1)
        tap.eq((r.status, r.json().get('status')), (200, 'published'), 'publish')
        tap.ok(wait_for(lambda: R('GET', '/v1/good/seen').json().get('event.published', {})
                          .get('event_id') == ev['id']), 'event.published on the bus')
        tap.eq(R('POST', E + '/publish', headers=M1).status, 409, 'publishing twice → 409')
        tap.eq(R('GET', E, headers=M2).status, 200, 'members see it now')
        tap.eq(R('GET', E).status, 200, 'and so does anyone (public listing)')
        tap.eq(R('PATCH', E, headers=M2, body={'title': 'x'}).status, 403,
               'a member who is not an organiser cannot change it')
        tap.eq(R('PATCH', E, headers=M2, body={'status': 'closed', 'version': 1}).status, 403,
               'a malformed change from a non-organiser → 403, not the body\'s errors')
        tap.eq(R('POST', E + '/organisers', headers=M2, body={'bogus': 1}).status, 403,
               'so does a malformed organiser grant')
        tap.eq(R('POST', E + '/close', headers=M2).status, 403, 'nor close it')

        # ---- registering ----
        reg_url = E + '/registrations'
        r = R('POST', reg_url, headers=M2, body={'answers': {'diet': 'none'}})
        tap.ok(problem(r, 422, 'category'), 'the category is required when the event has some')
        r = R('POST', reg_url, headers=M2, body={'category': 'company'})
        tap.ok(problem(r, 422, 'answers.diet'), 'a required answer is missing → 422 naming it')
        r = R('POST', reg_url, headers=M2, body={'category': 'company', 'answers': {
            'diet': 'pizza', 'interests': ['ai', 'ai'], 'shoe': 42}})
        tap.ok(problem(r, 422, 'answers.diet') and problem(r, 422, 'answers.interests') and
               problem(r, 422, 'answers.shoe'), 'every bad answer named')
        tap.ok(problem(R('POST', reg_url, headers=M2, body={'category': 'press',
                                                             'answers': {'diet': 'none'}}),
                       422, 'category'), 'an unknown category → 422')
        tap.ok(problem(R('POST', reg_url, headers=M2, body={'seat': 1}), 422, 'seat'),
               'an unknown field → 422')
        tap.eq(S.sql_value(pg, 'SELECT count(*) FROM events_registrations'), '0',
               'bad registrations created nothing')
        r = R('POST', reg_url, headers=M2, body={
            'category': 'company', 'answers': {'diet': 'vegetarian', 'interests': ['ai', 'omics'],
                                               'note': 'Arriving late'}})
        tap.eq(r.status, 201, 'a member registers')
        reg2 = r.json()
        tap.eq(set(reg2), REG_FIELDS, 'registration fields are the documented ones')
        tap.eq((reg2['status'], reg2['waitlist_position'], reg2['category']),
               ('confirmed', None, 'company'), 'confirmed in company')
        tap.eq(reg2['attendee'], {'name': 'Member00001', 'email': m2['email']},
               'the attendee defaults to the caller')
        tap.ok(len(reg2['checkin_code']) == 10, 'with a check-in code')
        tap.ok(wait_for(lambda: R('GET', '/v1/good/seen').json()
                          .get('registration.confirmed', {}).get('registration_id') ==
                          reg2['id']), 'registration.confirmed on the bus')
        r = R('POST', reg_url, headers=M2, body={'category': 'academic',
                                                  'answers': {'diet': 'none'}})
        tap.ok(problem(r, 409), 'registering twice → 409')
        r = R('POST', reg_url, headers=M3, body={'category': 'company', 'answers': {
            'diet': 'none'}, 'attendee': {'email': 'someone@else.example', 'name': 'X'}})
        tap.eq(r.status, 403, 'a member cannot register someone else')
        r = R('POST', reg_url, headers=M3, body={'category': 'company',
                                                  'answers': {'diet': 'none'}})
        tap.eq((r.status, r.json().get('status'), r.json().get('waitlist_position')),
               (201, 'waitlisted', 1), 'the company quota (1) is full: waitlisted, position 1')
        reg3 = r.json()
        tap.ok(wait_for(lambda: R('GET', '/v1/good/seen').json()
                          .get('registration.waitlisted', {}).get('registration_id') ==
                          reg3['id']), 'registration.waitlisted on the bus')
        r = R('POST', reg_url, headers=M1, body={
            'category': 'academic', 'answers': {'diet': 'none'},
            'attendee': {'email': 'guest@univ.example', 'name': '=HYPERLINK("x")'}})
        tap.eq((r.status, r.json().get('status')), (201, 'confirmed'),
               'an organiser registers a guest (academic has no quota)')
        guest = r.json()
        r = R('POST', reg_url, headers=M4, body={'category': 'academic',
                                                  'answers': {'diet': 'none'}},)
        tap.eq((r.status, r.json().get('status')), (201, 'confirmed'),
               'the third seat goes to an academic')
        reg4 = r.json()
        r = R('POST', reg_url, headers=A, body={'category': 'academic',
                                                 'answers': {'diet': 'none'}})
        tap.eq((r.status, r.json().get('status'), r.json().get('waitlist_position')),
               (201, 'waitlisted', 2), 'the event is full: waitlisted, position 2')
        regA = r.json()
        r = R('GET', E, headers=M2)
        tap.eq((r.json()['confirmed_count'], r.json()['waitlist_count']), (3, 2),
               'the event counts 3 confirmed and 2 waiting')

        # ---- capacity and quota changes ----
        r = R('PATCH', E, headers=M1, body={'capacity': 2})
        tap.ok(problem(r, 409, 'capacity') and '3 confirmed' in r.json()['detail'] and
               'capacity 2' in r.json()['detail'],
               'capacity below the confirmed count → 409 with the numbers')
        r = R('PATCH', E, headers=M1, body={'categories': [{'name': 'company', 'quota': 0},
                                                           {'name': 'academic'}]})
        tap.ok(problem(r, 409, 'categories') and '1 confirmed' in r.json()['detail'],
               'a quota below its confirmed count → 409 with the numbers')
        r = R('PATCH', E, headers=M1, body={'categories': [{'name': 'company', 'quota': 1}]})
        tap.ok(problem(r, 409, 'categories'), 'removing a category in use → 409')
        tap.eq(R('GET', E, headers=A).json()['capacity'], 3, 'capacity unchanged')

        # ---- cancelling promotes ----
        tap.eq(R('DELETE', reg_url + '/' + reg2['id'], headers=M3).status, 404,
               'someone else cannot cancel a registration')
        r = R('DELETE', reg_url + '/' + reg2['id'], headers=M2)
        tap.eq((r.status, r.json().get('status')), (200, 'cancelled'),
               'the attendee cancels')
        r = R('GET', reg_url + '/' + reg3['id'], headers=M3)
        tap.eq((r.json()['status'], r.json()['waitlist_position']), ('confirmed', None),
               'the first waitlisted person whose category has room is promoted')
        tap.ok(r.json()['promoted_at'] is not None, 'with promoted_at')
        r = R('GET', reg_url + '/' + regA['id'], headers=A)
        tap.eq((r.json()['status'], r.json()['waitlist_position']), ('waitlisted', 1),
               'the next one moves up to position 1')
        tap.ok(wait_for(lambda: R('GET', '/v1/good/seen').json()
                          .get('registration.promoted', {}).get('registration_id') ==
                          reg3['id']), 'registration.promoted on the bus')
        tap.eq(R('GET', '/v1/good/seen').json().get('registration.cancelled', {})
               .get('registration_id'), reg2['id'], 'registration.cancelled on the bus')
        r = R('DELETE', reg_url + '/' + reg2['id'], headers=M2)
        tap.eq((r.status, r.json().get('status')), (200, 'cancelled'),
               'cancelling again changes nothing')
        tap.eq(S.sql_value(pg, "SELECT count(*) FROM events_notices WHERE type = "
                               "'registration.promoted'"), '1', 'one promotion notice')
        tap.ok(wait_for(lambda: S.sql_value(pg, "SELECT count(*) FROM events_notices "
                                                  "WHERE relayed_at IS NULL") == '0'),
               'every notice is handed to the notification outbox')
        if FEED:
            tap.ok(wait_for(lambda: S.sql_value(
                pg, "SELECT count(*) FROM sp_outbox WHERE type = 'registration.promoted' "
                    "AND channel = 'feed' AND user_id = '%s'" % m3['id']) == '1'),
                   'the promoted attendee is notified once (feed outbox row)')
        else:
            tap.skip('the promoted attendee is notified once (feed outbox row)',
                     'no feed plugin built')
        r = R('POST', reg_url, headers=M2, body={'category': 'company',
                                                  'answers': {'diet': 'none'}})
        tap.eq((r.status, r.json().get('status'), r.json().get('waitlist_position')),
               (201, 'waitlisted', 2), 'after cancelling one may register again')
        reg2b = r.json()
        r = R('PATCH', E, headers=M1, body={'capacity': 4})
        tap.eq(r.status, 200, 'raising the capacity')
        r = R('GET', reg_url + '/' + regA['id'], headers=A)
        tap.eq(r.json()['status'], 'confirmed', 'promotes the first waitlisted with room')
        r = R('GET', reg_url + '/' + reg2b['id'], headers=M2)
        tap.eq((r.json()['status'], r.json()['waitlist_position']), ('waitlisted', 1),
               'but not someone whose category quota is full')
        tap.eq(S.invariant_violations(pg, ev['id']), [], 'invariants hold (SQL)')

        # ---- my registrations ----
        r = R('GET', '/v1/me/registrations', headers=M2)
        items = r.json()['items']
        tap.eq([(i['id'], i['status']) for i in items],
               [(reg2['id'], 'cancelled'), (reg2b['id'], 'waitlisted')],
               'GET /v1/me/registrations lists mine, oldest first')
        tap.eq(items[1]['event']['title'], 'Brokerage day 2031', 'with the event')
        tap.eq(items[1]['waitlist_position'], 1, 'and my waitlist position')
        r = R('GET', '/v1/me/registrations?limit=1', headers=M2)
        page2 = R('GET', '/v1/me/registrations?limit=1&cursor=' + r.json()['next_cursor'],
                  headers=M2).json()
        tap.eq([i['id'] for i in page2['items']], [reg2b['id']], 'paged with a cursor')
        tap.eq(R('GET', '/v1/me/registrations?status=nope', headers=M2).status, 400,
               'bad status filter → 400')
        tap.eq(R('GET', '/v1/me/registrations', headers=M4).json()['items'][0]['id'],
               reg4['id'], 'each sees their own')

        # ---- the organisers' list, JSON and CSV ----
        tap.eq(R('GET', reg_url, headers=M2).status, 403, 'attendees do not see the list')
        r = R('GET', reg_url, headers=M1)
        tap.eq(r.status, 200, 'organisers do')
        tap.eq([i['id'] for i in r.json()['items']],
               [reg2['id'], reg3['id'], guest['id'], reg4['id'], regA['id'], reg2b['id']],
               'in arrival order')
        r = R('GET', reg_url + '?status=waitlisted', headers=M1)
        tap.eq([(i['id'], i['waitlist_position']) for i in r.json()['items']],
               [(reg2b['id'], 1)], 'filtered by status, with positions')
        ids, cursor = [], None
        while True:
            q = '?limit=2' + ('&cursor=' + cursor if cursor else '')
            page = R('GET', reg_url + q, headers=M1).json()
            ids += [i['id'] for i in page['items']]
            cursor = page['next_cursor']
            if not cursor:
                break
        tap.eq(len(ids), 6, 'cursor pagination visits every registration once')
        tap.eq(R('GET', reg_url + '?cursor=bogus', headers=M1).status, 400, 'bad cursor → 400')
        r = R('GET', reg_url, headers=dict(M1, Accept='text/csv'))
        tap.ok(r.status == 200 and r.headers.get('Content-Type', '').startswith('text/csv'),
               'Accept: text/csv gives CSV')
        rows = list(csv.reader(io.StringIO(r.text, newline='')))
        tap.eq(rows[0][:9], ['registration_id', 'status', 'waitlist_position', 'category',
                             'name', 'email', 'checkin_code', 'checked_in_at', 'created_at'],
               'CSV header')
        tap.eq(rows[0][9:], ['Diet', 'Interests', 'Anything else?'], 'a column per question')
        tap.eq(len(rows), 7, 'a line per registration')
        by_id = {row[0]: row for row in rows[1:]}
        tap.eq(by_id[reg3['id']][9:], ['none', '', ''],
               'answers in their columns')
        tap.eq(by_id[guest['id']][4], "'=HYPERLINK(\"x\")",
               'a formula-like value is defused for spreadsheets')
        tap.ok(r.text.endswith('\r\n') and '\r\n' in r.text, 'CRLF line ends')
        r2 = R('GET', reg_url + '?format=csv', headers=M1)
        tap.eq(r2.text, r.text, '?format=csv gives the same')
        tap.eq(R('GET', reg_url + '?format=xml', headers=M1).status, 400, 'unknown format → 400')

        # ---- check-in ----
        cin = reg_url + '/' + reg4['id'] + '/checkin'
        tap.eq(R('POST', cin, headers=M4, body={'code': reg4['checkin_code']}).status, 403,
               'an attendee cannot check in')
        tap.ok(problem(R('POST', cin, headers=M1, body={'code': '0000000000'}), 422, 'code'),
               'a wrong code → 422')
        r = R('POST', cin, headers=M1, body={'code': reg4['checkin_code'].lower()})
        tap.eq(r.status, 200, 'an organiser checks in with the code')
        first = r.json()['checked_in_at']
        tap.ok(first is not None, 'checked_in_at set')
        tap.ok(wait_for(lambda: R('GET', '/v1/good/seen').json()
                          .get('checkin.recorded', {}).get('registration_id') == reg4['id']),
               'checkin.recorded on the bus')
        time.sleep(1.1)
        r = R('POST', cin, headers=M1, body={'code': reg4['checkin_code']})
        tap.ok(problem(r, 409) and first in r.json()['detail'] and
               r.json()['errors']['checked_in_at'] == first,
               'checking in twice → 409 with the first time')
        code = guest['checkin_code']
        typed = code[:5] + '-' + code[5:].lower()
        r = R('POST', E + '/checkin', headers=M1, body={'code': typed})
        tap.eq((r.status, r.json().get('id')), (200, guest['id']),
               'check in by code alone (a door scanner or a typed code)')
        r = R('POST', reg_url + '/' + regA['checkin_code'] + '/checkin', headers=A)
        tap.eq((r.status, r.json().get('id')), (200, regA['id']),
               'the code may stand in the path')
        r = R('POST', reg_url + '/' + reg2b['id'] + '/checkin', headers=M1)
        tap.ok(problem(r, 409), 'a waitlisted person cannot check in')
        tap.eq(R('POST', E + '/checkin', headers=M1, body={'code': 'ABCDEF0123'}).status, 404,
               'an unknown code → 404')
        r = R('GET', reg_url + '?checked_in=true', headers=M1)
        tap.eq(sorted(i['id'] for i in r.json()['items']),
               sorted([reg4['id'], guest['id'], regA['id']]), 'filter checked_in=true')

        # ---- iCalendar ----
        r = R('GET', E + '/calendar.ics')
        tap.eq(r.status, 200, 'GET calendar.ics (public for a published event)')
        tap.ok(r.headers.get('Content-Type', '').startswith('text/calendar'),
               'as text/calendar')
        ics = r.body.decode('utf-8')
        lines = ics.split('\r\n')
        tap.ok(ics.endswith('\r\n') and all(len(ln.encode('utf-8')) <= 75 for ln in lines),
               'CRLF lines of at most 75 octets')
        tap.ok(lines[0] == 'BEGIN:VCALENDAR' and 'END:VCALENDAR' in lines and
               'BEGIN:VEVENT' in lines and 'VERSION:2.0' in lines, 'a VCALENDAR with a VEVENT')
        tap.ok('DTSTART:20310610T070000Z' in lines and 'DTEND:20310610T160000Z' in lines,
               '09:00–18:00 Paris summer time is 07:00–16:00 UTC')
        tap.ok('X-WR-TIMEZONE:Europe/Paris' in lines, 'the event zone named')
        tap.ok('SUMMARY:Brokerage day 2031' in lines and
               'LOCATION:Hall B\\, Toulouse' in lines, 'summary and escaped location')
        tap.ok('UID:%s@events.spearhead' % ev['id'] in lines, 'a stable UID')

        # ---- listing ----
        r = R('POST', '/v1/events', headers=A, body=event_body(
            title='Genomics summit', topics=['genomics'], starts_at='2031-01-05T09:00:00Z',
            ends_at='2031-01-05T17:00:00Z', venue=None, online_url='https://meet.example/g',
            status='published', timezone='UTC'))
        tap.eq((r.status, r.json().get('status')), (201, 'published'),
               'an event can be created published')
        genomics = r.json()
        r = R('POST', '/v1/events', headers=A, body=event_body(
            title='Past workshop', starts_at='2020-01-05T09:00:00Z', status='published',
            ends_at='2020-01-05T17:00:00Z'))
        past = r.json()

        def titles(q, h=M2):
            r = R('GET', '/v1/events' + q, headers=h)
            return [e['title'] for e in r.json()['items']] if r.status == 200 else r.status
        tap.eq(titles(''), ['Past workshop', 'Genomics summit', 'Brokerage day 2031'],
               'published events in start order (drafts hidden)')
        tap.eq(titles('?upcoming=true'), ['Genomics summit', 'Brokerage day 2031'], 'upcoming')
        tap.eq(titles('?upcoming=false'), ['Past workshop'], 'past')
        tap.eq(titles('?topic=digital-medicine'), ['Brokerage day 2031'],
               'a theme includes its sub-topics')
        tap.eq(titles('?topic=genomics'), ['Genomics summit'], 'by topic')
        tap.eq(titles('?q=summit'), ['Genomics summit'], 'text search')
        tap.eq(titles('?q=%25'), [], 'wildcards in q are literal')
        tap.eq(titles('?status=draft'), [], 'members see no drafts')
        tap.eq(titles('?status=draft', M1), ['Organiser own event'],
               'organisers see their own drafts')
        tap.eq(titles('?status=draft', A), ['Organiser own event'], 'admins see drafts')
        p1 = R('GET', '/v1/events?limit=2', headers=M2).json()
        p2 = R('GET', '/v1/events?limit=2&cursor=' + p1['next_cursor'], headers=M2).json()
        tap.eq([e['title'] for e in p1['items'] + p2['items']],
               ['Past workshop', 'Genomics summit', 'Brokerage day 2031'], 'cursor pagination')
        tap.eq(p2['next_cursor'], None, 'the last page has no next_cursor')
        for q in ('?status=open', '?upcoming=maybe', '?limit=0', '?limit=101', '?cursor=x',
                  '?topic=Bad_Topic'):
            tap.eq(R('GET', '/v1/events' + q).status, 400, 'bad query %s → 400' % q)
        r = R('GET', '/v1/events/%s/calendar.ics' % genomics['id'])
        tap.ok('LOCATION:https://meet.example/g' in r.text and
               'URL:https://meet.example/g' in r.text, 'an online event has its URL')

        # ---- windows and states ----
        r = R('POST', '/v1/events/%s/registrations' % past['id'], headers=M2)
        tap.ok(problem(r, 409) and 'closed' in r.json()['detail'],
               'registration after the window → 409')
        r = R('POST', '/v1/events', headers=A, body=event_body(
            title='Later', status='published', registration_opens_at='2031-01-01T00:00:00Z'))
        r = R('POST', '/v1/events/%s/registrations' % r.json()['id'], headers=M2)
        tap.ok(problem(r, 409) and 'opens at 2031-01-01T00:00:00Z' in r.json()['detail'],
               'registration before the window → 409 saying when it opens')
        key = {'Idempotency-Key': 'genomics-1'}
        r1 = R('POST', '/v1/events/%s/registrations' % genomics['id'], headers=dict(M3, **key))
        r2 = R('POST', '/v1/events/%s/registrations' % genomics['id'], headers=dict(M3, **key))
        tap.ok(r1.status == 201 and r2.status == 201 and r1.json() == r2.json(),
               'a retried request with the same Idempotency-Key answers the first result')
        r3 = R('POST', '/v1/events/%s/registrations' % genomics['id'], headers=dict(M3, **key),
               body={'attendee': {'email': m3['email'], 'name': 'Other Name'}})
        tap.ok(problem(r3, 422, 'Idempotency-Key'), 'the same key for another request → 422')
        tap.eq(R('POST', '/v1/events/%s/registrations' % genomics['id'],
                 headers=dict(M3, **{'Idempotency-Key': 'a b'})).status, 400,
               'a malformed Idempotency-Key → 400')
        r = R('POST', E + '/close', headers=M1)
        tap.eq((r.status, r.json().get('status')), (200, 'closed'), 'close the event')
        r = R('POST', reg_url, headers=dict(M3), body={'category': 'academic',
                                                        'answers': {'diet': 'none'}})
        tap.ok(problem(r, 409), 'a closed event takes no registration')
        tap.eq(R('DELETE', reg_url + '/' + reg4['id'], headers=M4).status, 409,
               'attendees cannot cancel once it is closed')
        tap.ok(wait_for(lambda: 'event.closed' in R('GET', '/v1/good/seen').json()),
               'event.closed on the bus')

        # ---- deleting ----
        tap.eq(R('DELETE', E, headers=M1).status, 409, 'an event with registrations stays')
        tap.eq(R('DELETE', '/v1/events/' + own['id'], headers=M2).status, 404,
               'a member cannot delete (does not see) another organiser\'s draft')
        tap.eq(R('DELETE', '/v1/events/' + own['id'], headers=M1).status, 204,
               'an organiser deletes an empty draft')
        tap.eq(R('GET', '/v1/events/' + own['id'], headers=A).status, 404, 'gone')
        tap.eq(R('GET', '/v1/events/not-a-uuid').status, 404, 'a malformed id → 404')
        tap.eq(R('DELETE', E + '/organisers/' + m1['id'], headers=A).status, 204,
               'revoke a grant')
        tap.eq(R('PATCH', E, headers=M1, body={'title': 'x'}).status, 403,
               'the former organiser may no longer change it')

        # ---- OpenAPI and metrics ----
        doc = R('GET', '/v1/openapi.json').json()
        paths = doc['paths']
        tap.ok(all(p in paths for p in ('/v1/events', '/v1/events/{id}/registrations',
                                         '/v1/events/{id}/calendar.ics',
                                         '/v1/me/registrations')),
               'the routes are in the OpenAPI document')
        node = os.environ.get('NODE') or shutil.which('node') or shutil.which('nodejs')
        modules = os.environ.get('SP_NODE_MODULES') or os.path.join(SRC, '_build', 'node',
                                                                    'node_modules')
        if node and os.path.isdir(os.path.join(modules, '@seriousme',
                                               'openapi-schema-validator')):
            with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
                json.dump(doc, f)
            p = subprocess.run([node, os.path.join(SRC, 'tests', 'lib', 'validate-openapi.mjs'),
                                f.name], capture_output=True, text=True, timeout=120,
                               env=dict(os.environ, SP_NODE_MODULES=modules, SP_SRCDIR=SRC))
            os.unlink(f.name)
            tap.ok(p.returncode == 0, 'the OpenAPI document with the events routes is valid')
            if p.returncode:
                tap.diag((p.stdout + p.stderr)[-2000:])
        else:
            tap.skip('the OpenAPI document with the events routes is valid',
                     'node or the validator is not installed (contrib/install-deps)')
        tap.ok(S.metric(srv, 'spearhead_events_registrations_promoted_total') >= 2,
               'metrics count promotions')
        tap.eq(srv.stop(), 0, 'clean exit')

tap.done()
