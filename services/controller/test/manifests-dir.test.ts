// The manifests-directory source: initial state, watched changes, broken files, removed files; and with the
// pipeline behind it, which changes create a generation.
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { IPFamily } from '@kpx/model';
import { defaultIptablesOptions } from '@kpx/compiler';
import type { Delta } from '@kpx/proto';
import { trace } from '@opentelemetry/api';
import { ControllerPipeline, ManifestsDirSource, MemoryGenerationStore, type SourceEvent, type SourceHandler } from '../src/index.js';

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
    const out = this.events.map((e) => `${e.type} ${e.kind} ${e.object.metadata?.namespace ?? ''}/${e.object.metadata?.name ?? ''}`);
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
  assert.match(rec.warnings[0] ?? '', /^keeping the previous objects of .*web\.yaml: .*web\.yaml: not valid YAML or JSON: .*\(\d+:\d+\)$/);
  await source.rescan();
  assert.equal(rec.warnings.length, 1, 'a broken file is reported once');

  await writeFile(web, original);
  await source.rescan();
  assert.deepEqual(rec.take(), ['upsert EndpointSlice shop/web-abc12']);

  // The same object in a second file: the later file (name order) wins, with a warning.
  await writeFile(join(dir, 'zz-override.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-c', labels: { 'topology.kubernetes.io/zone': 'zone-9' } } }));
  await source.rescan();
  assert.deepEqual(rec.take(), ['upsert Node /node-c']);
  assert.match(rec.warnings.at(-1) ?? '', /Node\/\/node-c is also defined in .*nodes\.yaml/);

  await unlink(join(dir, 'web.yaml'));
  await source.rescan();
  assert.deepEqual(rec.take().sort(), ['delete EndpointSlice shop/web-abc12', 'delete EndpointSlice shop/web-v6xyz', 'delete Service shop/web']);
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
  await writeFile(web, original.replace('metadata: { name: web, namespace: shop }', 'metadata: { name: web, namespace: shop, labels: { team: shop } }'));
  await waitFor(() => events === seen + 1);
  await p.settle();
  assert.equal(p.generation, 1, 'no generation for a label');
  assert.equal(published.length, 0);

  await writeFile(web, original.replace('10.244.1.10]', '10.244.1.77]'));
  await waitFor(() => p.generation === 2);
  await p.settle();
  assert.deepEqual(published.map((d) => d.node).sort(), ['node-a', 'node-b', 'node-c']);
  for (const d of published) assert.ok(d.upserts.every((u) => /KUBE-(SVC|SEP)-/.test(u.key)), d.upserts.map((u) => u.key).join(' '));
  assert.ok(published.every((d) => d.cause.some((c) => c.kind === 'EndpointSlice' && c.name === 'web-abc12')));
});
