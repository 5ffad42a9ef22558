// The Kubernetes source: the real @kubernetes/client-node 1.4 informers against the test API server, through
// the failures a watcher meets in a real cluster (dropped connections, 410 Gone, silent watches, failing and
// hung requests). Short timeouts, so every case takes a second or two.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { readManifestDir, type KubeObject } from '@kpx/model';
import {
  ExpiredWatchResponse,
  startKubeApiServer,
  type KubeApiObject,
  type KubeApiServer,
  type KubeApiServerOptions,
  type RecordedRequest,
} from '@kpx/testing';
import {
  createKubernetesSource,
  ObjectKind,
  type KubernetesSource,
  type KubernetesSourceOptions,
  type SourceEvent,
} from '../src/index.js';

const examples = new URL('../../../../examples/', import.meta.url).pathname;

interface Harness {
  readonly server: KubeApiServer;
  readonly source: KubernetesSource;
  readonly events: SourceEvent[];
  readonly warnings: string[];
  /** How often onSynced was called, and how many events had come before the first call. */
  readonly synced: { count: number; eventsBefore: number };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** Options that make every timer of the source short. */
const fast: KubernetesSourceOptions = {
  silentWatchTimeoutMs: 30_000,
  retryInitialMs: 50,
  retryMaxMs: 400,
  listTimeoutMs: 5_000,
};

async function exampleObjects(): Promise<KubeObject[]> {
  return (await readManifestDir(examples))
    .map((m) => m.object)
    .filter((o) => ['Service', 'EndpointSlice', 'Node'].includes(o.kind ?? ''));
}

/** What a test started, undone last-started first (the source stops before its server closes). */
const cleanups = new WeakMap<TestContext, (() => Promise<void>)[]>();
function onCleanup(t: TestContext, fn: () => Promise<void>): void {
  let list = cleanups.get(t);
  if (list === undefined) {
    const fns: (() => Promise<void>)[] = [];
    cleanups.set(t, fns);
    t.after(async () => {
      for (const f of fns.reverse()) await f();
    });
    list = fns;
  }
  list.push(fn);
}

async function startServer(t: TestContext, options: KubeApiServerOptions = {}): Promise<KubeApiServer> {
  const server = await startKubeApiServer(options);
  onCleanup(t, () => server.close());
  return server;
}

/** Starts a source on `server` and records what it delivers; stopped (and checked to let go of every connection) after the test. */
async function startSource(
  t: TestContext,
  server: KubeApiServer,
  options: KubernetesSourceOptions = {},
): Promise<Harness> {
  const source = createKubernetesSource({ ...fast, ...options, kubeconfigPath: server.kubeconfigPath });
  const events: SourceEvent[] = [];
  const warnings: string[] = [];
  const synced = { count: 0, eventsBefore: -1 };
  onCleanup(t, () => source.stop());
  await source.start({
    onEvent: (e) => events.push(e),
    onSynced: () => {
      if (synced.count++ === 0) synced.eventsBefore = events.length;
    },
    onWarning: (message) => warnings.push(message),
  });
  return { server, source, events, warnings, synced };
}

async function startSynced(
  t: TestContext,
  server: KubeApiServer,
  options: KubernetesSourceOptions = {},
): Promise<Harness> {
  const h = await startSource(t, server, options);
  await waitFor('onSynced', () => h.synced.count > 0);
  await waitFor('three watches', () => server.activeWatches().length === 3);
  return h;
}

const nameOf = (o: KubeApiObject | KubeObject): string =>
  `${o.metadata?.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata?.name ?? ''}`;
const describeEvent = (e: SourceEvent): string =>
  `${e.type} ${e.kind} ${nameOf(e.object)} ${e.object.metadata?.resourceVersion ?? ''}`;
const describeObject = (type: string, o: KubeApiObject): string =>
  `${type} ${o.kind ?? ''} ${nameOf(o)} ${o.metadata?.resourceVersion ?? ''}`;
const lists = (server: KubeApiServer): RecordedRequest[] => server.requests().filter((r) => !r.watch);
const watches = (server: KubeApiServer): RecordedRequest[] => server.requests().filter((r) => r.watch);

const node = (name: string, zone: string, ip: string): KubeApiObject => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name, labels: { 'topology.kubernetes.io/zone': zone } },
  status: { addresses: [{ type: 'InternalIP', address: ip }] },
});
const service = (name: string, namespace: string, clusterIP: string, port = 80): KubeApiObject => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace },
  spec: { clusterIP, ports: [{ name: 'http', port, targetPort: 8080, protocol: 'TCP' }] },
});
const slice = (name: string, namespace: string, serviceName: string, ips: string[]): KubeApiObject => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name, namespace, labels: { 'kubernetes.io/service-name': serviceName } },
  addressType: 'IPv4',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: ips.map((ip) => ({ addresses: [ip], nodeName: 'node-a', conditions: { ready: true } })),
});

