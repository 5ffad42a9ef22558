// FamilyStates against the reference: after every sync, every node's state (built only from the deltas it was
// sent) must equal a from-scratch compile of that node, object for object, digest for digest.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClusterState, IPFamily, loadClusterState, parseCidr, readManifestDir, type KubeObject } from '@kpx/model';
import { compileIptables, defaultIptablesOptions, type IptablesOptions } from '@kpx/compiler';
import { FamilyStates, type NodeChange } from '../src/index.js';
import { StatesHarness } from './harness.js';

const examples = new URL('../../../../examples/', import.meta.url).pathname;

/** FamilyStates in iptables mode, checked against compileIptables after every sync. */
class Harness extends StatesHarness {
  constructor(cluster: ClusterState, options: IptablesOptions) {
    super(cluster, {
      family: options.family,
      options,
      reference: (state, nodeName) => compileIptables({ state, nodeName, options }),
    });
  }
}

async function examplesCluster(): Promise<ClusterState> {
  return loadClusterState(await readManifestDir(examples)).state;
}

const opts = (family: IPFamily = IPFamily.IPv4): IptablesOptions => ({
  ...defaultIptablesOptions(family),
  clusterCIDRs: [parseCidr(family === IPFamily.IPv4 ? '10.244.0.0/16' : 'fd00:10:244::/56')!],
});
const allServices = (c: ClusterState): string[] => [
  ...new Set(
    [...c.servicePorts(IPFamily.IPv4), ...c.servicePorts(IPFamily.IPv6)].map(
      (p) => `${p.service.namespace}/${p.service.name}`,
    ),
  ),
];
const keysOf = (c: NodeChange): string[] =>
  [...c.upserts.map((u) => `+${u.wire.key}`), ...c.deletes.map((d) => `-${d.key}`)].sort();

function slice(
  name: string,
  ns: string,
  svc: string,
  endpoints: unknown[],
  port = 8080,
  extra: Record<string, unknown> = {},
): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port, protocol: 'TCP' }],
    endpoints,
    ...extra,
  } as KubeObject;
}

test('initial sync: every node gets its whole state, equal to a full compile (both families)', async () => {
  for (const family of [IPFamily.IPv4, IPFamily.IPv6]) {
    const c = await examplesCluster();
    const h = new Harness(c, opts(family));
    const changes = h.sync(allServices(c), c.nodeNames());
    assert.deepEqual(
      changes.map((x) => [x.node, x.initial]),
      [
        ['node-a', true],
        ['node-b', true],
        ['node-c', true],
      ],
    );
  }
});

test('one EndpointSlice change: every node gets only the changed chains; a no-op change creates nothing', async () => {
  const c = await examplesCluster();
  const h = new Harness(c, opts());
  h.sync(allServices(c), c.nodeNames());
  // web loses its node-b endpoint.
  c.upsertEndpointSlice(
    slice('web-abc12', 'shop', 'web', [
      { addresses: ['10.244.1.10'], nodeName: 'node-a', zone: 'zone-1', conditions: { ready: true } },
      {
        addresses: ['10.244.3.10'],
        nodeName: 'node-c',
        zone: 'zone-2',
        conditions: { ready: false, serving: true, terminating: true },
      },
    ]),
  );
  const changes = h.sync(['shop/web'], []);
  assert.equal(changes.length, 3);
  for (const ch of changes) {
    assert.deepEqual(
      keysOf(ch).map((k) => k.replace(/[A-Z0-9]{16}$/, 'H')),
      ['+nat/KUBE-SVC-H', '-nat/KUBE-SEP-H'],
    );
    assert.deepEqual([...ch.services], ['shop/web']);
  }
  // The same objects are shared, not copied per node.
  assert.equal(changes[0]?.upserts[0], changes[1]?.upserts[0]);
  // Same content, new resourceVersion: no change at all.
  const again = slice('web-abc12', 'shop', 'web', [
    { addresses: ['10.244.1.10'], nodeName: 'node-a', zone: 'zone-1', conditions: { ready: true } },
    {
      addresses: ['10.244.3.10'],
      nodeName: 'node-c',
      zone: 'zone-2',
      conditions: { ready: false, serving: true, terminating: true },
    },
  ]);
  (again.metadata as { resourceVersion?: string }).resourceVersion = '999';
  c.upsertEndpointSlice(again);
  assert.deepEqual(h.sync(['shop/web'], []), []);
});

