"""The e-mail channel (plugin "email") against a real SMTP server on 127.0.0.1
(aiosmtpd, Debian's python3-aiosmtpd): what the server receives is parsed back —
envelope, RFC 5322 headers (Date, Message-ID stable per event, From, To, an RFC 2047
Subject), multipart/alternative with a plain-text and an HTML part, List-Unsubscribe
only for non-essential types, templates by type and language from template_dir over
the built-in ones; a notification through the outbox (notify_tx) reaches both the feed
and the mailbox; a 5xx refusal is final (dead job) while an SMTP server that is down is
retried until it is back; required STARTTLS is never skipped; new settings apply at
run time."""
import email
import email.policy
import email.utils
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from sptest import PgCluster, Server, Tap, wait_for  # noqa: E402

tap = Tap()

try:
    from aiosmtpd.controller import Controller
except ImportError:
    # Debian's python3-aiosmtpd installs for the system interpreter: reach it from any
    # other Python 3 (a pyenv one, say). It is pure Python.
    sys.path.append('/usr/lib/python3/dist-packages')
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        Controller = None
if Controller is None:
    tap.ok(False, 'the SMTP test server aiosmtpd is missing: run contrib/install-deps '
                  '(Debian/Ubuntu package python3-aiosmtpd)')
    tap.done()

BIN = os.environ.get('SPEARHEAD_BIN', './spearhead')
ENV = {'SPEARHEAD_PLUGIN_DIR': os.environ.get('SP_TEST_PLUGINDIR', ''),
       'SPEARHEAD_PLUGINS': 'feed,email',
       'SPEARHEAD_PLUGIN_PATH': os.environ.get('SP_TEST_JOBSDIR', '')}
UNSUB = ('<https://cluster.example/settings/notifications>, '
         '<mailto:unsubscribe@cluster.example?subject=unsubscribe>')


