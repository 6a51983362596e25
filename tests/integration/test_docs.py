"""Documentation that must match the program: the configuration reference in
docs/configuration.md is exactly `spearhead check-config --defaults`, and every
command the README names exists and has --help."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from sptest import Tap  # noqa: E402

SRC = os.environ.get('SP_SRCDIR', '.')
BIN = os.environ.get('SPEARHEAD_BIN', './spearhead')
tap = Tap()

with tap.guard('docs'):
    out = subprocess.run([BIN, 'check-config', '--defaults'], capture_output=True, text=True)
    ref = re.sub(r'(?m)^plugin_dir = .*$', 'plugin_dir = $(libdir)/spearhead', out.stdout)
    with open(os.path.join(SRC, 'docs', 'configuration.md'), encoding='utf-8') as f:
        doc = f.read()
    block = doc.split('```ini\n', 1)[1].split('```', 1)[0] if '```ini\n' in doc else ''
    tap.eq(block.strip(), ref.strip(),
           'docs/configuration.md holds the current `check-config --defaults` output')
    with open(os.path.join(SRC, 'README.md'), encoding='utf-8') as f:
        readme = f.read()
    for cmd in sorted(set(re.findall(r'`spearhead ([a-z-]+)', readme))):
        if cmd.startswith('-'):
            continue
        r = subprocess.run([BIN, cmd, '--help'], capture_output=True, text=True)
        tap.ok(r.returncode == 0 and 'Usage' in r.stdout, 'README command `spearhead %s` exists'
               % cmd)
    quick = re.findall(r'```sh\n(.*?)\n```', readme, re.S)
    tap.ok(len(quick) >= 2 and quick[0].count('\n') == 0 and quick[1].count('\n') == 0,
           'the Quick start holds two one-line commands')
    tap.ok(quick[1].strip() == 'contrib/install-deps && tests/run-all',
           'the second one is the test command CI runs')
    ci_run = os.path.join(SRC, '.ci', 'run')
    if os.path.exists(ci_run):
        with open(ci_run, encoding='utf-8') as f:
            ci = f.read()
        tap.ok('contrib/install-deps' in ci and 'tests/run-all' in ci, '.ci/run runs it')
    else:
        tap.skip('.ci/run runs it', 'not in a release tarball')

tap.done()
