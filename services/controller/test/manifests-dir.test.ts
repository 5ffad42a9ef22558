// The manifests-directory source: initial state, watched changes, broken files, removed files; and with the
// pipeline behind it, which changes create a generation.
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, readdir, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { IPFamily } from '@kpx/model';
import { defaultIptablesOptions } from '@kpx/compiler';
import type { Delta } from '@kpx/proto';
import { trace } from '@opentelemetry/api';
import {
  ControllerPipeline,
  ManifestsDirSource,
  MemoryGenerationStore,
  type SourceEvent,
  type SourceHandler,
} from '../src/index.js';

const examples = new URL('../../../../examples/', import.meta.url).pathname;

class Recorder implements SourceHandler {
  events: SourceEvent[] = [];
  warnings: string[] = [];
  synced = 0;
  onEvent(e: SourceEvent): void {
    this.events.push(e);
  }
  onSynced(): void {
    this.synced++;
  }
  onWarning(message: string): void {
    this.warnings.push(message);
  }
  take(): string[] {
    const out = this.events.map(
      (e) => `${e.type} ${e.kind} ${e.object.metadata?.namespace ?? ''}/${e.object.metadata?.name ?? ''}`,
    );
    this.events = [];
    return out;
  }
}

async function copyExamples(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'kpx-manifests-'));
  await cp(examples, dir, { recursive: true });
  return dir;
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('initial state, then only what changed: edits, broken files, removed files, duplicates', async (t) => {
  const dir = await copyExamples();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const rec = new Recorder();
  const source = new ManifestsDirSource({ dir, rescanMs: 0 });
  t.after(() => source.stop());
  await source.start(rec);
  assert.equal(rec.synced, 1);
  const initial = rec.take();
  assert.ok(initial.includes('upsert EndpointSlice shop/web-abc12'));
  assert.ok(initial.includes('upsert Node /node-a'));
  assert.ok(initial.every((e) => e.startsWith('upsert ')));

  const web = join(dir, 'web.yaml');
  const original = await readFile(web, 'utf8');
  await writeFile(web, original.replace('10.244.1.10]', '10.244.1.77]'));
  await source.rescan();
  assert.deepEqual(rec.take(), ['upsert EndpointSlice shop/web-abc12'], 'only the edited object');

  // A half-written file is reported and deletes nothing.
  await writeFile(web, original.slice(0, original.indexOf('endpoints:')) + 'endpoints: [ {');
  await source.rescan();
  assert.deepEqual(rec.take(), []);
  assert.equal(rec.warnings.length, 1);
  assert.match(
    rec.warnings[0] ?? '',
    /^keeping the previous objects of .*web\.yaml: .*web\.yaml: not valid YAML or JSON: .*\(\d+:\d+\)$/,
  );
  await source.rescan();
  assert.equal(rec.warnings.length, 1, 'a broken file is reported once');

  await writeFile(web, original);
  await source.rescan();
  assert.deepEqual(rec.take(), ['upsert EndpointSlice shop/web-abc12']);

  // The same object in a second file: the later file (name order) wins, with a warning.
  await writeFile(
    join(dir, 'zz-override.json'),
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'node-c', labels: { 'topology.kubernetes.io/zone': 'zone-9' } },
    }),
  );
  await source.rescan();
  assert.deepEqual(rec.take(), ['upsert Node /node-c']);
  assert.match(rec.warnings.at(-1) ?? '', /Node\/\/node-c is also defined in .*nodes\.yaml/);

  await unlink(join(dir, 'web.yaml'));
  await source.rescan();
  assert.deepEqual(rec.take().sort(), [
    'delete EndpointSlice shop/web-abc12',
    'delete EndpointSlice shop/web-v6xyz',
    'delete Service shop/web',
  ]);
});

test('a missing directory is an error at start', async () => {
  const source = new ManifestsDirSource({ dir: join(tmpdir(), 'kpx-no-such-dir-' + process.pid) });
  await assert.rejects(source.start(new Recorder()), /ENOENT/);
});

