#!/usr/bin/env python3
"""The example plugin as an integrator builds it: Spearhead is installed into a temporary
root (make install DESTDIR=...), contrib/example-plugin is copied outside the source
tree and built there with its own Makefile against the installed header and
spearhead-plugin.pc only, then loaded through SPEARHEAD_PLUGIN_PATH by real servers."""
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))

from sptest import HarnessError, PgCluster, Server, Tap, wait_for  # noqa: E402

tap = Tap()
HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.realpath(os.environ.get('SP_SRCDIR') or os.path.join(HERE, '..', '..'))
BUILDDIR = os.path.realpath(os.environ.get('SP_BUILDDIR') or os.getcwd())
BINARY = os.environ.get('SPEARHEAD_BIN') or os.path.join(BUILDDIR, 'spearhead')

TMP = tempfile.mkdtemp(prefix='sp-example-', dir='/tmp')
ROOT = os.path.join(TMP, 'root')             # DESTDIR of `make install`
PLUGINS = os.path.join(TMP, 'plugins')       # SPEARHEAD_PLUGIN_PATH
NO_PLUGINS = os.path.join(TMP, 'no-plugins')  # plugin_dir: keep installed plugins out
ABI = '1.0'                                  # read again from the installed header


def finish():
    if os.environ.get('SP_TEST_KEEP', '') not in ('', '0'):
        sys.stderr.write('test_example_plugin: keeping %s\n' % TMP)
    else:
        shutil.rmtree(TMP, ignore_errors=True)
    tap.done()


def under(path, top):
    path, top = os.path.realpath(path), os.path.realpath(top)
    return path == top or path.startswith(top + os.sep)


def clean_env(**extra):
    """The environment for make and pkg-config: nothing inherited from an outer make
    (make check) or from the caller's compiler settings."""
    env = dict(os.environ)
    for k in ('MAKEFLAGS', 'MFLAGS', 'MAKELEVEL', 'MAKEOVERRIDES', 'DESTDIR', 'CFLAGS',
              'CPPFLAGS', 'LDFLAGS', 'LDLIBS', 'PKG_CONFIG', 'PLUGINDIR',
              'PKG_CONFIG_SYSROOT_DIR', 'PKG_CONFIG_LIBDIR'):
        env.pop(k, None)
    env.update(extra)
    return env


def run(argv, env, cwd=None, timeout=600):
    p = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=timeout)
    if p.returncode != 0:
        tap.diag('$ %s (exit %d)' % (' '.join(shlex.quote(a) for a in argv), p.returncode))
        tap.diag((p.stdout + p.stderr)[-3000:])
    return p


def include_dirs(args):
    """The -I directories of a compiler command line (list of words)."""
    dirs = []
    for i, a in enumerate(args):
        if a == '-I' and i + 1 < len(args):
            dirs.append(args[i + 1])
        elif a.startswith('-I'):
            dirs.append(a[2:])
    return dirs


def greeting_of(srv):
    r = srv.request('GET', '/v1/example/greetings/1')
    return r.json().get('greeting') if r.status == 200 else None


def last_message(srv):
    r = srv.request('GET', '/v1/example/last-event')
    if r.status != 200:
        return None
    ev = r.json().get('event') or {}
    return (ev.get('data') or {}).get('message')


# ---------------------------------------------------------------- install and build

PKG = shutil.which('pkg-config')
if not tap.ok(PKG, 'pkg-config is installed (contrib/install-deps installs it)'):
    tap.diag('pkg-config not found in PATH: plugins are built with `pkg-config --cflags '
             'spearhead-plugin`; install it (apt-get install pkg-config) and run again')
    finish()