/** The source's view after a change: waits until the event for `object` (as the store returned it) has come. */
async function delivered(
  h: Harness,
  type: 'upsert' | 'delete',
  object: KubeApiObject,
  ms = 5000,
): Promise<SourceEvent> {
  const want = describeObject(type, object);
  await waitFor(want, () => h.events.some((e) => describeEvent(e) === want), ms);
  const event = h.events.find((e) => describeEvent(e) === want);
  assert.ok(event);
  return event;
}

test('initial list of Services, EndpointSlices and Nodes, then onSynced once; objects in wire form', async (t) => {
  const server = await startServer(t);
  const stored = (await exampleObjects()).map((o) => server.store.apply(o as KubeApiObject));
  // A field newer than client-node's generated models: kept (the informer must not depend on the models).
  const future = service('future', 'shop', '10.96.0.99');
  stored.push(
    server.store.apply({ ...future, spec: { ...(future.spec as object), fieldFromAFutureRelease: { enabled: true } } }),
  );
  const listRv = server.store.resourceVersion;
  const h = await startSynced(t, server);

  assert.equal(h.synced.count, 1);
  assert.equal(h.synced.eventsBefore, stored.length, 'every object was delivered before onSynced');
  assert.deepEqual(h.events.map(describeEvent).sort(), stored.map((o) => describeObject('upsert', o)).sort());
  for (const kind of Object.values(ObjectKind))
    assert.ok(
      h.events.some((e) => e.kind === kind),
      `${kind} delivered`,
    );
  // Objects as the API writes them: kind and apiVersion set (list items come without), metav1.Time as RFC 3339
  // in seconds (the generated client's Dates written back), everything else as stored.
  for (const e of h.events) {
    const original = stored.find((o) => o.kind === e.kind && nameOf(o) === nameOf(e.object));
    assert.deepEqual(e.object, original, `${e.kind} ${nameOf(e.object)} arrives unchanged`);
    assert.ok(e.observedAt > 0 && e.observedAt <= Date.now());
  }
  assert.deepEqual(
    h.source
      .list(ObjectKind.Node)
      .map((n) => n.metadata?.name)
      .sort(),
    ['node-a', 'node-b', 'node-c'],
    'list() is the informer cache',
  );

  // One list per kind, then one watch per kind from the list's resourceVersion, with bookmarks asked for.
  assert.deepEqual(
    lists(server)
      .map((r) => r.path)
      .sort(),
    ['/api/v1/nodes', '/api/v1/services', '/apis/discovery.k8s.io/v1/endpointslices'],
  );
  const w = watches(server);
  assert.equal(w.length, 3);
  for (const r of w) {
    assert.equal(r.query.resourceVersion, listRv);
    assert.equal(r.query.allowWatchBookmarks, 'true');
    assert.ok(
      Number(r.query.timeoutSeconds) >= 300 && Number(r.query.timeoutSeconds) < 600,
      `timeoutSeconds ${r.query.timeoutSeconds}`,
    );
    assert.equal(r.headers.authorization, `Bearer ${server.token}`);
  }
  assert.deepEqual(h.warnings, []);
});

