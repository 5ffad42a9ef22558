import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClusterState } from '../src/cluster.js';
import { categorizeEndpoints } from '../src/topology.js';
import { IPFamily } from '../src/ip.js';
import type { ServiceObject } from '../src/k8s.js';
import { ep, node, service, slice } from './fixtures.js';

function categorize(
  spec: NonNullable<ServiceObject['spec']>,
  endpoints: Parameters<typeof slice>[2],
  nodeName = 'n1',
  opts = {},
) {
  const s = new ClusterState();
  s.upsertNode(node('n1', '10.0.0.1', 'a', '10.244.1.0/24'));
  s.upsertNode(node('n2', '10.0.0.2', 'b', '10.244.2.0/24'));
  s.upsertService(service('svc', { clusterIP: '10.96.0.1', ports: [{ name: 'p80', port: 80 }], ...spec }));
  s.upsertEndpointSlice(slice('svc-1', 'svc', endpoints));
  const [port] = s.servicePorts(IPFamily.IPv4);
  assert.ok(port);
  const n = s.node(nodeName);
  assert.ok(n);
  const r = categorizeEndpoints(s.endpoints(port), port, n, opts);
  const ips = (l: readonly { ip: string }[]): string[] => l.map((e) => e.ip);
  return {
    cluster: ips(r.cluster),
    local: ips(r.local),
    all: ips(r.allReachable),
    any: r.hasAnyEndpoints,
    mode: r.topologyMode,
  };
}

const zoned = (ip: string, nodeName: string, zone: string, c = {}) =>
  ep(ip, nodeName, c, { zone, hints: { forZones: [{ name: zone }] } });

test('cluster policy uses every ready endpoint', () => {
  const r = categorize({}, [ep('10.244.1.2', 'n1'), ep('10.244.2.2', 'n2'), ep('10.244.2.3', 'n2', { ready: false })]);
  assert.deepEqual(r.cluster, ['10.244.1.2', '10.244.2.2']);
  assert.deepEqual(r.local, []);
  assert.ok(r.any);
});

test('cluster policy falls back to serving+terminating endpoints when none is ready', () => {
  const r = categorize({}, [
    ep('10.244.1.2', 'n1', { ready: false, serving: true, terminating: true }),
    ep('10.244.2.2', 'n2', { ready: false, serving: false, terminating: true }),
  ]);
  assert.deepEqual(r.cluster, ['10.244.1.2']);
  assert.ok(r.any);
});

test('zone hints: used when every ready endpoint has one and some match the zone', () => {
  const eps = [zoned('10.244.1.2', 'n1', 'a'), zoned('10.244.2.2', 'n2', 'b')];
  assert.deepEqual(categorize({}, eps, 'n1').cluster, ['10.244.1.2']);
  assert.deepEqual(categorize({}, eps, 'n2').cluster, ['10.244.2.2']);
  assert.equal(categorize({}, eps, 'n2').mode, 'PreferSameZone');
  // One endpoint without a hint: hints ignored.
  const partial = [zoned('10.244.1.2', 'n1', 'a'), ep('10.244.2.2', 'n2')];
  assert.deepEqual(categorize({}, partial, 'n1').cluster, ['10.244.1.2', '10.244.2.2']);
  // No endpoint hinted for this zone: hints ignored.
  const elsewhere = [zoned('10.244.2.2', 'n2', 'b'), zoned('10.244.2.3', 'n2', 'b')];
  assert.deepEqual(categorize({}, elsewhere, 'n1').cluster, ['10.244.2.2', '10.244.2.3']);
});

test('node hints (PreferSameNode) win over zone hints, unless the gate is off', () => {
  const eps = [
    ep('10.244.1.2', 'n1', {}, { zone: 'a', hints: { forZones: [{ name: 'a' }], forNodes: [{ name: 'n1' }] } }),
    ep('10.244.1.3', 'n2', {}, { zone: 'a', hints: { forZones: [{ name: 'a' }], forNodes: [{ name: 'n2' }] } }),
  ];
  assert.deepEqual(categorize({}, eps, 'n1').cluster, ['10.244.1.2']);
  assert.deepEqual(categorize({}, eps, 'n1', { preferSameNodeHints: false }).cluster, ['10.244.1.2', '10.244.1.3']);
});

test('internal traffic policy Local: only local endpoints, terminating fallback per node', () => {
  const r1 = categorize({ internalTrafficPolicy: 'Local' }, [ep('10.244.1.2', 'n1'), ep('10.244.2.2', 'n2')], 'n1');
  assert.deepEqual(r1.cluster, []);
  assert.deepEqual(r1.local, ['10.244.1.2']);
  assert.deepEqual(r1.all, ['10.244.1.2']);
  const r2 = categorize(
    { internalTrafficPolicy: 'Local' },
    [ep('10.244.1.2', 'n1', { ready: false, serving: true, terminating: true }), ep('10.244.2.2', 'n2')],
    'n1',
  );
  assert.deepEqual(r2.local, ['10.244.1.2']);
  const r3 = categorize({ internalTrafficPolicy: 'Local' }, [ep('10.244.2.2', 'n2')], 'n1');
  assert.deepEqual(r3.local, []);
  assert.ok(r3.any, 'the service still has endpoints elsewhere');
});

test('external traffic policy Local: cluster and local lists, union reachable', () => {
  const spec = {
    type: 'NodePort',
    externalTrafficPolicy: 'Local',
    ports: [{ name: 'p80', port: 80, nodePort: 30080 }],
  };
  const r = categorize(
    spec,
    [
      zoned('10.244.1.2', 'n1', 'a'),
      zoned('10.244.2.2', 'n2', 'b'),
      ep(
        '10.244.1.9',
        'n1',
        { ready: false, serving: true, terminating: true },
        { zone: 'a', hints: { forZones: [{ name: 'a' }] } },
      ),
    ],
    'n2',
  );
  assert.deepEqual(r.cluster, ['10.244.2.2']);
  assert.deepEqual(r.local, ['10.244.2.2']);
  const r1 = categorize(spec, [zoned('10.244.1.2', 'n1', 'a'), zoned('10.244.2.2', 'n2', 'b')], 'n1');
  assert.deepEqual(r1.all, ['10.244.1.2']);
});

test('no endpoints anywhere', () => {
  const r = categorize({}, [ep('10.244.1.2', 'n1', { ready: false, serving: false })]);
  assert.deepEqual(r.cluster, []);
  assert.equal(r.any, false);
});