built = False
pc_env = None
with tap.guard('install Spearhead into a temporary root'):
    tap.ok(not under(TMP, SRCDIR) and not under(TMP, BUILDDIR),
           'the temporary directory is outside the source and build trees')
    p = run(['make', '-C', BUILDDIR, 'install', 'DESTDIR=' + ROOT], clean_env())
    tap.eq(p.returncode, 0, 'make install DESTDIR=<tmp> succeeds')
    pcs = [os.path.join(d, f) for d, _, files in os.walk(ROOT) for f in files
           if f == 'spearhead-plugin.pc']
    tap.eq(len(pcs), 1, 'spearhead-plugin.pc is installed')
    headers = [os.path.join(d, f) for d, _, files in os.walk(ROOT) for f in files
               if f == 'plugin.h' and os.path.basename(d) == 'spearhead']
    tap.eq(len(headers), 1, 'spearhead/plugin.h is installed')
    # The .pc file holds the real prefix (/usr/local by default): the sysroot makes
    # pkg-config point into the temporary root instead.
    pc_env = clean_env(PKG_CONFIG_PATH=os.path.dirname(pcs[0]), PKG_CONFIG_SYSROOT_DIR=ROOT)
    p = run([PKG, '--cflags', 'spearhead-plugin'], pc_env)
    tap.eq(p.returncode, 0, 'pkg-config --cflags spearhead-plugin succeeds')
    dirs = include_dirs(shlex.split(p.stdout))
    hits = [d for d in dirs if os.path.isfile(os.path.join(d, 'spearhead', 'plugin.h'))]
    tap.ok(hits and all(under(d, ROOT) for d in hits),
           'pkg-config --cflags points at the installed header (%s)' % p.stdout.strip())
    tap.ok(not any(under(d, SRCDIR) or under(d, BUILDDIR) for d in dirs),
           'pkg-config --cflags has no -I into the source or build tree')
    with open(headers[0], 'rb') as a, \
            open(os.path.join(SRCDIR, 'core', 'include', 'spearhead', 'plugin.h'), 'rb') as b:
        text = a.read()
        tap.ok(text == b.read(), 'the installed header is core/include/spearhead/plugin.h')
    # The ABI the plugin is built for: "1.0" for plugin API v1.0.
    m = [re.search(rb'#define\s+SP_ABI_%s\s+(\d+)' % k, text) for k in (b'MAJOR', b'MINOR')]
    if all(m):
        ABI = '%s.%s' % (m[0].group(1).decode(), m[1].group(1).decode())

