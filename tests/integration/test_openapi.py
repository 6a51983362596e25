"""GET /v1/openapi.json against a standard OpenAPI validator: the document served by a
running server (core routes plus the fixture plugins) must pass
@seriousme/openapi-schema-validator (the official OpenAPI 3.1 JSON schema) and the
checks of tests/lib/validate-openapi.mjs, and must describe every core route and every
route of a running plugin (as listed by GET /v1/plugins) with its method. Broken copies
of the document must be reported invalid, so the check is known to be able to fail.

Needs node and the validator (contrib/install-deps installs both into _build/node);
without them the test fails, it does not skip. Environment: SP_NODE_MODULES (where the
validator is; default $SP_SRCDIR/_build/node/node_modules), NODE (the node binary)."""
import copy
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))
from sptest import PgCluster, Server, Tap  # noqa: E402

FIXTURES = os.environ.get('SP_TEST_FIXTUREDIR', '')
SRCDIR = os.environ.get('SP_SRCDIR') or os.path.normpath(os.path.join(HERE, '..', '..'))
VALIDATOR = os.path.join(SRCDIR, 'tests', 'lib', 'validate-openapi.mjs')
PKG = '@seriousme/openapi-schema-validator'
NODE_MODULES = os.environ.get('SP_NODE_MODULES') or \
    os.path.join(SRCDIR, '_build', 'node', 'node_modules')
INSTALL_HINT = 'run contrib/install-deps (installs node and %s into _build/node)' % PKG
METHODS = ('get', 'put', 'post', 'delete', 'patch')

tap = Tap()
tmpdir = tempfile.mkdtemp(prefix='sp-openapi-')


def validator_setup():
    """(node path, None) or (None, why the validator cannot run)."""
    node = os.environ.get('NODE') or shutil.which('node') or shutil.which('nodejs')
    if not node:
        return None, 'node is not installed: ' + INSTALL_HINT
    if not os.path.isdir(os.path.join(NODE_MODULES, *PKG.split('/'))):
        return None, '%s is not installed in %s: %s' % (PKG, NODE_MODULES, INSTALL_HINT)
    return node, None


def validate(node, doc, name):
    """Runs the validator on doc (written to a temp file); returns (exit code, output)."""
    path = os.path.join(tmpdir, name)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(doc, f, indent=1)
    env = dict(os.environ, SP_NODE_MODULES=NODE_MODULES, SP_SRCDIR=SRCDIR)
    p = subprocess.run([node, VALIDATOR, path], capture_output=True, text=True, timeout=120,
                       env=env)
    return p.returncode, (p.stdout + p.stderr).strip()


def core_routes():
    """(METHOD, pattern) of every entry of the core's route tables in core/*.c."""
    found = set()
    entry = re.compile(r'\{\s*"(GET|POST|PUT|PATCH|DELETE)"\s*,\s*"(/[^"]*)"')
    for src in sorted(glob.glob(os.path.join(SRCDIR, 'core', '*.c'))):
        with open(src, encoding='utf-8') as f:
            found.update(entry.findall(f.read()))
    return found


def described(paths, method, pattern):
    item = paths.get(pattern)
    return isinstance(item, dict) and isinstance(item.get(method.lower()), dict)


node, why = validator_setup()
if not tap.ok(node is not None, 'node and %s are installed' % PKG):
    tap.diag(why)

with tap.guard('OpenAPI document'), PgCluster() as pg, \
        Server(database=pg, args=['--workers', '1'],
               env={'SPEARHEAD_PLUGIN_PATH': FIXTURES,
                    'SPEARHEAD_PLUGIN_DIR': '/nonexistent'}) as srv:
    r = srv.request('GET', '/v1/openapi.json')
    tap.eq(r.status, 200, 'GET /v1/openapi.json')
    tap.ok((r.headers.get('Content-Type') or '').startswith('application/json'),
           'served as application/json')
    doc = r.json()
    paths = doc.get('paths') or {}

    # The standard validator.
    if node:
        code, out = validate(node, doc, 'openapi.json')
        if not tap.eq(code, 0, 'the served document passes the OpenAPI validator'):
            tap.diag(out)

        # Broken copies must be rejected (the check can fail).
        broken = copy.deepcopy(doc)
        del broken['info']
        code, out = validate(node, broken, 'no-info.json')
        tap.eq(code, 1, 'a copy without "info" is reported invalid')
        tap.ok('info' in out, 'the report names the missing "info" (%s)' % out[:200])

        broken = copy.deepcopy(doc)
        broken['paths']['/health']['get']['responses'] = {'200': {'content': {}}}
        code, out = validate(node, broken, 'no-description.json')
        tap.eq(code, 1, 'a response without "description" is reported invalid')

        broken = copy.deepcopy(doc)
        broken['paths']['/health']['get']['responses']['200']['content'] = {
            'application/json': {'schema': {'type': 'objekt'}}}
        code, out = validate(node, broken, 'bad-schema.json')
        tap.eq(code, 1, 'a Schema Object that is not JSON Schema is reported invalid')

        broken = copy.deepcopy(doc)
        broken['paths']['/v1/plugins/{name}'].pop('parameters', None)
        for m in METHODS:
            if m in broken['paths']['/v1/plugins/{name}']:
                broken['paths']['/v1/plugins/{name}'][m].pop('parameters', None)
        code, out = validate(node, broken, 'no-path-param.json')
        tap.eq(code, 1, 'an undeclared path parameter is reported invalid')
    else:
        tap.ok(False, 'the served document passes the OpenAPI validator: cannot run it: '
               + why)

    # Every core route, with its method.
    core = core_routes()
    tap.ok({('GET', '/health'), ('GET', '/v1/openapi.json'),
            ('PUT', '/v1/plugins/{name}/settings')} <= core,
           'core route tables found in %s/core (%d routes)' % (SRCDIR, len(core)))
    missing = sorted('%s %s' % mr for mr in core if not described(paths, *mr))
    tap.eq(missing, [], 'every core route is described with its method')

    # Every route of a running plugin, as GET /v1/plugins reports them.
    r = srv.request('GET', '/v1/plugins')
    tap.eq(r.status, 200, 'GET /v1/plugins')
    plugins = r.json().get('items') or []
    running = [p for p in plugins if p.get('status') == 'running']
    proutes = [(rt['method'], rt['path'], p['name']) for p in running
               for rt in p.get('routes') or []]
    tap.ok(any(name == 'good' for _, _, name in proutes),
           'the fixture plugin "good" runs and has routes (%d plugin routes)' % len(proutes))
    missing = sorted('%s %s (%s)' % x for x in proutes if not described(paths, x[0], x[1]))
    tap.eq(missing, [], 'every route of a running plugin is described with its method')
    for p in plugins:
        if p.get('status') != 'running':
            tap.eq(p.get('routes'), [], 'plugin %s (%s) has no routes left'
                   % (p.get('name'), p.get('status')))

    # And nothing else: every described operation is a route of the router.
    known = {(m, pat) for m, pat in core} | {(m, pat) for m, pat, _ in proutes}
    extra = sorted('%s %s' % (m.upper(), pat) for pat, item in paths.items()
                   for m in METHODS if isinstance(item, dict) and m in item
                   and (m.upper(), pat) not in known)
    tap.eq(extra, [], 'no operation is described that is not a route')

    code = srv.stop()
    tap.eq(code, 0, 'server exits 0 on SIGTERM')

if os.environ.get('SP_TEST_KEEP', '') in ('', '0'):
    shutil.rmtree(tmpdir, ignore_errors=True)
tap.done()