def cli(*args):
    return subprocess.run([BIN] + list(args), capture_output=True, text=True,
                          env=dict(os.environ, **ENV), timeout=120)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Mailbox:
    """aiosmtpd handler: keeps every message; refuses recipients in refuse with 550."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages = []
        self.refuse = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return '550 5.1.1 no such mailbox here'
        envelope.rcpt_tos.append(address)
        return '250 OK'

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                  envelope.original_content))
        return '250 Message accepted for delivery'

    def find(self, event_id):
        """The parsed messages whose X-Spearhead-Event-Id is event_id."""
        with self.lock:
            found = []
            for frm, to, raw in self.messages:
                m = email.message_from_bytes(raw, policy=email.policy.default)
                if m['X-Spearhead-Event-Id'] == event_id:
                    found.append((frm, to, raw, m))
            return found


def smtp_start(box, port):
    c = Controller(box, hostname='127.0.0.1', port=port)
    c.start()
    return c


with tap.guard('email'), PgCluster() as pg:
    url = pg.url()

    def q(sql):
        return pg.psql(sql).strip()

    box = Mailbox()
    port = free_port()
    smtp = smtp_start(box, port)
    tdir = tempfile.mkdtemp(prefix='sp-tmpl-')
    os.makedirs(os.path.join(tdir, 'fr'))
    os.makedirs(os.path.join(tdir, 'en'))
    with open(os.path.join(tdir, 'fr', 'default.subject'), 'w', encoding='utf-8') as f:
        f.write('[FR] {{title}}\n')
    with open(os.path.join(tdir, 'en', 'call.published.subject'), 'w', encoding='utf-8') as f:
        f.write('New call: {{title}}\n')
    config = ('[plugin.email]\nsmtp_host = 127.0.0.1\nsmtp_port = %d\nsmtp_tls = none\n'
              'from_address = noreply@cluster.example\nfrom_name = Innovation Cluster\n'
              'site_name = Health Cluster\nbase_url = https://cluster.example/\n'
              'unsubscribe_mailto = unsubscribe@cluster.example\nretry_s = 1\ntimeout_s = 5\n'
              'template_dir = %s\n' % (port, tdir))

    cli('user', 'add', '--email', 'staff@cluster.example', '--admin', '--database', url)
    admin = {'Authorization': 'Bearer ' + cli('token', 'create', '--email', 'staff@cluster.example',
                                              '--database', url).stdout.strip()}
    ann = q("INSERT INTO sp_users (email, display_name) VALUES ('ann@x.example', 'Anne Müller') "
            "RETURNING id").splitlines()[0]
    gone = q("INSERT INTO sp_users (email) VALUES ('gone@x.example') RETURNING id").splitlines()[0]
    box.refuse.add('gone@x.example')

    def outbox(user, type_, key, title, body='', data='{}'):
        return q("INSERT INTO sp_outbox (type, channel, user_id, dedupe_key, title, body, data) "
                 "VALUES ('%s', 'email', '%s', '%s', '%s', '%s', '%s') RETURNING id"
                 % (type_, user, key, title.replace("'", "''"), body.replace("'", "''"),
                    data)).splitlines()[0]

    def job(outbox_id):
        return q("SELECT state || ':' || attempts || ':' || coalesce(last_error, '') FROM sp_jobs "
                 "WHERE queue = 'deliver.email' AND payload->>'outbox_id' = '%s'" % outbox_id)

    with Server(database=url, args=['--workers', '1'], env=ENV, config_text=config) as srv:
        # ---- a non-essential notification, non-ASCII everywhere ----
        title = 'Appel à projets 6,5 M€ — ouvert jusqu’au 30 juin'
        o1 = outbox(ann, 'call.published', 'c1', title,
                    'Line one with <b>markup</b> & more.\n\nLine two.',
                    '{"url": "https://cluster.example/calls/1"}')
        got = wait_for(lambda: box.find(o1))
        tap.ok(got, 'an e-mail reaches the SMTP server')
        frm, to, raw, m = got[0]
        tap.eq((frm, to), ('noreply@cluster.example', ['ann@x.example']), 'envelope sender and '
               'recipient (the person\'s address from sp_users)')
        tap.eq(str(m['Subject']), 'New call: ' + title,
               'Subject: RFC 2047, decoded back exactly; template by type from template_dir')
        tap.ok(b'=?UTF-8?B?' in raw and all(len(line) <= 78 for line in
                                             raw.split(b'\r\n\r\n', 1)[0].split(b'\r\n')),
               'headers are ASCII encoded words, lines at most 78 characters')
        tap.eq(m['From'].addresses[0].display_name, 'Innovation Cluster', 'From display name')
        tap.eq(m['From'].addresses[0].addr_spec, 'noreply@cluster.example', 'From address')
        tap.eq((m['To'].addresses[0].display_name, m['To'].addresses[0].addr_spec),
               ('Anne Müller', 'ann@x.example'), 'To: the display name (encoded) and address')
        tap.eq(m['Message-ID'], '<%s@cluster.example>' % o1, 'Message-ID from the event id')
        created = float(q("SELECT extract(epoch FROM created_at) FROM sp_outbox WHERE id = '%s'"
                          % o1))
        date = email.utils.parsedate_to_datetime(m['Date']).timestamp()
        tap.ok(abs(date - created) < 1.5, 'Date: the notification\'s time (RFC 5322)')
        tap.eq((m['MIME-Version'], m['Auto-Submitted'], m['Content-Language']),
               ('1.0', 'auto-generated', 'en'), 'MIME-Version, Auto-Submitted, Content-Language')
        tap.eq(m['List-Unsubscribe'], UNSUB, 'List-Unsubscribe: the page and the mailto')
        tap.eq(m.get_content_type(), 'multipart/alternative', 'multipart/alternative')
        parts = list(m.iter_parts())
        tap.eq([(p.get_content_type(), p.get_content_charset(), p['Content-Transfer-Encoding'])
                for p in parts],
               [('text/plain', 'utf-8', 'quoted-printable'),
                ('text/html', 'utf-8', 'quoted-printable')], 'a text and an HTML part, UTF-8')
        text = parts[0].get_content().replace('\r\n', '\n')
        html = parts[1].get_content().replace('\r\n', '\n')
        tap.ok(text.startswith('Hello Anne Müller,\n\n' + title + '\n\nLine one with <b>markup'
                               '</b> & more.\n\nLine two.\n'), 'text part: greeting, title, body')
        tap.ok('Open it: https://cluster.example/calls/1' in text and
               'https://cluster.example/settings/notifications' in text and
               'Health Cluster - https://cluster.example\n' in text,
               'text part: link, where to unsubscribe, site (base_url without its trailing /)')
        tap.ok('<p>Line one with &lt;b&gt;markup&lt;/b&gt; &amp; more.</p>' in html and
               '<p>Line two.</p>' in html, 'HTML part: the body as escaped paragraphs')
        tap.ok('href="https://cluster.example/calls/1"' in html and
               'lang="en"' in html and 'ouvert jusqu’au 30 juin</h1>' in html,
               'HTML part: link, language, title')
        tap.ok(wait_for(lambda: job(o1) == 'done:1:'), 'the job is done after one attempt')
        tap.eq(q("SELECT recipient || ' ' || message_id || ' ' || attempts FROM email_sent "
                 "WHERE outbox_id = '%s'" % o1), 'ann@x.example %s@cluster.example 1' % o1,
               'recorded in email_sent')

        # ---- essential mail, and a language ----
        o2 = outbox(ann, 'security.password_changed', 's1', 'Your password was changed')
        o3 = outbox(ann, 'call.reminder', 'r1', 'Rappel : date limite', 'Plus que 3 jours.',
                    '{"language": "fr"}')
        got2 = wait_for(lambda: box.find(o2))
        got3 = wait_for(lambda: box.find(o3))
        tap.ok(got2 and got2[0][3]['List-Unsubscribe'] is None,
               'essential types (security.*) carry no List-Unsubscribe')
        tap.ok(got2 and 'always sent' in got2[0][3].get_body(('plain',)).get_content(),
               'and say they are always sent')
        tap.ok(got3 and str(got3[0][3]['Subject']) == '[FR] Rappel : date limite',
               'data.language picks the fr subject template from template_dir')
        tap.ok(got3 and got3[0][3]['Content-Language'] == 'fr' and
               'Plus que 3 jours.\r\n' in got3[0][3].get_body(('plain',)).get_content(),
               'other parts fall back to the built-in English templates')

        # ---- through notify_tx: feed and e-mail from one outbox write ----
        r = srv.request('POST', '/v1/jobber/notify', body={'user_id': ann, 'key': 'hello'})
        tap.eq(r.status, 202, 'notify through the outbox in a transaction')
        oid = wait_for(lambda: q("SELECT id FROM sp_outbox WHERE dedupe_key = 'hello' AND "
                                 "channel = 'email'"))
        tap.ok(oid and wait_for(lambda: box.find(oid)), 'the e-mail channel delivers it')
        tap.ok(wait_for(lambda: q("SELECT count(*) FROM feed_items f JOIN sp_outbox o ON o.id = "
                                  "f.outbox_id WHERE o.dedupe_key = 'hello'") == '1'),
               'and the feed channel too')

        # ---- a permanent refusal ----
        o4 = outbox(gone, 'call.published', 'g1', 'Nobody home')
        st = wait_for(lambda: job(o4).startswith('dead:') and job(o4))
        tap.ok(st and st.startswith('dead:1:') and '550' in st,
               'a 5xx reply ends the job at once as dead, with the reply kept: %s' % st)
        tap.eq(box.find(o4), [], 'nothing was delivered')

        # ---- the SMTP server is down, then back ----
        smtp.stop()
        o5 = outbox(ann, 'call.published', 'd1', 'While the relay was down')
        st = wait_for(lambda: job(o5).startswith('pending:2:') and job(o5))
        tap.ok(st, 'the relay down: retried (a second attempt already failed): %s' % st)
        tap.ok(st and 'onnect' in st, 'with the connection error kept')
        smtp = smtp_start(box, port)
        tap.ok(wait_for(lambda: box.find(o5)), 'delivered once the relay is back')
        tap.ok(wait_for(lambda: job(o5).startswith('done:')), 'and the job is done')
        time.sleep(1.0)
        tap.eq(len(box.find(o5)), 1, 'exactly once')

        # ---- settings at run time: required STARTTLS is never skipped ----
        settings = {'smtp_host': '127.0.0.1', 'smtp_port': port, 'smtp_tls': 'starttls',
                    'from_address': 'noreply@cluster.example', 'retry_s': 1, 'timeout_s': 5}
        r = srv.request('PUT', '/v1/plugins/email/settings', headers=admin, body=settings)
        tap.eq(r.status, 200, 'switch to required STARTTLS through the API')
        o6 = outbox(ann, 'call.published', 't1', 'Only over TLS')
        st = wait_for(lambda: job(o6).startswith('pending:') and job(o6))
        tap.ok(st and box.find(o6) == [], 'a relay without STARTTLS gets nothing: %s' % st)
        settings['smtp_tls'] = 'none'
        r = srv.request('PUT', '/v1/plugins/email/settings', headers=admin, body=settings)
        tap.eq(r.status, 200, 'back to plain SMTP')
        got6 = wait_for(lambda: box.find(o6))
        tap.ok(got6, 'the retry then delivers it')
        tap.ok(got6 and got6[0][3]['From'].addresses[0].display_name == 'Innovation Cluster' and
               str(got6[0][3]['Subject']) == 'New call: Only over TLS',
               'settings left out of the API come from the file')
        settings['smtp_tls'] = 'sometimes'
        r = srv.request('PUT', '/v1/plugins/email/settings', headers=admin, body=settings)
        tap.ok(r.status == 200 or r.status == 422, 'a bad smtp_tls value is answered (%d)'
               % r.status)
        tap.ok('new settings refused: smtp_tls' in srv.log_text() or r.status == 422,
               'and refused by the plugin, which keeps the previous settings')
        o7 = outbox(ann, 'call.published', 'after', 'Still working')
        tap.ok(wait_for(lambda: box.find(o7)), 'delivery goes on with the previous settings')
        m = srv.request('GET', '/metrics').text
        tap.ok('spearhead_email_sent_total' in m and 'spearhead_email_failed_total 1' in m,
               'metrics count sent and failed e-mails')
        tap.eq(srv.stop(), 0, 'clean exit')
    smtp.stop()
    shutil.rmtree(tdir, ignore_errors=True)

tap.done()