test('file changes are noticed by the watcher; only rule changes make a generation', async (t) => {
  const dir = await copyExamples();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const published: Delta[] = [];
  const p = new ControllerPipeline({
    families: new Map([[IPFamily.IPv4, defaultIptablesOptions(IPFamily.IPv4)]]),
    sink: { publish: (delta) => (published.push(delta), Promise.resolve()) },
    generations: new MemoryGenerationStore(),
    minSyncPeriodMs: 0,
    logger: { info: () => {}, warn: () => {}, error: () => {} },
    tracer: trace.getTracer('test'),
  });
  t.after(() => p.stop());
  // No periodic rescan: the fs watcher alone must see the edits.
  const source = new ManifestsDirSource({ dir, debounceMs: 20, rescanMs: 0 });
  t.after(() => source.stop());
  let events = 0;
  await source.start({ onEvent: (e) => (events++, p.onEvent(e)), onSynced: () => p.onSynced() });
  await p.settle();
  assert.equal(p.generation, 1);
  assert.deepEqual(published.map((d) => d.node).sort(), ['node-a', 'node-b', 'node-c']);
  published.length = 0;

  const web = join(dir, 'web.yaml');
  const original = await readFile(web, 'utf8');
  // A label on the Service changes no rule: no generation.
  const seen = events;
  await writeFile(
    web,
    original.replace(
      'metadata: { name: web, namespace: shop }',
      'metadata: { name: web, namespace: shop, labels: { team: shop } }',
    ),
  );
  await waitFor(() => events === seen + 1);
  await p.settle();
  assert.equal(p.generation, 1, 'no generation for a label');
  assert.equal(published.length, 0);

  await writeFile(web, original.replace('10.244.1.10]', '10.244.1.77]'));
  await waitFor(() => p.generation === 2);
  await p.settle();
  assert.deepEqual(published.map((d) => d.node).sort(), ['node-a', 'node-b', 'node-c']);
  for (const d of published)
    assert.ok(
      d.upserts.every((u) => /KUBE-(SVC|SEP)-/.test(u.key)),
      d.upserts.map((u) => u.key).join(' '),
    );
  assert.ok(published.every((d) => d.cause.some((c) => c.kind === 'EndpointSlice' && c.name === 'web-abc12')));
});

/** What the source delivers from a directory: the events, sorted, with their objects. */
async function deliveredFrom(
  dir: string,
): Promise<{ events: string[]; objects: Map<string, string>; warnings: string[]; sources: string[] }> {
  const rec = new Recorder();
  const source = new ManifestsDirSource({ dir, rescanMs: 0 });
  await source.start(rec);
  await source.stop();
  const objects = new Map(
    rec.events.map((e) => [
      `${e.kind} ${e.object.metadata?.namespace ?? ''}/${e.object.metadata?.name ?? ''}`,
      JSON.stringify(e.object),
    ]),
  );
  const sources = rec.events.map((e) => e.source ?? '');
  return { events: rec.take().sort(), objects, warnings: rec.warnings, sources };
}