test('an empty cluster syncs too', async (t) => {
  const server = await startServer(t);
  const h = await startSynced(t, server);
  assert.equal(h.synced.eventsBefore, 0);
  assert.deepEqual(h.source.list(ObjectKind.Service), []);
});

test('ADDED, MODIFIED and DELETED of every kind become upserts and deletes', async (t) => {
  const server = await startServer(t);
  const { store } = server;
  store.apply(node('node-a', 'zone-1', '10.0.0.11'));
  const h = await startSynced(t, server);
  const from = h.events.length;

  const svc = store.apply(service('web', 'shop', '10.96.0.20'));
  await delivered(h, 'upsert', svc);
  const eps = store.apply(slice('web-1', 'shop', 'web', ['10.244.1.10']));
  await delivered(h, 'upsert', eps);
  const nodeB = store.apply(node('node-b', 'zone-1', '10.0.0.12'));
  await delivered(h, 'upsert', nodeB);

  const svc2 = store.apply(service('web', 'shop', '10.96.0.20', 8080));
  const eps2 = store.apply(slice('web-1', 'shop', 'web', ['10.244.1.10', '10.244.1.11']));
  const nodeB2 = store.apply(node('node-b', 'zone-2', '10.0.0.12'));
  const modified = await delivered(h, 'upsert', nodeB2);
  assert.deepEqual((modified.object.metadata?.labels ?? {})['topology.kubernetes.io/zone'], 'zone-2');
  await delivered(h, 'upsert', svc2);
  await delivered(h, 'upsert', eps2);

  const gone = [
    store.delete('EndpointSlice', 'shop', 'web-1'),
    store.delete('Service', 'shop', 'web'),
    store.delete('Node', undefined, 'node-b'),
  ];
  for (const object of gone) {
    assert.ok(object);
    const e = await delivered(h, 'delete', object);
    assert.deepEqual(e.object, object, 'a delete carries the last state');
  }
  const expected = [svc, eps, nodeB, svc2, eps2, nodeB2]
    .map((o) => describeObject('upsert', o))
    .concat(gone.map((o) => describeObject('delete', o!)));
  assert.deepEqual(
    h.events.slice(from).map(describeEvent).sort(),
    expected.sort(),
    'one event per change, no duplicates',
  );
  assert.equal(h.events.length - from, 9, 'one event per change, no duplicates');
  assert.deepEqual(
    h.source.list(ObjectKind.Node).map((n) => n.metadata?.name),
    ['node-a'],
  );
  assert.equal(h.synced.count, 1);
});

test('a dropped watch is watched again from the last resourceVersion; changes made while it was down arrive', async (t) => {
  const server = await startServer(t);
  const { store } = server;
  store.apply(node('node-a', 'zone-1', '10.0.0.11'));
  store.apply(service('web', 'shop', '10.96.0.20'));
  const h = await startSynced(t, server);
  const listRv = server.store.resourceVersion;
  const seen = store.apply(service('api', 'shop', '10.96.0.21'));
  await delivered(h, 'upsert', seen);
  const listsBefore = lists(server).length;
  const watchesBefore = watches(server).length;
  const from = h.events.length;

  assert.equal(server.dropWatches(), 3);
  // Made while no watch is open: they reach the source only through the re-watch's backlog.
  const added = store.apply(service('db', 'shop', '10.96.0.22'));
  const modified = store.apply(node('node-a', 'zone-2', '10.0.0.11'));
  const deleted = store.delete('Service', 'shop', 'web');
  assert.ok(deleted);
  await delivered(h, 'upsert', added);
  await delivered(h, 'upsert', modified);
  await delivered(h, 'delete', deleted);
  await sleep(100);
  assert.equal(h.events.length - from, 3, 'each change once');

  const rewatches = watches(server).slice(watchesBefore);
  assert.deepEqual(
    rewatches.map((r) => `${r.path} ${r.query.resourceVersion}`).sort(),
    [
      `/api/v1/nodes ${listRv}`,
      `/api/v1/services ${seen.metadata?.resourceVersion}`,
      `/apis/discovery.k8s.io/v1/endpointslices ${listRv}`,
    ],
    'each kind resumes from the last resourceVersion it saw',
  );
  assert.equal(lists(server).length, listsBefore, 'no relist');
  assert.equal(h.warnings.filter((w) => /watch failed/.test(w)).length, 3, h.warnings.join('\n'));
});