test('an eTP Local endpoint moving nodes: cluster chains change everywhere, states stay exact', async () => {
  const c = await examplesCluster();
  const h = new Harness(c, opts());
  h.sync(allServices(c), c.nodeNames());
  // edge/ingress (eTP Local) endpoints move from node-a to node-b.
  c.upsertEndpointSlice({
    ...slice(
      'ingress-1',
      'edge',
      'ingress',
      [
        { addresses: ['10.244.2.20'], nodeName: 'node-b', conditions: { ready: true } },
        { addresses: ['10.244.1.21'], nodeName: 'node-a', conditions: { ready: true } },
      ],
      8443,
    ),
    ports: [{ name: 'https', port: 8443, protocol: 'TCP' }],
  });
  const changes = h.sync(['edge/ingress'], []);
  assert.deepEqual(
    changes.map((x) => x.node),
    ['node-a', 'node-b', 'node-c'],
    'cluster chains changed everywhere',
  );
});

test('a node zone label change touches only that node; adding a node publishes to it only', async () => {
  const c = await examplesCluster();
  const h = new Harness(c, opts());
  h.sync(allServices(c), c.nodeNames());
  // node-b moves to zone-2: kube-dns (zone hints) now uses the zone-2 endpoint on node-b only.
  c.upsertNode({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: 'node-b', labels: { 'topology.kubernetes.io/zone': 'zone-2' } },
    spec: { podCIDR: '10.244.2.0/24' },
    status: { addresses: [{ type: 'InternalIP', address: '10.0.0.12' }] },
  });
  const moved = h.sync([], ['node-b']);
  assert.deepEqual(
    moved.map((x) => x.node),
    ['node-b'],
  );
  assert.ok(moved[0]!.services.has('kube-system/kube-dns'));
  // A new node: only it gets a delta, its whole state.
  c.upsertNode({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: 'node-d', labels: { 'topology.kubernetes.io/zone': 'zone-1' } },
    spec: { podCIDR: '10.244.4.0/24' },
    status: { addresses: [{ type: 'InternalIP', address: '10.0.0.14' }] },
  });
  const added = h.sync([], ['node-d']);
  assert.deepEqual(
    added.map((x) => [x.node, x.initial]),
    [['node-d', true]],
  );
  // A removed node disappears without deltas to others.
  c.deleteNode('node-d');
  assert.deepEqual(h.sync([], ['node-d']), []);
  assert.deepEqual(h.states.nodeNames(), ['node-a', 'node-b', 'node-c']);
});

test('eTP Local endpoint moving between nodes with unchanged cluster endpoints touches only the two nodes', () => {
  const c = new ClusterState();
  for (const [n, ip] of [
    ['n1', '10.0.0.1'],
    ['n2', '10.0.0.2'],
    ['n3', '10.0.0.3'],
    ['n4', '10.0.0.4'],
  ] as const) {
    c.upsertNode({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: n },
      status: { addresses: [{ type: 'InternalIP', address: ip }] },
    });
  }
  c.upsertService({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'loc', namespace: 'ns' },
    spec: {
      type: 'NodePort',
      clusterIP: '10.96.0.9',
      externalTrafficPolicy: 'Local',
      internalTrafficPolicy: 'Local',
      ports: [{ name: 'http', port: 80, nodePort: 30009 }],
    },
  });
  // iTP Local + eTP Local: no cluster chain; only nodes hosting endpoints differ from the rest.
  c.upsertEndpointSlice(slice('loc-1', 'ns', 'loc', [{ addresses: ['10.244.1.5'], nodeName: 'n1' }]));
  const h = new Harness(c, opts());
  h.sync(['ns/loc'], ['n1', 'n2', 'n3', 'n4']);
  c.upsertEndpointSlice(slice('loc-1', 'ns', 'loc', [{ addresses: ['10.244.1.5'], nodeName: 'n2' }]));
  const changes = h.sync(['ns/loc'], []);
  assert.deepEqual(
    changes.map((x) => x.node),
    ['n1', 'n2'],
  );
});