test('an unparsable file, a self-referencing alias and a 200,000-deep JSON file beside valid files: the valid files are delivered, each bad one named once', async (t) => {
  const dir = await copyExamples();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const clean = await deliveredFrom(dir);
  await writeFile(join(dir, 'broken.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: {name: [\n');
  await writeFile(
    join(dir, 'alias.yaml'),
    'apiVersion: v1\nkind: Service\nmetadata: &m {name: loop, namespace: x, labels: *m}\n',
  );
  await writeFile(join(dir, 'deep.json'), `${'['.repeat(200_000)}${']'.repeat(200_000)}`);
  const started = Date.now();
  const got = await deliveredFrom(dir);
  assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
  assert.deepEqual(got.events, clean.events);
  assert.deepEqual(got.objects, clean.objects);
  assert.equal(got.warnings.length, 3, got.warnings.join('\n'));
  for (const [file, why] of [
    ['alias.yaml', /refers to itself/],
    ['broken.yaml', /not valid YAML/],
    ['deep.json', /deeper than the limit/],
  ] as const) {
    assert.ok(
      got.warnings.some((w) => w.startsWith(`error: ${join(dir, file)}`) && why.test(w)),
      `${file}: ${got.warnings.join('\n')}`,
    );
  }
  // Each event names the file its object came from (the pipeline's diagnostics name it too).
  assert.ok(
    got.sources.every((s) => s.startsWith(dir)),
    got.sources.join(' '),
  );
});

test('a Service whose name or port name holds a newline, a quote or a space is not delivered; the diagnostic names file, object and field', async (t) => {
  const dir = await copyExamples();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const clean = await deliveredFrom(dir);
  const svc = (name: string, portName: string): object => ({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'shop' },
    spec: { clusterIP: '10.96.9.9', ports: [{ name: portName, port: 80 }] },
  });
  const evil = ['x\n*filter\n-A INPUT -j DROP\nCOMMIT', 'x"y', 'x y'];
  await writeFile(
    join(dir, 'evil.json'),
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: [...evil.map((e) => svc(e, 'http')), ...evil.map((e, i) => svc(`ok${i}`, e))],
    }),
  );
  // And one wrong apiVersion: the controller now refuses what render refuses.
  await writeFile(
    join(dir, 'old.yaml'),
    'apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata: {name: old, namespace: shop, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\n',
  );
  const got = await deliveredFrom(dir);
  assert.deepEqual(got.events, clean.events);
  assert.equal(got.warnings.length, 7, got.warnings.join('\n'));
  for (const w of got.warnings) assert.doesNotMatch(w, /\n/);
  assert.equal(
    got.warnings.filter((w) => /^error: Service shop\/"x.*evil\.json#items\[[0-2]\]\) metadata\.name: /.test(w)).length,
    3,
    got.warnings.join('\n'),
  );
  assert.equal(
    got.warnings.filter((w) =>
      /^error: Service shop\/ok[0-2] \(.*evil\.json#items\[[3-5]\]\) spec\.ports\[0\]\.name: /.test(w),
    ).length,
    3,
    got.warnings.join('\n'),
  );
  assert.ok(got.warnings.some((w) => /^error: EndpointSlice shop\/old \(.*old\.yaml\) apiVersion: /.test(w)));
});

test('a ConfigMap volume (files as symlinks into ..data -> ..<timestamp>/) is delivered as the real files are, each once', async (t) => {
  const real = await copyExamples();
  t.after(() => rm(real, { recursive: true, force: true }));
  const cm = await mkdtemp(join(tmpdir(), 'kpx-configmap-'));
  t.after(() => rm(cm, { recursive: true, force: true }));
  const stamp = '..2026_12_05_01_00_00.000000001';
  await mkdir(join(cm, stamp));
  const names = (await readdir(real)).filter((n) => /\.(ya?ml|json)$/.test(n));
  for (const n of names) await cp(join(real, n), join(cm, stamp, n));
  await symlink(stamp, join(cm, '..data'));
  for (const n of names) await symlink(join('..data', n), join(cm, n));
  const a = await deliveredFrom(real);
  const b = await deliveredFrom(cm);
  assert.deepEqual(b.warnings, []);
  assert.deepEqual(b.events, a.events);
  assert.deepEqual(b.objects, a.objects);

  // The kubelet updates a ConfigMap volume by writing a new timestamped directory and swapping `..data` to it.
  const rec = new Recorder();
  const source = new ManifestsDirSource({ dir: cm, rescanMs: 0 });
  t.after(() => source.stop());
  await source.start(rec);
  rec.take();
  const next = '..2026_12_05_01_05_00.000000002';
  await mkdir(join(cm, next));
  for (const n of names) await cp(join(cm, stamp, n), join(cm, next, n));
  const web = join(cm, next, 'web.yaml');
  await writeFile(web, (await readFile(web, 'utf8')).replace('10.244.1.10]', '10.244.1.77]'));
  await symlink(next, join(cm, '..data_tmp'));
  await rename(join(cm, '..data_tmp'), join(cm, '..data'));
  await rm(join(cm, stamp), { recursive: true });
  await source.rescan();
  assert.deepEqual(rec.take(), ['upsert EndpointSlice shop/web-abc12']);
  assert.deepEqual(rec.warnings, []);
});
