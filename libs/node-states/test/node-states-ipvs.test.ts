// FamilyStates in IPVS mode against the reference: after every sync, every node's state (built only from the
// deltas it was sent) must equal a from-scratch compileIpvs of that node, object for object, digest for digest.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClusterState, IPFamily, loadClusterState, parseCidr, readManifestDir, type KubeObject } from '@kpx/model';
import { compileIpvs, defaultIpvsOptions, modeCompiler, type IpvsOptions } from '@kpx/compiler';
import { FamilyStates, type NodeChange } from '../src/index.js';
import { StatesHarness } from './harness.js';

const examples = new URL('../../../../examples/', import.meta.url).pathname;

/** FamilyStates in IPVS mode, checked against compileIpvs after every sync. */
class IpvsHarness extends StatesHarness {
  constructor(cluster: ClusterState, options: IpvsOptions) {
    super(cluster, {
      family: options.family,
      options,
      compiler: modeCompiler('ipvs', options),
      reference: (state, nodeName) => compileIpvs({ state, nodeName, options }),
    });
  }
}

const opts = (family: IPFamily = IPFamily.IPv4): IpvsOptions => ({
  ...defaultIpvsOptions(family),
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
  [...c.upserts.map((u) => `+${u.wire.kind}:${u.wire.key}`), ...c.deletes.map((d) => `-${d.kind}:${d.key}`)].sort();

async function examplesCluster(): Promise<ClusterState> {
  return loadClusterState(await readManifestDir(examples)).state;
}

function service(name: string, spec: Record<string, unknown>): KubeObject {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'ns' }, spec } as KubeObject;
}

function slice(name: string, svc: string, endpoints: unknown[]): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'ns', labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints,
  } as KubeObject;
}

function twoNodes(): ClusterState {
  const c = new ClusterState();
  for (const [n, ip] of [
    ['n1', '10.0.0.1'],
    ['n2', '10.0.0.2'],
  ] as const) {
    c.upsertNode({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: n },
      spec: { podCIDR: `10.244.${n.slice(1)}.0/24` },
      status: { addresses: [{ type: 'InternalIP', address: ip }] },
    });
  }
  return c;
}

test('ipvs: initial sync gives every node its whole state, equal to compileIpvs (both families)', async () => {
  for (const family of [IPFamily.IPv4, IPFamily.IPv6]) {
    const c = await examplesCluster();
    const h = new IpvsHarness(c, opts(family));
    const changes = h.sync(allServices(c), c.nodeNames());
    assert.deepEqual(
      changes.map((x) => [x.node, x.initial]),
      [
        ['node-a', true],
        ['node-b', true],
        ['node-c', true],
      ],
    );
    assert.equal(h.states.mode, 'ipvs');
  }
});

test("ipvs: one EndpointSlice change gives each node only that service port's virtual servers and members", async () => {
  const c = await examplesCluster();
  const h = new IpvsHarness(c, opts());
  h.sync(allServices(c), c.nodeNames());
  // web loses its node-b endpoint.
  c.upsertEndpointSlice({
    ...slice('web-abc12', 'web', [
      { addresses: ['10.244.1.10'], nodeName: 'node-a', zone: 'zone-1', conditions: { ready: true } },
      {
        addresses: ['10.244.3.10'],
        nodeName: 'node-c',
        zone: 'zone-2',
        conditions: { ready: false, serving: true, terminating: true },
      },
    ]),
    metadata: { name: 'web-abc12', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } },
  });
  const changes = h.sync(['shop/web'], [], ['shop/web']);
  const byNode = new Map(changes.map((ch) => [ch.node, keysOf(ch)]));
  assert.deepEqual(byNode.get('node-a'), ['+ipvs.service:TCP/10.0.0.11:30080', '+ipvs.service:TCP/10.96.0.20:80']);
  assert.deepEqual(byNode.get('node-c'), ['+ipvs.service:TCP/10.0.0.13:30080', '+ipvs.service:TCP/10.96.0.20:80']);
  // node-b also loses its KUBE-LOOP-BACK member (its pod is gone): the port's fragment, not the whole set.
  assert.deepEqual(byNode.get('node-b'), [
    '+ipvs.service:TCP/10.0.0.12:30080',
    '+ipvs.service:TCP/10.96.0.20:80',
    '-ipset.entries:KUBE-LOOP-BACK/shop/web:http/TCP',
  ]);
  for (const ch of changes) assert.deepEqual([...ch.services], ['shop/web']);
  // The cluster IP's virtual server is one object shared by every node.
  const vip = (ch: NodeChange | undefined) => ch?.upserts.find((u) => u.wire.key === 'TCP/10.96.0.20:80');
  assert.equal(vip(changes[0]), vip(changes[2]));
});