test('crossing the large-cluster threshold rewrites every port (comments go), still equal to a full compile', () => {
  const c = new ClusterState();
  c.upsertNode({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: 'n1' },
    status: { addresses: [{ type: 'InternalIP', address: '10.0.0.1' }] },
  });
  c.upsertService({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'small', namespace: 'ns' },
    spec: { clusterIP: '10.96.0.1', ports: [{ name: 'http', port: 80 }] },
  });
  c.upsertEndpointSlice(slice('small-1', 'ns', 'small', [{ addresses: ['10.244.0.1'] }]));
  c.upsertService({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'big', namespace: 'ns' },
    spec: { clusterIP: '10.96.0.2', ports: [{ name: 'http', port: 80 }] },
  });
  const h = new Harness(c, opts());
  h.sync(['ns/small', 'ns/big'], ['n1']);
  const eps = Array.from({ length: 1000 }, (_, i) => ({ addresses: [`10.245.${i >> 8}.${i & 255}`] }));
  c.upsertEndpointSlice(slice('big-1', 'ns', 'big', eps));
  const changes = h.sync(['ns/big'], []);
  assert.ok(
    changes[0]!.upserts.some((u) => u.wire.key.includes('KUBE-SEP') && JSON.stringify(u.wire).includes('ns/small')) ===
      false,
  );
  assert.ok(
    changes[0]!.upserts.some((u) => JSON.stringify(u.wire).includes('10.244.0.1')),
    'small service rewritten without comments',
  );
});

test('endpointsOnly: a slice-only change reuses the held ports without listing every port of the state', async () => {
  const c = await examplesCluster();
  let listed = 0;
  const counting = new Proxy(c, {
    get(target, prop, receiver) {
      if (prop === 'servicePorts') listed++;
      const v: unknown = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const h = new Harness(counting, opts());
  h.sync(allServices(c), c.nodeNames());
  listed = 0;
  c.upsertEndpointSlice(
    slice('web-abc12', 'shop', 'web', [
      { addresses: ['10.244.1.77'], nodeName: 'node-a', conditions: { ready: true } },
    ]),
  );
  const changes = h.states.sync({
    state: counting,
    services: new Set(['shop/web']),
    nodes: new Set(),
    endpointsOnly: new Set(['shop/web']),
  });
  assert.equal(listed, 0, 'servicePorts() not called');
  assert.equal(changes.length, 3);
  // The harness applies nothing here: compare with a second FamilyStates that re-reads everything.
  const ref = new FamilyStates({ family: IPFamily.IPv4, options: opts() });
  ref.sync({ state: c, services: new Set(allServices(c)), nodes: new Set(c.nodeNames()) });
  for (const n of c.nodeNames()) assert.equal(h.states.digest(n), ref.digest(n), n);
});

test('a service seen before any node, changed in the sync that brings the first nodes', () => {
  const c = new ClusterState();
  c.upsertService({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'a', namespace: 'ns' },
    spec: { clusterIP: '10.96.0.1', ports: [{ name: 'http', port: 80 }] },
  });
  c.upsertEndpointSlice(slice('a-1', 'ns', 'a', [{ addresses: ['10.244.0.1'] }]));
  const h = new Harness(c, opts());
  assert.deepEqual(h.sync(['ns/a'], []), [], 'no node, no change');
  c.upsertEndpointSlice(slice('a-1', 'ns', 'a', [{ addresses: ['10.244.0.2'] }]));
  c.upsertNode({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: 'n1' },
    status: { addresses: [{ type: 'InternalIP', address: '10.0.0.1' }] },
  });
  const changes = h.sync(['ns/a'], ['n1']);
  assert.deepEqual(
    changes.map((x) => [x.node, x.initial]),
    [['n1', true]],
  );
  assert.ok(changes[0]!.upserts.some((u) => JSON.stringify(u.wire).includes('10.244.0.2')));
  assert.deepEqual([...changes[0]!.services], ['ns/a']);
});

test('a port turning node-dependent and back, with nodes joining and leaving between syncs', () => {
  const c = new ClusterState();
  const node = (n: string, ip: string): void => {
    c.upsertNode({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: n },
      status: { addresses: [{ type: 'InternalIP', address: ip }] },
    });
  };
  node('n1', '10.0.0.1');
  node('n2', '10.0.0.2');
  const svc = (policy: string): void => {
    c.upsertService({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'np', namespace: 'ns' },
      spec: {
        type: 'NodePort',
        clusterIP: '10.96.0.7',
        externalTrafficPolicy: policy,
        ports: [{ name: 'http', port: 80, nodePort: 30007 }],
      },
    });
  };
  svc('Cluster');
  c.upsertService({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'plain', namespace: 'ns' },
    spec: { clusterIP: '10.96.0.8', ports: [{ name: 'http', port: 80 }] },
  });
  c.upsertEndpointSlice(
    slice('np-1', 'ns', 'np', [
      { addresses: ['10.244.1.5'], nodeName: 'n1' },
      { addresses: ['10.244.2.5'], nodeName: 'n2' },
    ]),
  );
  c.upsertEndpointSlice(slice('plain-1', 'ns', 'plain', [{ addresses: ['10.244.2.9'], nodeName: 'n2' }]));
  const h = new Harness(c, opts());
  h.sync(['ns/np', 'ns/plain'], ['n1', 'n2']);
  svc('Local');
  assert.deepEqual(
    h.sync(['ns/np'], []).map((x) => x.node),
    ['n1', 'n2'],
  );
  node('n3', '10.0.0.3');
  c.upsertEndpointSlice(slice('plain-1', 'ns', 'plain', [{ addresses: ['10.244.2.10'], nodeName: 'n2' }]));
  const mixed = h.sync(['ns/plain'], ['n3']);
  assert.deepEqual(
    mixed.map((x) => [x.node, x.initial]),
    [
      ['n1', false],
      ['n2', false],
      ['n3', true],
    ],
  );
  c.deleteNode('n1');
  svc('Cluster');
  assert.deepEqual(
    h.sync(['ns/np'], ['n1']).map((x) => x.node),
    ['n2', 'n3'],
  );
  node('n1', '10.0.0.1');
  assert.deepEqual(
    h.sync([], ['n1']).map((x) => [x.node, x.initial]),
    [['n1', true]],
  );
});

