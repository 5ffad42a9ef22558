// The test API server speaks the list/watch protocol as kube-apiserver does: resourceVersions, watch from a
// resourceVersion, BOOKMARK, 410 Gone, and the failure hooks tests use. Checked over plain HTTP, no client library.
import assert from 'node:assert/strict';
import { access, readFile } from 'node:fs/promises';
import { request, type IncomingMessage } from 'node:http';
import { test, type TestContext } from 'node:test';
import {
  ExpiredWatchResponse,
  KubeApiStoreError,
  startKubeApiServer,
  type KubeApiObject,
  type KubeApiServer,
  type KubeApiServerOptions,
} from '../src/index.js';

interface WatchEvent {
  type: string;
  object: KubeApiObject & { code?: number; reason?: string };
}

interface Response {
  status: number;
  body: unknown;
}

/** A watch (or any streaming GET) read line by line. */
interface Stream {
  readonly status: number;
  readonly events: WatchEvent[];
  /** Resolves when the response ends: 'end' for a clean end, 'error' when the connection broke. */
  readonly ended: Promise<'end' | 'error'>;
  close(): void;
}

async function start(t: TestContext, options: KubeApiServerOptions = {}): Promise<KubeApiServer> {
  const server = await startKubeApiServer(options);
  t.after(() => server.close());
  return server;
}

