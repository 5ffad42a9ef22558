// kpx render over a directory with bad files beside good ones, and over a ConfigMap volume (issue #13).
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runKpx } from './io.js';

const examples = new URL('../../../../examples', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'kpx-render-files-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('one unparsable file, one self-referencing alias, one 200,000-deep JSON file: the valid files render, with three diagnostics, exit 0', async () => {
  const dir = join(tmp, 'mixed');
  cpSync(examples, dir, { recursive: true });
  writeFileSync(join(dir, 'broken.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: {name: [\n');
  writeFileSync(
    join(dir, 'alias.yaml'),
    'apiVersion: v1\nkind: Service\nmetadata: &m {name: loop, namespace: x, labels: *m}\n',
  );
  writeFileSync(join(dir, 'deep.json'), `${'['.repeat(200_000)}${']'.repeat(200_000)}`);
  const clean = await runKpx('render', '--manifests', examples, '--node', 'node-a');
  const started = Date.now();
  const r = await runKpx('render', '--manifests', dir, '--node', 'node-a');
  assert.ok(Date.now() - started < 5000);
  assert.equal(r.code, 0);
  assert.equal(r.out, clean.out);
  const diags = r.err.slice(0, -1).split('\n');
  assert.equal(diags.length, 3, r.err);
  assert.match(
    diags[0] ?? '',
    /^error: .*\/alias\.yaml: .*refers to itself \(a self-referencing alias\); document skipped$/,
  );
  assert.match(diags[1] ?? '', /^error: .*\/broken\.yaml: not valid YAML or JSON: .*\(\d+:\d+\); file skipped$/);
  assert.match(
    diags[2] ?? '',
    /^error: .*\/deep\.json: nested 200000 levels deep, deeper than the limit of 100; file skipped$/,
  );
});

test('a ConfigMap volume (files as symlinks into ..data -> ..<timestamp>/) renders as the real files do', async () => {
  const cm = join(tmp, 'configmap');
  const stamp = '..2026_12_05_01_00_00.000000001';
  mkdirSync(join(cm, stamp), { recursive: true });
  for (const n of readdirSync(examples)) {
    cpSync(join(examples, n), join(cm, stamp, n));
    symlinkSync(join('..data', n), join(cm, n));
  }
  symlinkSync(stamp, join(cm, '..data'));
  for (const args of [[], ['--mode', 'ipvs'], ['--ip-family', 'ipv6']]) {
    const a = await runKpx('render', '--manifests', examples, '--node', 'node-a', ...args);
    const b = await runKpx('render', '--manifests', cm, '--node', 'node-a', ...args);
    assert.equal(b.code, 0, b.err);
    assert.equal(b.err, a.err);
    assert.equal(b.out, a.out);
  }
});
