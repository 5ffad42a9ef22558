// The one loader (issue #13): a bad file is a diagnostic naming it, every other file loads; limits on depth and
// alias expansion; symlinks and the ConfigMap `..data` layout; the same admission for every caller.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { formatDiagnostic } from '../src/diagnostics.js';
import { admitObject, checkObject, loadClusterState, parseManifestText, readManifests } from '../src/manifests.js';
import { IPFamily } from '../src/ip.js';

const tmp = mkdtempSync(join(tmpdir(), 'kpx-loader-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const NODE =
  'apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus: {addresses: [{type: InternalIP, address: 10.0.0.1}]}\n';
const SVC = (name: string, ip: string): string =>
  `apiVersion: v1\nkind: Service\nmetadata: {name: ${name}, namespace: x}\nspec: {clusterIP: ${ip}, ports: [{port: 80}]}\n`;

/** A self-referencing alias, an alias bomb, a 200,000-deep JSON array, a merge key. */
export const HOSTILE = {
  selfAlias: 'apiVersion: v1\nkind: Service\nmetadata: &m {name: loop, namespace: x, labels: *m}\n',
  selfAliasSeq: 'a: &x [*x]\n',
  bomb: `a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n${Array.from(
    { length: 9 },
    (_, i) =>
      `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(9)
        .fill(`*${String.fromCharCode(97 + i)}`)
        .join(',')}]`,
  ).join('\n')}\n`,
  deepJson: `${'['.repeat(200_000)}${']'.repeat(200_000)}`,
  merge:
    'base: &b {port: 80}\napiVersion: v1\nkind: Service\nmetadata: {name: m, namespace: x}\nspec:\n  clusterIP: 10.96.0.9\n  ports: [{<<: *b, name: http}]\n',
  broken: 'apiVersion: v1\nkind: Service\nmetadata: {name: [\n',
};

test('a file that cannot be parsed is one diagnostic naming the file, never a throw', () => {
  const r = parseManifestText(HOSTILE.broken, 'dir/broken.yaml');
  assert.deepEqual(r.objects, []);
  assert.equal(r.diagnostics.length, 1);
  assert.match(
    formatDiagnostic(r.diagnostics[0]!),
    /^error: dir\/broken\.yaml: not valid YAML or JSON: .*\(\d+:\d+\); file skipped$/,
  );
});

test('a self-referencing alias, an alias bomb, a deep JSON array and a merge key: named diagnostics, bounded time', () => {
  for (const [name, text] of Object.entries(HOSTILE)) {
    if (name === 'broken') continue;
    const started = Date.now();
    const r = parseManifestText(text, `${name}.yaml`);
    assert.ok(Date.now() - started < 2000, `${name} took ${Date.now() - started} ms`);
    assert.deepEqual(r.objects, [], name);
    assert.equal(r.diagnostics.length, 1, name);
    const d = r.diagnostics[0]!;
    assert.equal(d.severity, 'error');
    assert.equal(d.source, `${name}.yaml`);
    const want = {
      selfAlias: /refers to itself/,
      selfAliasSeq: /refers to itself/,
      bomb: /alias bomb/,
      deepJson: /nested .*deep/,
      merge: /merge keys/,
    }[name];
    assert.match(d.message, want!, name);
    // Printable on one line whatever the input.
    assert.doesNotMatch(formatDiagnostic(d), /\n/);
  }
});

test("a bad document of a multi-document file is skipped; the file's other documents load", () => {
  const r = parseManifestText(`${NODE}---\n${HOSTILE.selfAlias}---\n${SVC('ok', '10.96.0.1')}`, 'm.yaml');
  assert.deepEqual(
    r.objects.map((o) => o.source),
    ['m.yaml#1', 'm.yaml#3'],
  );
  assert.deepEqual(
    r.diagnostics.map((d) => d.source),
    ['m.yaml#2'],
  );
});

test('a directory with one unparsable file, one self-referencing alias and one 200,000-deep JSON file: the rest loads', async () => {
  const dir = join(tmp, 'mixed');
  mkdirSync(dir);
  writeFileSync(join(dir, 'a-node.yaml'), NODE);
  writeFileSync(join(dir, 'b-broken.yaml'), HOSTILE.broken);
  writeFileSync(join(dir, 'c-alias.yaml'), HOSTILE.selfAlias);
  writeFileSync(join(dir, 'd-deep.json'), HOSTILE.deepJson);
  writeFileSync(join(dir, 'e-svc.yaml'), SVC('web', '10.96.0.1'));
  const r = await readManifests(dir);
  assert.deepEqual(
    r.objects.map((o) => o.source),
    [join(dir, 'a-node.yaml'), join(dir, 'e-svc.yaml')],
  );
  assert.deepEqual(
    r.diagnostics.map((d) => d.source),
    ['b-broken.yaml', 'c-alias.yaml', 'd-deep.json'].map((f) => join(dir, f)),
  );
});