function get(server: KubeApiServer, path: string, token = server.token): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = request(`${server.url}${path}`, { headers: { Authorization: `Bearer ${token}` } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text === '' ? undefined : JSON.parse(text) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function openStream(server: KubeApiServer, path: string): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${server.url}${path}`,
      { headers: { Authorization: `Bearer ${server.token}` } },
      (res: IncomingMessage) => {
        const events: WatchEvent[] = [];
        let buffered = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffered += chunk;
          let nl: number;
          while ((nl = buffered.indexOf('\n')) >= 0) {
            const line = buffered.slice(0, nl);
            buffered = buffered.slice(nl + 1);
            if (line.trim() !== '') events.push(JSON.parse(line) as WatchEvent);
          }
        });
        const ended = new Promise<'end' | 'error'>((resolveEnd) => {
          res.on('end', () => resolveEnd('end'));
          res.on('error', () => resolveEnd('error'));
          res.on('aborted', () => resolveEnd('error'));
        });
        resolve({ status: res.statusCode ?? 0, events, ended, close: () => req.destroy() });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function waitFor(what: string, cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const service = (name: string, namespace: string, port = 80): KubeApiObject => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace },
  spec: { clusterIP: '10.96.0.10', ports: [{ port, protocol: 'TCP' }] },
});
const node = (name: string, zone = 'zone-1'): KubeApiObject => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name, labels: { 'topology.kubernetes.io/zone': zone } },
});
const slice = (name: string, namespace: string, ip: string): KubeApiObject => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name, namespace, labels: { 'kubernetes.io/service-name': name } },
  addressType: 'IPv4',
  endpoints: [{ addresses: [ip] }],
});

const rvOf = (o: KubeApiObject | undefined): string | undefined => o?.metadata?.resourceVersion;
const summary = (events: WatchEvent[]): string[] =>
  events.map((e) => `${e.type} ${e.object.metadata?.name ?? ''} ${rvOf(e.object) ?? ''}`);

test('store: one global resourceVersion for every kind; no-op applies change nothing; deletes stamp a new one', async (t) => {
  const server = await start(t, { initialResourceVersion: 500 });
  const { store } = server;
  assert.equal(store.resourceVersion, '500');
  const web = store.apply(service('web', 'shop'));
  const a = store.apply(node('node-a'));
  const s = store.apply(slice('web-1', 'shop', '10.244.1.10'));
  assert.deepEqual([rvOf(web), rvOf(a), rvOf(s)], ['501', '502', '503']);
  assert.equal(web.kind, 'Service');
  assert.equal(a.metadata?.namespace, undefined, 'a Node has no namespace');
  assert.match(web.metadata?.uid ?? '', /^[0-9a-f-]{36}$/);
  assert.match(web.metadata?.creationTimestamp ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'RFC 3339 in seconds');

  // Applying the same content again (even with a stale resourceVersion) is no change.
  assert.equal(
    rvOf(
      store.apply({ ...service('web', 'shop'), metadata: { name: 'web', namespace: 'shop', resourceVersion: '1' } }),
    ),
    '501',
  );
  assert.equal(store.resourceVersion, '503');
  const changed = store.apply(service('web', 'shop', 8080));
  assert.equal(rvOf(changed), '504');
  assert.equal(changed.metadata?.uid, web.metadata?.uid, 'a modification keeps the uid');

  const gone = store.delete('Service', 'shop', 'web');
  assert.equal(rvOf(gone), '505');
  assert.deepEqual((gone?.spec as { ports: unknown[] }).ports, [{ port: 8080, protocol: 'TCP' }], 'the last state');
  assert.equal(store.get('Service', 'shop', 'web'), undefined);
  assert.equal(store.delete('Service', 'shop', 'web'), undefined, 'deleting what is gone is no change');
  assert.equal(store.resourceVersion, '505');

  assert.throws(() => store.apply({ kind: 'Pod', metadata: { name: 'p' } }), KubeApiStoreError);
  assert.throws(() => store.apply({ kind: 'Service', metadata: {} }), KubeApiStoreError);
});

test('list: the collection resourceVersion, items without kind/apiVersion, namespaced and single-object paths, auth', async (t) => {
  const server = await start(t);
  server.store.apply(service('web', 'shop'));
  server.store.apply(service('dns', 'kube-system'));
  server.store.apply(node('node-b'));
  server.store.apply(node('node-a'));
  server.store.apply(slice('web-1', 'shop', '10.244.1.10'));

  const services = await get(server, '/api/v1/services');
  assert.equal(services.status, 200);
  const list = services.body as {
    kind: string;
    apiVersion: string;
    metadata: { resourceVersion: string };
    items: KubeApiObject[];
  };
  assert.equal(list.kind, 'ServiceList');
  assert.equal(list.apiVersion, 'v1');
  assert.equal(list.metadata.resourceVersion, server.store.resourceVersion);
  assert.deepEqual(
    list.items.map((i) => `${i.metadata?.namespace}/${i.metadata?.name}`),
    ['kube-system/dns', 'shop/web'],
  );
  for (const item of list.items) {
    assert.equal(item.kind, undefined, 'list items carry no kind, as from kube-apiserver');
    assert.equal(item.apiVersion, undefined);
  }
  const nodes = (await get(server, '/api/v1/nodes')).body as { kind: string; items: KubeApiObject[] };
  assert.equal(nodes.kind, 'NodeList');
  assert.deepEqual(
    nodes.items.map((i) => i.metadata?.name),
    ['node-a', 'node-b'],
  );
  const slices = (await get(server, '/apis/discovery.k8s.io/v1/endpointslices')).body as {
    kind: string;
    apiVersion: string;
    items: KubeApiObject[];
  };
  assert.equal(slices.kind, 'EndpointSliceList');
  assert.equal(slices.apiVersion, 'discovery.k8s.io/v1');
  assert.equal(slices.items.length, 1);

  const shop = (await get(server, '/api/v1/namespaces/shop/services')).body as { items: KubeApiObject[] };
  assert.deepEqual(
    shop.items.map((i) => i.metadata?.name),
    ['web'],
  );
  const one = await get(server, '/api/v1/namespaces/shop/services/web');
  assert.equal(one.status, 200);
  assert.equal((one.body as KubeApiObject).kind, 'Service');
  assert.equal((await get(server, '/api/v1/namespaces/shop/services/nope')).status, 404);
  assert.equal((await get(server, '/api/v1/pods')).status, 404);
  assert.equal((await get(server, '/api/v1/namespaces/shop/nodes')).status, 404, 'nodes are not namespaced');

  const denied = await get(server, '/api/v1/services', 'wrong-token');
  assert.equal(denied.status, 401);
  assert.equal((denied.body as { kind: string; code: number }).code, 401);

  assert.deepEqual(
    server.requests().map((r) => `${r.method} ${r.path} ${r.status}`),
    [
      'GET /api/v1/services 200',
      'GET /api/v1/nodes 200',
      'GET /apis/discovery.k8s.io/v1/endpointslices 200',
      'GET /api/v1/namespaces/shop/services 200',
      'GET /api/v1/namespaces/shop/services/web 200',
      'GET /api/v1/namespaces/shop/services/nope 404',
      'GET /api/v1/pods 404',
      'GET /api/v1/namespaces/shop/nodes 404',
      'GET /api/v1/services 401',
    ],
    'every request is recorded with its answer',
  );
});

test('watch from a resourceVersion: every later change of that kind, in order, then live events', async (t) => {
  const server = await start(t);
  const { store } = server;
  store.apply(service('web', 'shop'));
  const from = store.resourceVersion;
  store.apply(service('api', 'shop'));
  store.apply(node('node-a')); // another kind: not on a Service watch
  store.apply(service('web', 'shop', 8080));
  store.delete('Service', 'shop', 'api');

  const watch = await openStream(server, `/api/v1/services?watch=true&resourceVersion=${from}`);
  t.after(() => watch.close());
  assert.equal(watch.status, 200);
  await waitFor('the backlog', () => watch.events.length === 3);
  assert.deepEqual(summary(watch.events), ['ADDED api 1002', 'MODIFIED web 1004', 'DELETED api 1005']);
  for (const e of watch.events) assert.equal(e.object.kind, 'Service', 'watch objects carry their kind');

  store.apply(service('db', 'shop'));
  store.apply(node('node-b'));
  store.delete('Service', 'shop', 'web');
  await waitFor('the live events', () => watch.events.length === 5);
  assert.deepEqual(summary(watch.events.slice(3)), ['ADDED db 1006', 'DELETED web 1008']);
  assert.deepEqual(server.activeWatches(), [{ path: '/api/v1/services', resourceVersion: from, paused: false }]);

  // A namespaced watch sees its namespace only; a watch of another kind sees that kind only.
  const inDns = await openStream(server, `/api/v1/namespaces/kube-system/services?watch=1&resourceVersion=${from}`);
  t.after(() => inDns.close());
  const nodes = await openStream(server, `/api/v1/nodes?watch=true&resourceVersion=${from}`);
  t.after(() => nodes.close());
  store.apply(service('dns', 'kube-system'));
  await waitFor('the node events', () => nodes.events.length === 2);
  await waitFor('the kube-system event', () => inDns.events.length === 1);
  assert.deepEqual(summary(nodes.events), ['ADDED node-a 1003', 'ADDED node-b 1007']);
  assert.deepEqual(summary(inDns.events), ['ADDED dns 1009']);
  await sleep(50);
  assert.equal(inDns.events.length, 1);
});

test('watch without a resourceVersion (or "0") starts with the current objects as ADDED', async (t) => {
  const server = await start(t);
  server.store.apply(slice('web-1', 'shop', '10.244.1.10'));
  server.store.apply(slice('dns-1', 'kube-system', '10.244.1.2'));
  for (const query of ['watch=true', 'watch=true&resourceVersion=0', 'watch=true&resourceVersion=']) {
    const watch = await openStream(server, `/apis/discovery.k8s.io/v1/endpointslices?${query}`);
    t.after(() => watch.close());
    await waitFor(`the initial objects (${query})`, () => watch.events.length === 2);
    assert.deepEqual(summary(watch.events), ['ADDED dns-1 1002', 'ADDED web-1 1001'], query);
    assert.equal(watch.events[0]?.object.kind, 'EndpointSlice');
  }
});

test('BOOKMARK: only when asked for, every bookmarkIntervalMs, carrying the current resourceVersion', async (t) => {
  const server = await start(t, { bookmarkIntervalMs: 50 });
  server.store.apply(node('node-a'));
  const rv = server.store.resourceVersion;
  const plain = await openStream(server, `/api/v1/nodes?watch=true&resourceVersion=${rv}`);
  t.after(() => plain.close());
  const marked = await openStream(server, `/api/v1/nodes?watch=true&resourceVersion=${rv}&allowWatchBookmarks=true`);
  t.after(() => marked.close());
  await waitFor('two bookmarks', () => marked.events.length >= 2);
  for (const e of marked.events) {
    assert.equal(e.type, 'BOOKMARK');
    assert.deepEqual(e.object, { kind: 'Node', apiVersion: 'v1', metadata: { resourceVersion: rv } });
  }
  // Changes of other kinds advance the global resourceVersion; a node watch's bookmark says so.
  server.store.apply(service('web', 'shop'));
  const n = marked.events.length;
  await waitFor('a later bookmark', () => marked.events.length > n);
  assert.equal(rvOf(marked.events.at(-1)?.object), server.store.resourceVersion);
  assert.equal(plain.events.length, 0, 'no bookmark without allowWatchBookmarks');

  // bookmarkIntervalMs 0: never.
  const never = await start(t, { bookmarkIntervalMs: 0 });
  const quiet = await openStream(never, '/api/v1/nodes?watch=true&allowWatchBookmarks=true');
  t.after(() => quiet.close());
  await sleep(150);
  assert.equal(quiet.events.length, 0);
});

test('410 Gone for a resourceVersion older than the history: as an ERROR event (default) or as HTTP 410', async (t) => {
  const server = await start(t, { historyLimit: 2 });
  const { store } = server;
  store.apply(service('a', 'shop')); // 1001
  store.apply(service('b', 'shop')); // 1002
  store.apply(service('c', 'shop')); // 1003: 1001 dropped from the history of 2
  // 1001 is still a valid start: every later event (1002, 1003) is kept.
  const ok = await openStream(server, '/api/v1/services?watch=true&resourceVersion=1001');
  t.after(() => ok.close());
  await waitFor('the kept events', () => ok.events.length === 2);
  assert.deepEqual(summary(ok.events), ['ADDED b 1002', 'ADDED c 1003']);

  const expired = await openStream(server, '/api/v1/services?watch=true&resourceVersion=1000');
  assert.equal(expired.status, 200, 'the watch cache answers 200 and then an ERROR event');
  assert.equal(await expired.ended, 'end', 'and ends the stream');
  assert.equal(expired.events.length, 1);
  const [error] = expired.events;
  assert.equal(error?.type, 'ERROR');
  assert.equal(error?.object.kind, 'Status');
  assert.equal(error?.object.code, 410);
  assert.equal(error?.object.reason, 'Expired');

  server.setExpiredWatchResponse(ExpiredWatchResponse.Http);
  const refused = await get(server, '/api/v1/services?watch=true&resourceVersion=1000');
  assert.equal(refused.status, 410);
  assert.equal((refused.body as { code: number; reason: string }).code, 410);
  assert.equal((refused.body as { code: number; reason: string }).reason, 'Expired');

  // expireResourceVersions(): like a compaction at the current revision.
  server.setExpiredWatchResponse(ExpiredWatchResponse.Event);
  server.expireResourceVersions();
  const afterCompaction = await openStream(server, '/api/v1/services?watch=true&resourceVersion=1002');
  assert.equal(await afterCompaction.ended, 'end');
  assert.equal(afterCompaction.events[0]?.object.code, 410);
  const current = await openStream(server, `/api/v1/services?watch=true&resourceVersion=${store.resourceVersion}`);
  t.after(() => current.close());
  store.delete('Service', 'shop', 'a');
  await waitFor('a watch from the current resourceVersion still works', () => current.events.length === 1);
  assert.deepEqual(summary(current.events), ['DELETED a 1004']);
  assert.deepEqual(
    server
      .requests()
      .filter((r) => r.watch)
      .map((r) => `${r.query.resourceVersion} ${r.status}`),
    ['1001 200', '1000 200', '1000 410', '1002 200', '1003 200'],
  );
});

test('timeoutSeconds ends a watch cleanly; a bad resourceVersion is a 400', async (t) => {
  const server = await start(t);
  const started = Date.now();
  const watch = await openStream(server, '/api/v1/services?watch=true&timeoutSeconds=1');
  assert.equal(await watch.ended, 'end');
  const took = Date.now() - started;
  assert.ok(took >= 950 && took < 2000, `ended after ${took} ms`);
  assert.equal(server.activeWatches().length, 0);
  assert.equal((await get(server, '/api/v1/services?watch=true&resourceVersion=abc')).status, 400);
});

test('failure hooks: dropped and silent watches, failed and stalled requests; close() ends everything', async (t) => {
  const server = await start(t, { bookmarkIntervalMs: 30 });
  const { store } = server;
  const rv = store.resourceVersion;

  // dropWatches: the connection breaks (no clean end of the chunked stream).
  const dropped = await openStream(server, `/api/v1/services?watch=true&resourceVersion=${rv}`);
  assert.equal(server.dropWatches(), 1);
  assert.equal(await dropped.ended, 'error');
  assert.equal(server.activeWatches().length, 0);

  // pauseWatches: open, but no events and no bookmarks from then on.
  const paused = await openStream(server, `/api/v1/services?watch=true&resourceVersion=${rv}&allowWatchBookmarks=true`);
  t.after(() => paused.close());
  await waitFor('a bookmark before the pause', () => paused.events.length > 0);
  assert.equal(server.pauseWatches(), 1);
  const seen = paused.events.length;
  store.apply(service('web', 'shop'));
  await sleep(150);
  assert.equal(paused.events.length, seen, 'nothing delivered while paused');
  assert.deepEqual(server.activeWatches(), [{ path: '/api/v1/services', resourceVersion: rv, paused: true }]);
  // A new watch is not paused, and gets what the paused one missed.
  const fresh = await openStream(server, `/api/v1/services?watch=true&resourceVersion=${rv}`);
  t.after(() => fresh.close());
  await waitFor('the missed event on a new watch', () => fresh.events.length === 1);
  assert.deepEqual(summary(fresh.events), ['ADDED web 1001']);

  // failRequests: the next n requests, lists and watches alike.
  server.failRequests(2, 503);
  assert.equal((await get(server, '/api/v1/nodes')).status, 503);
  const failedWatch = await get(server, '/api/v1/nodes?watch=true');
  assert.equal(failedWatch.status, 503);
  assert.equal((failedWatch.body as { kind: string; reason: string }).reason, 'ServiceUnavailable');
  assert.equal((await get(server, '/api/v1/nodes')).status, 200);

  // stallRequests: accepted, never answered; the next one is answered.
  server.stallRequests(1);
  let answered = false;
  const stalled = get(server, '/api/v1/nodes').then(
    () => (answered = true),
    () => 'connection closed',
  );
  await sleep(200);
  assert.equal(answered, false);
  assert.equal((await get(server, '/api/v1/nodes')).status, 200);
  assert.equal(
    server.requests().filter((r) => r.status === 0).length,
    1,
    'the stalled request is recorded with status 0',
  );
  assert.ok(server.openConnections() >= 3, `${server.openConnections()} connections: the stalled one and two watches`);

  // close(): every watch and stalled request ends, the kubeconfig is removed.
  const kubeconfig = await readFile(server.kubeconfigPath, 'utf8');
  assert.match(kubeconfig, new RegExp(`server: ${server.url}\\n`));
  assert.match(kubeconfig, new RegExp(`token: ${server.token}\\n`));
  assert.match(kubeconfig, /insecure-skip-tls-verify: true/);
  await server.close();
  assert.equal(await stalled, 'connection closed');
  assert.notEqual(await paused.ended, undefined);
  assert.equal(server.openConnections(), 0);
  await assert.rejects(access(server.kubeconfigPath));
});