async function relistAfterGone(t: TestContext, mode: ExpiredWatchResponse): Promise<void> {
  const server = await startServer(t, { expiredWatchResponse: mode });
  const { store } = server;
  store.apply(node('node-a', 'zone-1', '10.0.0.11'));
  store.apply(node('node-b', 'zone-1', '10.0.0.12'));
  store.apply(service('keep', 'shop', '10.96.0.20'));
  store.apply(service('gone', 'shop', '10.96.0.21'));
  store.apply(service('changed', 'shop', '10.96.0.22'));
  store.apply(slice('keep-1', 'shop', 'keep', ['10.244.1.10']));
  const h = await startSynced(t, server);
  const listRv = store.resourceVersion;
  const listsBefore = lists(server).length;
  const watchesBefore = watches(server).length;
  const from = h.events.length;

  // The source falls behind (its watches deliver nothing), the API server's history moves past it, the
  // connections drop: every kind's re-watch is refused with 410 and must relist.
  assert.equal(server.pauseWatches(), 3);
  const deleted = store.delete('Service', 'shop', 'gone');
  const modified = store.apply(service('changed', 'shop', '10.96.0.22', 8080));
  const addedNode = store.apply(node('node-c', 'zone-2', '10.0.0.13'));
  const deletedNode = store.delete('Node', undefined, 'node-b');
  assert.ok(deleted && deletedNode);
  server.expireResourceVersions();
  server.dropWatches();

  await delivered(h, 'upsert', modified);
  await delivered(h, 'upsert', addedNode);
  // A relist learns of a deletion by the object's absence: the delete carries the last state the source had
  // (its resourceVersion from before the deletion).
  for (const object of [deleted, deletedNode]) {
    const want = `delete ${nameOf(object)}`;
    await waitFor(want, () => h.events.slice(from).some((e) => `${e.type} ${nameOf(e.object)}` === want));
    const event = h.events.slice(from).find((e) => `${e.type} ${nameOf(e.object)}` === want);
    assert.deepEqual(event?.object, {
      ...object,
      metadata: { ...object.metadata, resourceVersion: event?.object.metadata?.resourceVersion },
    });
    assert.ok(Number(event?.object.metadata?.resourceVersion) < Number(object.metadata?.resourceVersion));
  }
  await waitFor('a watch per kind after the relist', () => server.activeWatches().length === 3);
  await sleep(100);
  // Only the differences: the unchanged Service, EndpointSlice and node-a are not delivered again.
  assert.deepEqual(
    h.events
      .slice(from)
      .map((e) => `${e.type} ${nameOf(e.object)}`)
      .sort(),
    ['delete node-b', 'delete shop/gone', 'upsert node-c', 'upsert shop/changed'],
  );

  const refused = watches(server)
    .slice(watchesBefore)
    .filter((r) => r.query.resourceVersion === listRv);
  assert.equal(refused.length, 3, 'one refused re-watch per kind');
  for (const r of refused) assert.equal(r.status, mode === ExpiredWatchResponse.Http ? 410 : 200);
  assert.deepEqual(
    lists(server)
      .slice(listsBefore)
      .map((r) => r.path)
      .sort(),
    ['/api/v1/nodes', '/api/v1/services', '/apis/discovery.k8s.io/v1/endpointslices'],
    'one relist per kind',
  );
  for (const w of server.activeWatches())
    assert.equal(w.resourceVersion, store.resourceVersion, 'watching again from the relist');
  assert.ok(
    h.warnings.some((w) => /410 Gone/.test(w)),
    h.warnings.join('\n'),
  );

  // And the informers go on: a later change arrives through the new watches.
  const later = store.apply(slice('keep-1', 'shop', 'keep', ['10.244.1.11']));
  await delivered(h, 'upsert', later);
  assert.equal(h.synced.count, 1, 'onSynced is not repeated by a relist');
}