test('objects equal across variants and nodes are one object in memory', async () => {
  const c = await examplesCluster();
  const h = new Harness(c, opts());
  h.sync(allServices(c), c.nodeNames());
  const a = new Map(h.states.objects('node-a').map((o) => [o.id, o]));
  const b = new Map(h.states.objects('node-b').map((o) => [o.id, o]));
  let same = 0;
  for (const [id, o] of a) {
    const p = b.get(id);
    if (!p) continue;
    if (p.hash === o.hash) {
      assert.equal(p, o, `${id}: equal content, one object`);
      same++;
    }
  }
  assert.ok(same > 0);
  // The examples hold eTP Local and zone-hinted services: node-a and node-b do differ somewhere.
  assert.ok([...a].some(([id, o]) => b.get(id)?.hash !== o.hash));
});

test("a health check counts the service's local pods over all its ports: another port's endpoints change it", async () => {
  const c = await examplesCluster();
  c.upsertService({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'lbx', namespace: 'ns' },
    spec: {
      type: 'LoadBalancer',
      clusterIP: '10.96.50.50',
      externalTrafficPolicy: 'Local',
      healthCheckNodePort: 32555,
      ports: [
        { name: 'a', port: 80, nodePort: 30080 },
        { name: 'b', port: 81, nodePort: 30081 },
      ],
    },
  });
  const on = (ip: string): unknown => ({ addresses: [ip], nodeName: 'node-a', conditions: { ready: true } });
  const portSlice = (name: string, port: string, ips: string[]): KubeObject => {
    const s = slice(name, 'ns', 'lbx', ips.map(on));
    return { ...s, ports: [{ name: port, port: 8080, protocol: 'TCP' }] } as KubeObject;
  };
  // The port carrying the health check (a) has one pod on node-a; b has that one and another.
  c.upsertEndpointSlice(portSlice('lbx-a', 'a', ['10.244.1.50']));
  c.upsertEndpointSlice(portSlice('lbx-b', 'b', ['10.244.1.50', '10.244.1.51']));
  const h = new Harness(c, opts());
  const hc = (node: string): unknown =>
    compileIptables({ state: c, nodeName: node, options: opts() }).objects.find(
      (o) => o.kind === 'healthcheck.service' && o.key === '32555',
    );
  h.sync(allServices(c), c.nodeNames());
  assert.equal((hc('node-a') as { localEndpoints: number }).localEndpoints, 2, 'distinct IPs over both ports');
  // Only b's slice changes: the count follows (the harness checks each node against a full compile).
  c.upsertEndpointSlice(portSlice('lbx-b', 'b', ['10.244.1.50', '10.244.1.51', '10.244.1.52']));
  const changes = h.sync(['ns/lbx'], []);
  assert.equal((hc('node-a') as { localEndpoints: number }).localEndpoints, 3);
  assert.ok(
    changes.find((ch) => ch.node === 'node-a')?.upserts.some((u) => u.wire.key === '32555'),
    'node-a gets the new count',
  );
});
