// FamilyStates against the reference: after every sync, every node's state (built only from the deltas it was
// sent) must equal a from-scratch compile of that node, object for object, digest for digest.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClusterState, IPFamily, loadClusterState, parseCidr, readManifestDir, type KubeObject } from '@kpx/model';
import { compileIptables, defaultIptablesOptions, type IptablesOptions } from '@kpx/compiler';
import { FamilyStates, RuleState, digestOf, toWire, type NodeChange } from '../src/index.js';

const examples = new URL('../../../../examples/', import.meta.url).pathname;

class Harness {
  readonly states: FamilyStates;
  readonly applied = new Map<string, RuleState>();
  generation = 0;
  constructor(
    readonly cluster: ClusterState,
    readonly options: IptablesOptions,
  ) {
    this.states = new FamilyStates({ family: options.family, options });
  }

  sync(services: string[], nodes: string[]): NodeChange[] {
    const changes = this.states.sync({ state: this.cluster, services: new Set(services), nodes: new Set(nodes) });
    if (changes.length) this.generation++;
    for (const c of changes) {
      const s = c.initial ? new RuleState() : this.applied.get(c.node);
      assert.ok(s, `no state for ${c.node}`);
      s.applyDelta({ generation: this.generation, prevGeneration: c.initial ? 0 : c.prevGeneration, upserts: c.upserts.map((u) => u.wire), deletes: c.deletes, digest: c.digest });
      this.applied.set(c.node, s);
      this.states.setGeneration(c.node, this.generation);
    }
    for (const n of [...this.applied.keys()]) if (!this.states.nodeNames().includes(n)) this.applied.delete(n);
    this.checkAgainstFullCompile();
    return changes;
  }

  checkAgainstFullCompile(): void {
    assert.deepEqual([...this.applied.keys()].sort(), this.states.nodeNames());
    for (const node of this.states.nodeNames()) {
      const full = compileIptables({ state: this.cluster, nodeName: node, options: this.options }).objects.map(toWire);
      const got = this.applied.get(node);
      assert.ok(got);
      assert.deepEqual(got.sortedObjects(), full.sort((a, b) => (`${a.kind}:${a.key}` < `${b.kind}:${b.key}` ? -1 : 1)), `node ${node} differs from a full compile`);
      assert.equal(got.digest, digestOf(full));
      assert.equal(this.states.digest(node), got.digest);
    }
  }
}

async function examplesCluster(): Promise<ClusterState> {
  return loadClusterState(await readManifestDir(examples)).state;
}

const opts = (family: IPFamily = IPFamily.IPv4): IptablesOptions => ({ ...defaultIptablesOptions(family), clusterCIDRs: [parseCidr(family === IPFamily.IPv4 ? '10.244.0.0/16' : 'fd00:10:244::/56')!] });
const allServices = (c: ClusterState): string[] => [...new Set([...c.servicePorts(IPFamily.IPv4), ...c.servicePorts(IPFamily.IPv6)].map((p) => `${p.service.namespace}/${p.service.name}`))];
const keysOf = (c: NodeChange): string[] => [...c.upserts.map((u) => `+${u.wire.key}`), ...c.deletes.map((d) => `-${d.key}`)].sort();