test('ipvs: a VIP shared by several services stays bound until the last one goes; service deletes clean up', () => {
  const c = twoNodes();
  const h = new IpvsHarness(c, opts());
  c.upsertService(
    service('a', {
      clusterIP: '10.96.0.1',
      externalIPs: ['192.0.2.5'],
      ports: [
        { name: 'http', port: 80 },
        { name: 'alt', port: 81 },
      ],
    }),
  );
  c.upsertEndpointSlice(slice('a-1', 'a', [{ addresses: ['10.244.1.2'], nodeName: 'n1' }]));
  h.sync(['ns/a'], ['n1', 'n2']);
  c.upsertService(
    service('b', { clusterIP: '10.96.0.2', externalIPs: ['192.0.2.5'], ports: [{ name: 'http', port: 82 }] }),
  );
  const added = h.sync(['ns/b'], []);
  for (const ch of added) {
    assert.ok(
      !keysOf(ch).some((k) => k.includes('192.0.2.5') && k.includes('ipvs.address')),
      'the shared VIP is not re-sent',
    );
    assert.ok(keysOf(ch).includes('+ipvs.address:kube-ipvs0/10.96.0.2'));
  }
  c.deleteService('ns', 'a');
  const gone = h.sync(['ns/a'], []);
  for (const ch of gone) {
    assert.ok(keysOf(ch).includes('-ipvs.address:kube-ipvs0/10.96.0.1'));
    assert.ok(!keysOf(ch).includes('-ipvs.address:kube-ipvs0/192.0.2.5'), 'b still needs it');
  }
  c.deleteService('ns', 'b');
  for (const ch of h.sync(['ns/b'], [])) assert.ok(keysOf(ch).includes('-ipvs.address:kube-ipvs0/192.0.2.5'));
});

test('ipvs: a node taking an externalIP as its own address unbinds it there only; a new node gets its NodePorts', () => {
  const c = twoNodes();
  const h = new IpvsHarness(c, opts());
  c.upsertService(
    service('np', {
      type: 'NodePort',
      clusterIP: '10.96.0.3',
      externalIPs: ['10.0.0.9'],
      ports: [{ name: 'http', port: 80, nodePort: 30080 }],
    }),
  );
  c.upsertEndpointSlice(slice('np-1', 'np', [{ addresses: ['10.244.2.2'], nodeName: 'n2' }]));
  h.sync(['ns/np'], ['n1', 'n2']);
  c.upsertNode({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: 'n1' },
    status: {
      addresses: [
        { type: 'InternalIP', address: '10.0.0.1' },
        { type: 'ExternalIP', address: '10.0.0.9' },
      ],
    },
  });
  const changes = h.sync([], ['n1']);
  assert.deepEqual(
    changes.map((x) => x.node),
    ['n1'],
  );
  assert.ok(keysOf(changes[0]!).includes('-ipvs.address:kube-ipvs0/10.0.0.9'));
  assert.ok(keysOf(changes[0]!).includes('+ipvs.service:TCP/10.0.0.9:30080'), 'a NodePort on the new address');
  c.upsertNode({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: 'n3' },
    status: { addresses: [{ type: 'InternalIP', address: '10.0.0.3' }] },
  });
  const added = h.sync([], ['n3']);
  assert.deepEqual(
    added.map((x) => [x.node, x.initial]),
    [['n3', true]],
  );
  assert.ok(added[0]!.upserts.some((u) => u.wire.key === 'TCP/10.0.0.3:30080'));
});

test('ipvs: the mode compiler is chosen by name; iptables stays the default', () => {
  assert.equal(new FamilyStates({ family: IPFamily.IPv4, options: opts() }).mode, 'iptables');
  assert.equal(
    new FamilyStates({ family: IPFamily.IPv4, options: opts(), compiler: modeCompiler('ipvs', opts()) }).mode,
    'ipvs',
  );
  assert.equal(modeCompiler('iptables', opts()).mode, 'iptables');
});