test('a ConfigMap volume (..data symlink, files as symlinks into it) loads as the real files do, each once', async () => {
  const real = join(tmp, 'real');
  mkdirSync(real);
  writeFileSync(join(real, 'nodes.yaml'), NODE);
  writeFileSync(join(real, 'svc.yaml'), SVC('web', '10.96.0.1'));
  const cm = join(tmp, 'configmap');
  mkdirSync(join(cm, '..2026_12_05_01_02_03.123456789'), { recursive: true });
  writeFileSync(join(cm, '..2026_12_05_01_02_03.123456789', 'nodes.yaml'), NODE);
  writeFileSync(join(cm, '..2026_12_05_01_02_03.123456789', 'svc.yaml'), SVC('web', '10.96.0.1'));
  symlinkSync('..2026_12_05_01_02_03.123456789', join(cm, '..data'));
  symlinkSync('..data/nodes.yaml', join(cm, 'nodes.yaml'));
  symlinkSync('..data/svc.yaml', join(cm, 'svc.yaml'));
  const a = await readManifests(real);
  const b = await readManifests(cm);
  assert.deepEqual(b.diagnostics, []);
  assert.deepEqual(
    b.objects.map((o) => o.object),
    a.objects.map((o) => o.object),
  );
  assert.deepEqual(
    b.objects.map((o) => o.source),
    [join(cm, 'nodes.yaml'), join(cm, 'svc.yaml')],
  );
});

test('symlink loops and dangling symlinks are diagnostics; two names for one file are read once', async () => {
  const dir = join(tmp, 'links');
  mkdirSync(dir);
  writeFileSync(join(dir, 'a.yaml'), NODE);
  symlinkSync('a.yaml', join(dir, 'b.yaml'));
  symlinkSync('loop2.yaml', join(dir, 'loop1.yaml'));
  symlinkSync('loop1.yaml', join(dir, 'loop2.yaml'));
  symlinkSync('missing.yaml', join(dir, 'z.yaml'));
  const r = await readManifests(dir);
  assert.equal(r.objects.length, 1);
  assert.deepEqual(
    r.diagnostics.map((d) => [d.source, d.severity, /same file|symlink loop|dangling/.exec(d.message)?.[0]]),
    [
      [join(dir, 'b.yaml'), 'warning', 'same file'],
      [join(dir, 'loop1.yaml'), 'error', 'symlink loop'],
      [join(dir, 'loop2.yaml'), 'error', 'symlink loop'],
      [join(dir, 'z.yaml'), 'warning', 'dangling'],
    ],
  );
});

test('admission: the same verdict for every loader; a wrong or missing apiVersion is an error naming the object', () => {
  assert.equal(admitObject({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'a' } }).kind, 'Service');
  for (const apiVersion of [undefined, 'v2', 'discovery.k8s.io/v1beta1']) {
    const r = checkObject({ apiVersion, kind: 'EndpointSlice', metadata: { name: 'a', namespace: 'x' } }, 'f.yaml');
    assert.equal(r.ok, false);
    assert.equal(r.diagnostics[0]?.field, 'apiVersion');
    assert.match(formatDiagnostic(r.diagnostics[0]), /^error: EndpointSlice x\/a \(f\.yaml\) apiVersion: /);
  }
  assert.equal(checkObject({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'a' } }).ok, false);
  assert.deepEqual(checkObject({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'a' } }).diagnostics, []);
});

test('loadClusterState: diagnostics in a deterministic order, whatever the order of the objects', () => {
  const objects = parseManifestText(
    `${NODE}---\n${SVC('Bad', '10.96.0.1')}---\n${SVC('b', '10.96.0.2')}---\n${SVC('a', '10.96.0.2')}`,
    'f.yaml',
  ).objects;
  const one = loadClusterState(objects);
  const two = loadClusterState([...objects].reverse());
  assert.deepEqual(one.diagnostics, two.diagnostics);
  assert.equal(one.state.servicePorts(IPFamily.IPv4).length, 1);
});