test('410 Gone as an ERROR event: relist; what was deleted meanwhile arrives as a delete, what changed as an upsert', async (t) => {
  await relistAfterGone(t, ExpiredWatchResponse.Event);
});

test('410 Gone as HTTP 410: the same', async (t) => {
  await relistAfterGone(t, ExpiredWatchResponse.Http);
});

test('a silent watch (open, no events, no bookmarks) is restarted within silentWatchTimeoutMs; the change made meanwhile arrives', async (t) => {
  const silentWatchTimeoutMs = 500;
  const server = await startServer(t, { bookmarkIntervalMs: 100 });
  const { store } = server;
  store.apply(service('web', 'shop', '10.96.0.20'));
  const h = await startSynced(t, server, { silentWatchTimeoutMs });
  // Idle but alive: bookmarks keep the guard quiet.
  await sleep(3 * silentWatchTimeoutMs);
  assert.equal(watches(server).length, 3, 'no idle watch that sends bookmarks is restarted');
  assert.deepEqual(h.warnings, []);
  const listsBefore = lists(server).length;
  const before = store.resourceVersion;

  const pausedAt = Date.now();
  assert.equal(server.pauseWatches(), 3);
  const changed = store.apply(service('web', 'shop', '10.96.0.20', 8080));
  await delivered(h, 'upsert', changed, 3000);
  const took = Date.now() - pausedAt;
  // Not through the paused watch (nothing comes through it), and found within the timeout (measured from the
  // last bookmark, at most 100 ms before the pause) plus the re-watch.
  assert.ok(took >= silentWatchTimeoutMs - 150, `delivered after ${took} ms: too early for a restarted watch`);
  assert.ok(took < silentWatchTimeoutMs + 400, `delivered after ${took} ms`);
  await waitFor('three fresh watches', () => server.activeWatches().filter((w) => !w.paused).length === 3);
  assert.equal(server.activeWatches().length, 3, 'the silent watches were closed');
  const restarted = watches(server).slice(3);
  assert.equal(restarted.length, 3);
  for (const r of restarted)
    assert.equal(r.query.resourceVersion, before, 'resumed from the last bookmark, before the change');
  assert.equal(lists(server).length, listsBefore, 'no relist');
  assert.equal(
    h.warnings.filter((w) => /delivered no event or bookmark for 500 ms/.test(w)).length,
    3,
    h.warnings.join('\n'),
  );
});

test('against a server that sends no bookmarks, idle watches are renewed every silentWatchTimeoutMs and nothing is lost', async (t) => {
  const server = await startServer(t, { bookmarkIntervalMs: 0 });
  const h = await startSynced(t, server, { silentWatchTimeoutMs: 300 });
  await sleep(1000);
  for (const path of ['/api/v1/services', '/api/v1/nodes', '/apis/discovery.k8s.io/v1/endpointslices']) {
    const renewed = watches(server).filter((r) => r.path === path).length - 1;
    assert.ok(renewed >= 2 && renewed <= 4, `${path}: ${renewed} renewed watches in 1 s`);
  }
  assert.equal(lists(server).length, 3, 'renewing is a re-watch, not a relist');
  const svc = server.store.apply(service('web', 'shop', '10.96.0.20'));
  await delivered(h, 'upsert', svc);
  assert.equal(h.events.length, 1);
});

test('a watch the server accepts but never answers is given up after silentWatchTimeoutMs, its connection closed', async (t) => {
  const server = await startServer(t, { bookmarkIntervalMs: 100 });
  const h = await startSynced(t, server, { silentWatchTimeoutMs: 400 });
  server.stallRequests(3);
  server.dropWatches();
  const svc = server.store.apply(service('web', 'shop', '10.96.0.20'));
  await delivered(h, 'upsert', svc, 4000);
  assert.equal(server.requests().filter((r) => r.status === 0).length, 3, 'the three re-watches hung');
  await waitFor(
    'only the three live watches connected',
    () => server.openConnections() === 3 && server.activeWatches().length === 3,
    2000,
  );
});