with tap.guard('build the example plugin out of tree'):
    if pc_env is None:
        raise HarnessError('Spearhead was not installed')
    work = os.path.join(TMP, 'example-plugin')
    shutil.copytree(os.path.join(SRCDIR, 'contrib', 'example-plugin'), work,
                    ignore=shutil.ignore_patterns('*.so', '*.o'))
    p = run(['make'], pc_env, cwd=work)
    tap.eq(p.returncode, 0, 'make builds example.so (-Wall -Wextra -Werror -std=c11)')
    tap.ok(os.path.isfile(os.path.join(work, 'example.so')), 'example.so exists')
    compile_lines = [shlex.split(line) for line in p.stdout.splitlines() if 'example.c' in line]
    tap.eq(len(compile_lines), 1, 'one compile command for example.c')
    args = compile_lines[0] if compile_lines else []
    for flag in ('-std=c11', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC'):
        tap.ok(flag in args, 'the compile command has %s' % flag)
    dirs = include_dirs(args)
    tap.ok(any(under(d, ROOT) for d in dirs), 'the compile command includes from the install')
    tap.ok(not any(under(d, SRCDIR) or under(d, BUILDDIR) for d in dirs),
           'the compile command has no -I into the source or build tree (%s)'
           % ' '.join('-I' + d for d in dirs))
    # -H lists every header the compiler opened: the plugin header must be the installed one.
    p = run(['make', '-B', 'CPPFLAGS=-H'], pc_env, cwd=work)
    used = [line.lstrip('. ').strip() for line in p.stderr.splitlines()
            if line.rstrip().endswith('spearhead/plugin.h')]
    tap.ok(p.returncode == 0 and used and all(under(u, ROOT) for u in used),
           'the compiler reads spearhead/plugin.h from the install (%s)' % ', '.join(used))

    p = run([PKG, '--variable=plugindir', 'spearhead-plugin'], pc_env)
    plugindir = p.stdout.strip()
    if plugindir and under(plugindir, ROOT):
        p = run(['make', 'install'], pc_env, cwd=work)
        tap.ok(p.returncode == 0 and os.path.isfile(os.path.join(plugindir, 'example.so')),
               'make install copies example.so to pkg-config\'s plugindir')
    else:
        tap.skip('make install to pkg-config\'s plugindir',
                 'plugindir %s is outside the temporary root' % plugindir)
    p = run(['make', 'install', 'PLUGINDIR=' + PLUGINS], pc_env, cwd=work)
    tap.ok(p.returncode == 0 and os.path.isfile(os.path.join(PLUGINS, 'example.so')),
           'make install PLUGINDIR=<dir> copies example.so there')
    p = run(['nm', '-D', '--defined-only', os.path.join(PLUGINS, 'example.so')], clean_env())
    if p.returncode == 0:
        tap.ok(re.search(r'\bsp_plugin_example\b', p.stdout),
               'example.so exports the descriptor sp_plugin_example')
    built = os.path.isfile(os.path.join(PLUGINS, 'example.so'))

if not built:
    finish()

# ---------------------------------------------------------------- the plugin at work

SERVER_ENV = {
    'SPEARHEAD_PLUGIN_PATH': PLUGINS,
    'SPEARHEAD_PLUGIN_DIR': NO_PLUGINS,
    'SPEARHEAD_PLUGINS': None,
}

with tap.guard('spearhead plugins (CLI)'):
    env = dict(os.environ)
    env.update({k: v for k, v in SERVER_ENV.items() if v is not None})
    env.pop('SPEARHEAD_PLUGINS', None)
    p = run([BINARY, 'plugins'], env, cwd=TMP, timeout=60)
    tap.eq(p.returncode, 0, 'spearhead plugins exits 0')
    line = [ln for ln in p.stdout.splitlines() if ln.split()[:1] == ['example']]
    tap.ok(line and re.match(r'example\s+1\.0\.0\s+%s\s+(loaded|running)\b' % re.escape(ABI),
                             line[0]),
           'spearhead plugins lists example 1.0.0, ABI %s, loaded (%r)'
           % (ABI, line[0] if line else p.stdout))
    p = run([BINARY, 'plugins', '--json'], env, cwd=TMP, timeout=60)
    items = json.loads(p.stdout).get('items', []) if p.returncode == 0 else []
    tap.ok([i for i in items if i.get('name') == 'example' and i.get('abi') == ABI],
           'spearhead plugins --json has example with abi %s' % ABI)

try:
    pg = PgCluster()
except HarnessError as e:
    tap.skip('the example plugin in a server', str(e).replace('\n', ' '))
    finish()

with tap.guard('the example plugin in a server'), pg, \
        Server(database=pg, env=SERVER_ENV, args=['--workers', '1']) as srv:
    r = srv.request('GET', '/v1/plugins')
    tap.eq(r.status, 200, 'GET /v1/plugins is 200')
    ex = [i for i in r.json().get('items', []) if i.get('name') == 'example']
    tap.eq(len(ex), 1, 'GET /v1/plugins lists example once')
    ex = ex[0] if ex else {}
    tap.eq((ex.get('status'), ex.get('abi'), ex.get('version')), ('running', ABI, '1.0.0'),
           'example is running, ABI %s, version 1.0.0' % ABI)
    tap.ok({'method': 'GET', 'path': '/v1/example/greetings/{id}'} in ex.get('routes', []),
           'its routes are listed')

    r = srv.request('GET', '/v1/example/greetings/1')
    tap.eq(r.status, 200, 'GET /v1/example/greetings/1 is 200')
    tap.eq(r.json() if r.status == 200 else r.text,
           {'id': 1, 'text': 'Welcome to the cluster', 'greeting': 'Hello'},
           'the row from the migration, with the default greeting')
    tap.ok(r.headers.get('Content-Type', '').startswith('application/json'),
           'answered as application/json')

    r = srv.request('GET', '/v1/example/greetings/999')
    tap.eq(r.status, 404, 'GET /v1/example/greetings/999 is 404')
    tap.eq(r.headers.get('Content-Type'), 'application/problem+json', 'as problem+json')
    body = r.json()
    tap.eq((body.get('status'), body.get('title')), (404, 'Greeting not found'),
           'the problem has status and title')
    tap.ok('999' in body.get('detail', ''), 'the detail names the id')

    for bad in ('abc', '1x', '%201', '99999999999', '1.5'):
        r = srv.request('GET', '/v1/example/greetings/' + bad)
        tap.ok(r.status == 400 and r.headers.get('Content-Type') == 'application/problem+json',
               'GET /v1/example/greetings/%s is a 400 problem (got %d)' % (bad, r.status))
    r = srv.request('GET', '/v1/example/greetings/-1')
    tap.eq(r.status, 404, 'a negative integer id is valid, and absent: 404')

    r = srv.request('GET', '/v1/example/last-event')
    tap.eq((r.status, r.json()), (200, {'count': 0, 'event': None}),
           'no event seen before the first echo')

    r = srv.request('POST', '/v1/example/echo', body={'message': 'Grüße aus dem Cluster'})
    tap.ok(200 <= r.status < 300, 'POST /v1/example/echo with a valid message is 2xx (%d)'
           % r.status)
    tap.eq(r.json().get('event') if r.status < 300 else None, 'example.echoed',
           'it names the event emitted')
    tap.eq(wait_for(lambda: last_message(srv)), 'Grüße aus dem Cluster',
           'GET /v1/example/last-event then shows the echoed message')
    r = srv.request('GET', '/v1/example/last-event')
    tap.eq((r.json().get('count'), r.json().get('event', {}).get('type')),
           (1, 'example.echoed'), 'one event counted, of type example.echoed')
    r = srv.request('GET', '/metrics')
    m = re.search(r'^spearhead_example_events_total (\S+)$', r.text, re.M)
    tap.ok(m and float(m.group(1)) == 1.0, 'the counter spearhead_example_events_total is 1')

    invalid = [
        ({}, 'message', 'is required'),
        ({'message': ''}, 'message', '1 to 200'),
        ({'message': 'x' * 201}, 'message', '1 to 200'),
        ({'message': 42}, 'message', 'string'),
        ({'message': 'hi', 'extra': 1}, 'extra', 'unknown'),
        ([1, 2], '', 'object'),
    ]
    for payload, field, words in invalid:
        r = srv.request('POST', '/v1/example/echo', body=payload)
        errors = r.json().get('errors', {}) if r.status == 422 else {}
        if not tap.ok(r.status == 422
                      and r.headers.get('Content-Type') == 'application/problem+json'
                      and words in errors.get(field, ''),
                      'echo %s is 422 with errors[%r]' % (json.dumps(payload)[:30], field)):
            tap.diag('%d %s' % (r.status, r.text[:300]))
    r = srv.request('POST', '/v1/example/echo', body={'message': 'é' * 200})
    tap.ok(200 <= r.status < 300, '200 two-byte characters are 200 characters, not 400 bytes')
    r = srv.request('POST', '/v1/example/echo', raw='{"message":',
                    headers={'Content-Type': 'application/json'})
    tap.eq(r.status, 400, 'malformed JSON is answered 400 by the core')
    r = srv.request('POST', '/v1/example/echo', body='message=hi',
                    headers={'Content-Type': 'text/plain'})
    tap.eq(r.status, 415, 'a non-JSON body is answered 415 by the core')

    r = srv.request('GET', '/v1/openapi.json')
    paths = r.json().get('paths', {}) if r.status == 200 else {}
    tap.ok('get' in paths.get('/v1/example/greetings/{id}', {}),
           'the OpenAPI document has GET /v1/example/greetings/{id}')
    echo = paths.get('/v1/example/echo', {}).get('post', {})
    schema = echo.get('requestBody', {}).get('content', {}).get('application/json', {})
    tap.eq(schema.get('schema', {}).get('required'), ['message'],
           'the OpenAPI document has the echo request schema')
    tap.ok('get' in paths.get('/v1/example/last-event', {}),
           'the OpenAPI document has GET /v1/example/last-event')

    # A second instance on the same database, with a config file: its greeting comes from
    # [plugin.example], and bus events reach it from the first instance through NOTIFY.
    conf = '# test\n[plugin.example]\ngreeting = Hi\n'
    with Server(database=pg, env=SERVER_ENV, args=['--workers', '1'],
                config_text=conf) as srv2:
        tap.eq(greeting_of(srv2), 'Hi', '[plugin.example] greeting = Hi changes the greeting')
        tap.eq(greeting_of(srv), 'Hello', 'the first instance keeps its own file settings')

        def cross():
            srv.request('POST', '/v1/example/echo', body={'message': 'to every instance'})
            return wait_for(lambda: last_message(srv2) == 'to every instance', timeout=0.5)
        tap.ok(wait_for(cross, timeout=20), 'an event emitted on one instance reaches the '
               'subscriber of another (PostgreSQL NOTIFY)')

        # SIGHUP re-reads the file: reload() applies the new greeting without a restart.
        with open(srv2.config_path, 'w', encoding='utf-8') as f:
            f.write('[plugin.example]\ngreeting = Good morning\n')
        srv2.signal(signal.SIGHUP)
        tap.eq(wait_for(lambda: greeting_of(srv2) == 'Good morning' and 'Good morning'),
               'Good morning', 'after SIGHUP, reload() applies the new greeting')
        tap.ok('greeting changed from' in srv2.log_text(), 'reload() logged the change')
        tap.ok(re.search(r'plugin=example .*greeting changed', srv2.log_text()),
               'plugin log lines carry plugin=example')

        # Admins store settings through the API: validated by the plugin's schema, applied
        # on every instance, and stronger than the file.
        path = '/v1/plugins/example/settings'
        tap.eq(srv.request('PUT', path, body={'greeting': 'Hey'}).status, 401,
               'PUT %s needs a token' % path)
        env = dict(os.environ, **{k: v for k, v in SERVER_ENV.items() if v is not None})
        p = run([BINARY, 'user', 'add', '--email', 'admin@example.org', '--admin',
                 '--database', pg.url()], env, cwd=TMP, timeout=120)
        p = run([BINARY, 'token', 'create', '--email', 'admin@example.org',
                 '--database', pg.url()], env, cwd=TMP, timeout=120)
        admin = {'Authorization': 'Bearer ' + p.stdout.strip()}
        r = srv.request('GET', path, headers=admin)
        tap.eq((r.status, r.json().get('settings') if r.status == 200 else None),
               (200, {'greeting': 'Hello'}), 'an admin reads the effective settings')
        r = srv.request('PUT', path, headers=admin, body={'greeting': ''})
        tap.ok(r.status == 422 and 'greeting' in r.json().get('errors', {}),
               'an empty greeting is refused with errors.greeting (%d)' % r.status)
        r = srv.request('PUT', path, headers=admin, body={'greeting': 'Hey'})
        tap.eq(r.status, 200, 'a valid greeting is stored')
        tap.eq(greeting_of(srv), 'Hey', 'and applied at once through reload()')
        tap.eq(wait_for(lambda: greeting_of(srv2) == 'Hey' and 'Hey'), 'Hey',
               'on the other instance too, over its [plugin.example] file setting')
        r = srv.request('PUT', path, headers=admin, body={})
        tap.eq(r.status, 200, 'PUT {} replaces the stored settings with none')
        tap.eq(wait_for(lambda: greeting_of(srv2) == 'Good morning' and 'Good morning'),
               'Good morning', 'the file setting applies again')
        tap.eq(greeting_of(srv), 'Hello', 'and the default where there is no file setting')

    # A value outside the schema at start: the plugin is left out (rather than run with
    # settings the operator did not mean), the rest runs, and the log and /v1/plugins say why.
    conf = '[plugin.example]\ngreeting = %s\n' % ('x' * 81)
    with Server(database=pg, env=SERVER_ENV, args=['--workers', '1'],
                config_text=conf) as srv3:
        plugins = {p['name']: p for p in srv3.request('GET', '/v1/plugins').json()['items']}
        tap.eq(plugins['example']['status'], 'failed',
               'a greeting longer than 80 in the config file leaves the plugin out')
        tap.ok('invalid settings' in plugins['example'].get('error', ''),
               '/v1/plugins gives the reason')
        tap.ok('invalid settings in [plugin.example]' in srv3.log_text(),
               'the refusal is logged')
        tap.eq(srv3.request('GET', '/health').status, 200, 'the core keeps running')

    tap.eq(pg.psql("SELECT count(*) FROM sp_schema_migrations WHERE component = "
                   "'plugin:example' AND status = 'applied'").strip(), '1',
           'the migration is recorded once, for component plugin:example')

finish()