function slice(name: string, ns: string, svc: string, endpoints: unknown[], port = 8080, extra: Record<string, unknown> = {}): KubeObject {
  return { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': svc } }, addressType: 'IPv4', ports: [{ name: 'http', port, protocol: 'TCP' }], endpoints, ...extra } as KubeObject;
}

test('initial sync: every node gets its whole state, equal to a full compile (both families)', async () => {
  for (const family of [IPFamily.IPv4, IPFamily.IPv6]) {
    const c = await examplesCluster();
    const h = new Harness(c, opts(family));
    const changes = h.sync(allServices(c), c.nodeNames());
    assert.deepEqual(changes.map((x) => [x.node, x.initial]), [['node-a', true], ['node-b', true], ['node-c', true]]);
  }
});

test('one EndpointSlice change: every node gets only the changed chains; a no-op change creates nothing', async () => {
  const c = await examplesCluster();
  const h = new Harness(c, opts());
  h.sync(allServices(c), c.nodeNames());
  // web loses its node-b endpoint.
  c.upsertEndpointSlice(slice('web-abc12', 'shop', 'web', [
    { addresses: ['10.244.1.10'], nodeName: 'node-a', zone: 'zone-1', conditions: { ready: true } },
    { addresses: ['10.244.3.10'], nodeName: 'node-c', zone: 'zone-2', conditions: { ready: false, serving: true, terminating: true } },
  ]));
  const changes = h.sync(['shop/web'], []);
  assert.equal(changes.length, 3);
  for (const ch of changes) {
    assert.deepEqual(keysOf(ch).map((k) => k.replace(/[A-Z0-9]{16}$/, 'H')), ['+nat/KUBE-SVC-H', '-nat/KUBE-SEP-H']);
    assert.deepEqual([...ch.services], ['shop/web']);
  }
  // The same objects are shared, not copied per node.
  assert.equal(changes[0]?.upserts[0], changes[1]?.upserts[0]);
  // Same content, new resourceVersion: no change at all.
  const again = slice('web-abc12', 'shop', 'web', [
    { addresses: ['10.244.1.10'], nodeName: 'node-a', zone: 'zone-1', conditions: { ready: true } },
    { addresses: ['10.244.3.10'], nodeName: 'node-c', zone: 'zone-2', conditions: { ready: false, serving: true, terminating: true } },
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
  c.upsertEndpointSlice({ ...slice('ingress-1', 'edge', 'ingress', [
    { addresses: ['10.244.2.20'], nodeName: 'node-b', conditions: { ready: true } },
    { addresses: ['10.244.1.21'], nodeName: 'node-a', conditions: { ready: true } },
  ], 8443), ports: [{ name: 'https', port: 8443, protocol: 'TCP' }] });
  const changes = h.sync(['edge/ingress'], []);
  assert.deepEqual(changes.map((x) => x.node), ['node-a', 'node-b', 'node-c'], 'cluster chains changed everywhere');
});

test('a node zone label change touches only that node; adding a node publishes to it only', async () => {
  const c = await examplesCluster();
  const h = new Harness(c, opts());
  h.sync(allServices(c), c.nodeNames());
  // node-b moves to zone-2: kube-dns (zone hints) now uses the zone-2 endpoint on node-b only.
  c.upsertNode({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-b', labels: { 'topology.kubernetes.io/zone': 'zone-2' } }, spec: { podCIDR: '10.244.2.0/24' }, status: { addresses: [{ type: 'InternalIP', address: '10.0.0.12' }] } });
  const moved = h.sync([], ['node-b']);
  assert.deepEqual(moved.map((x) => x.node), ['node-b']);
  assert.ok(moved[0]!.services.has('kube-system/kube-dns'));
  // A new node: only it gets a delta, its whole state.
  c.upsertNode({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-d', labels: { 'topology.kubernetes.io/zone': 'zone-1' } }, spec: { podCIDR: '10.244.4.0/24' }, status: { addresses: [{ type: 'InternalIP', address: '10.0.0.14' }] } });
  const added = h.sync([], ['node-d']);
  assert.deepEqual(added.map((x) => [x.node, x.initial]), [['node-d', true]]);
  // A removed node disappears without deltas to others.
  c.deleteNode('node-d');
  assert.deepEqual(h.sync([], ['node-d']), []);
  assert.deepEqual(h.states.nodeNames(), ['node-a', 'node-b', 'node-c']);
});

test('eTP Local endpoint moving between nodes with unchanged cluster endpoints touches only the two nodes', () => {
  const c = new ClusterState();
  for (const [n, ip] of [['n1', '10.0.0.1'], ['n2', '10.0.0.2'], ['n3', '10.0.0.3'], ['n4', '10.0.0.4']] as const) {
    c.upsertNode({ apiVersion: 'v1', kind: 'Node', metadata: { name: n }, status: { addresses: [{ type: 'InternalIP', address: ip }] } });
  }
  c.upsertService({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'loc', namespace: 'ns' }, spec: { type: 'NodePort', clusterIP: '10.96.0.9', externalTrafficPolicy: 'Local', internalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, nodePort: 30009 }] } });
  // iTP Local + eTP Local: no cluster chain; only nodes hosting endpoints differ from the rest.
  c.upsertEndpointSlice(slice('loc-1', 'ns', 'loc', [{ addresses: ['10.244.1.5'], nodeName: 'n1' }]));
  const h = new Harness(c, opts());
  h.sync(['ns/loc'], ['n1', 'n2', 'n3', 'n4']);
  c.upsertEndpointSlice(slice('loc-1', 'ns', 'loc', [{ addresses: ['10.244.1.5'], nodeName: 'n2' }]));
  const changes = h.sync(['ns/loc'], []);
  assert.deepEqual(changes.map((x) => x.node), ['n1', 'n2']);
});

test('crossing the large-cluster threshold rewrites every port (comments go), still equal to a full compile', () => {
  const c = new ClusterState();
  c.upsertNode({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' }, status: { addresses: [{ type: 'InternalIP', address: '10.0.0.1' }] } });
  c.upsertService({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'small', namespace: 'ns' }, spec: { clusterIP: '10.96.0.1', ports: [{ name: 'http', port: 80 }] } });
  c.upsertEndpointSlice(slice('small-1', 'ns', 'small', [{ addresses: ['10.244.0.1'] }]));
  c.upsertService({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'big', namespace: 'ns' }, spec: { clusterIP: '10.96.0.2', ports: [{ name: 'http', port: 80 }] } });
  const h = new Harness(c, opts());
  h.sync(['ns/small', 'ns/big'], ['n1']);
  const eps = Array.from({ length: 1000 }, (_, i) => ({ addresses: [`10.245.${i >> 8}.${i & 255}`] }));
  c.upsertEndpointSlice(slice('big-1', 'ns', 'big', eps));
  const changes = h.sync(['ns/big'], []);
  assert.ok(changes[0]!.upserts.some((u) => u.wire.key.includes('KUBE-SEP') && JSON.stringify(u.wire).includes('ns/small')) === false);
  assert.ok(changes[0]!.upserts.some((u) => JSON.stringify(u.wire).includes('10.244.0.1')), 'small service rewritten without comments');
});