test('a failing list (HTTP 500) is retried with backoff; onSynced once, every object once', async (t) => {
  const server = await startServer(t);
  const stored = (await exampleObjects()).map((o) => server.store.apply(o as KubeApiObject));
  server.failRequests(4, 500);
  const h = await startSynced(t, server);
  assert.equal(h.synced.count, 1);
  assert.deepEqual(h.events.map(describeEvent).sort(), stored.map((o) => describeObject('upsert', o)).sort());
  const statuses = lists(server).map((r) => r.status);
  assert.equal(statuses.filter((s) => s === 500).length, 4);
  assert.equal(statuses.filter((s) => s === 200).length, 3);
  assert.equal(h.warnings.filter((w) => /list failed/.test(w)).length, 4, h.warnings.join('\n'));
});

test('a failing watch (HTTP 500) is retried from the last resourceVersion with a growing delay', async (t) => {
  const server = await startServer(t);
  const h = await startSynced(t, server, { retryInitialMs: 50, retryMaxMs: 1000 });
  const rv = server.store.resourceVersion;
  server.failRequests(9, 500);
  const droppedAt = Date.now();
  server.dropWatches();
  const svc = server.store.apply(service('web', 'shop', '10.96.0.20'));
  await delivered(h, 'upsert', svc);
  // Per kind: dropped (retry in 50 ms), then three 500s (100, 200, 400 ms), then the watch that works.
  for (const path of ['/api/v1/services', '/api/v1/nodes', '/apis/discovery.k8s.io/v1/endpointslices']) {
    const times = [
      droppedAt,
      ...watches(server)
        .slice(3)
        .filter((r) => r.path === path)
        .map((r) => r.at),
    ];
    const tries = watches(server)
      .slice(3)
      .filter((r) => r.path === path);
    assert.ok(
      tries.every((r) => r.query.resourceVersion === rv),
      'every retry resumes from the last resourceVersion',
    );
    assert.equal(tries.at(-1)?.status, 200);
    const gaps = times.slice(1).map((at, i) => at - (times[i] ?? 0));
    gaps.forEach((gap, i) =>
      assert.ok(gap >= 50 * 2 ** i - 5, `${path}: retry ${i + 1} after ${gap} ms (${gaps.join(', ')})`),
    );
  }
  assert.equal(watches(server).filter((r) => r.status === 500).length, 9);
  assert.equal(lists(server).length, 3, 'no relist');
});

test('a list that does not answer is aborted after listTimeoutMs and retried', async (t) => {
  const server = await startServer(t);
  server.store.apply(node('node-a', 'zone-1', '10.0.0.11'));
  server.stallRequests(1);
  const started = Date.now();
  const h = await startSynced(t, server, { listTimeoutMs: 300 });
  const took = Date.now() - started;
  assert.ok(took >= 300 && took < 2000, `synced after ${took} ms`);
  assert.equal(h.events.length, 1);
  assert.equal(lists(server).filter((r) => r.status === 0).length, 1);
  assert.ok(
    h.warnings.some((w) => /list failed: no answer within 300 ms/.test(w)),
    h.warnings.join('\n'),
  );
  await waitFor('the hung list connection closed', () => server.openConnections() === 3, 2000);
});

test('a watch the server ends (timeoutSeconds) is resumed at once from the last resourceVersion', async (t) => {
  const server = await startServer(t);
  const h = await startSynced(t, server, { watchTimeoutSeconds: 1 });
  const first = server.store.apply(service('web', 'shop', '10.96.0.20'));
  await delivered(h, 'upsert', first);
  await waitFor('the second watch of every kind', () => watches(server).length === 6, 3000);
  const second = watches(server).slice(3);
  const firstEnd =
    Math.min(
      ...watches(server)
        .slice(0, 3)
        .map((r) => r.at),
    ) + 1000;
  for (const r of second) {
    assert.equal(r.query.timeoutSeconds, '1');
    assert.ok(r.at - firstEnd < 200, `re-watched ${r.at - firstEnd} ms after the end`);
  }
  assert.equal(
    second.find((r) => r.path === '/api/v1/services')?.query.resourceVersion,
    first.metadata?.resourceVersion,
  );
  const later = server.store.apply(service('web', 'shop', '10.96.0.20', 8080));
  await delivered(h, 'upsert', later);
  assert.deepEqual(h.warnings, []);
  assert.equal(lists(server).length, 3);
});

test('stop() ends every request: watches, hung lists, pending retries', async (t) => {
  // Synced, watching.
  const server = await startServer(t);
  const h = await startSynced(t, server);
  assert.equal(server.openConnections(), 3);
  await h.source.stop();
  await waitFor('no connection left', () => server.openConnections() === 0, 2000);
  server.store.apply(service('web', 'shop', '10.96.0.20'));
  server.dropWatches();
  await sleep(300);
  assert.equal(h.events.length, 0);
  assert.equal(server.requests().length, 6, 'nothing after stop');

  // Lists that hang: stop() aborts them.
  const hung = await startServer(t);
  hung.stallRequests(3);
  const h2 = await startSource(t, hung, { listTimeoutMs: 60_000 });
  await waitFor('three hung lists', () => hung.requests().length === 3);
  await h2.source.stop();
  await waitFor('the hung lists closed', () => hung.openConnections() === 0, 2000);
  assert.equal(h2.synced.count, 0);

  // Watches that hang (accepted, never answered: no response, so no AbortController yet): stop() ends them too.
  const hungWatches = await startServer(t);
  const h4 = await startSynced(t, hungWatches, { silentWatchTimeoutMs: 60_000 });
  hungWatches.stallRequests(3);
  hungWatches.dropWatches();
  await waitFor('three hung re-watches', () => hungWatches.requests().filter((r) => r.status === 0).length === 3);
  await h4.source.stop();
  await waitFor('the hung watches closed', () => hungWatches.openConnections() === 0, 2000);

  // Waiting to retry: stop() cancels the retries.
  const failing = await startServer(t);
  const h3 = await startSynced(t, failing, { retryInitialMs: 200 });
  failing.failRequests(100, 500);
  failing.dropWatches();
  await waitFor('the first failed re-watches', () => failing.requests().filter((r) => r.status === 500).length === 3);
  const count = failing.requests().length;
  await h3.source.stop();
  await sleep(600);
  assert.equal(failing.requests().length, count, 'no retry after stop');
  assert.equal(failing.openConnections(), 0);
});

test('object conversion: an object the loader rejects (a name render refuses) is reported and handled as deleted; a valid one is delivered', async (t) => {
  const server = await startServer(t);
  const h = await startSynced(t, server);
  const good = server.store.apply(service('web', 'shop', '10.96.0.10'));
  await delivered(h, 'upsert', good);
  // The test API server stores what it is given; a real one would have refused these.
  const badName = server.store.apply(service('we"b', 'shop', '10.96.0.11'));
  await delivered(h, 'delete', badName);
  const badPort = server.store.apply({
    ...service('ok', 'shop', '10.96.0.12'),
    spec: { clusterIP: '10.96.0.12', ports: [{ name: 'ht\ntp', port: 80 }] },
  });
  await delivered(h, 'delete', badPort);
  assert.ok(
    h.warnings.some((w) => /^error: Service shop\/"we\\"b" metadata\.name: .*; handled as deleted$/.test(w)),
    h.warnings.join('\n'),
  );
  assert.ok(
    h.warnings.some((w) => /^error: Service shop\/ok spec\.ports\[0\]\.name: .*; handled as deleted$/.test(w)),
    h.warnings.join('\n'),
  );
  for (const w of h.warnings) assert.doesNotMatch(w, /\n/);
});
