import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClusterState } from '../src/cluster.js';
import { IPFamily } from '../src/ip.js';
import { loadClusterState, parseManifests } from '../src/manifests.js';
import { ep, node, service, slice } from './fixtures.js';

test('endpoints merge over slices by name; the later slice wins for the same address', () => {
  const s = new ClusterState();
  s.upsertService(service('svc', { clusterIP: '10.96.0.1', ports: [{ name: 'p80', port: 80 }] }));
  s.upsertEndpointSlice(slice('svc-b', 'svc', [ep('10.244.1.2', 'n1', { ready: true }), ep('10.244.1.10', 'n1')]));
  s.upsertEndpointSlice(slice('svc-a', 'svc', [ep('10.244.1.2', 'n1', { ready: false }), ep('10.244.1.3', 'n2')]));
  const [port] = s.servicePorts(IPFamily.IPv4);
  assert.ok(port);
  const eps = s.endpoints(port);
  assert.deepEqual(
    eps.map((e) => e.address),
    ['10.244.1.2:80', '10.244.1.3:80', '10.244.1.10:80'],
  );
  assert.equal(eps[0]?.ready, true, 'svc-b sorts after svc-a and wins');
  s.deleteEndpointSlice('ns1', 'svc-b');
  assert.deepEqual(
    s.endpoints(port).map((e) => [e.address, e.ready]),
    [
      ['10.244.1.2:80', false],
      ['10.244.1.3:80', true],
    ],
  );
});

test('slice ports match service ports by name and protocol', () => {
  const s = new ClusterState();
  s.upsertService(
    service('dns', {
      clusterIP: '10.96.0.10',
      ports: [
        { name: 'dns', port: 53, protocol: 'UDP' },
        { name: 'dns-tcp', port: 53, protocol: 'TCP' },
      ],
    }),
  );
  s.upsertEndpointSlice(
    slice('dns-1', 'dns', [ep('10.244.1.2', 'n1')], {
      ports: [
        { name: 'dns', port: 5353, protocol: 'UDP' },
        { name: 'dns-tcp', port: 5354, protocol: 'TCP' },
        { name: 'dns', port: 9, protocol: 'SCTP' },
      ],
    }),
  );
  const [dnsTcp, dnsUdp] = s.servicePorts(IPFamily.IPv4);
  assert.equal(dnsUdp?.name, 'ns1/dns:dns');
  assert.equal(dnsUdp?.protocol, 'UDP');
  assert.deepEqual(
    s.endpoints(dnsUdp).map((e) => e.port),
    [5353],
  );
  assert.deepEqual(
    s.endpoints(dnsTcp!).map((e) => e.port),
    [5354],
  );
});

test('a bad EndpointSlice is reported and the rest still loads', () => {
  const s = new ClusterState();
  const d = s.upsertEndpointSlice(slice('bad', 'svc', [ep('10.244.1.999', 'n1')]));
  assert.equal(d[0]?.field, 'endpoints[0].addresses[0]');
  assert.equal(d[0]?.object.name, 'bad');
  assert.equal(
    s.upsertEndpointSlice(slice('v6', 'svc', [ep('10.0.0.1', 'n1')], { addressType: 'IPv6' }))[0]?.field,
    'endpoints[0].addresses[0]',
  );
  assert.equal(
    s.upsertEndpointSlice(slice('port', 'svc', [ep('10.0.0.1', 'n1')], { ports: [{ name: 'p', port: 0 }] }))[0]?.field,
    'ports[0].port',
  );
  const noLabel = slice('nolabel', 'svc', []);
  delete noLabel.metadata?.labels?.['kubernetes.io/service-name'];
  assert.match(s.upsertEndpointSlice(noLabel)[0]?.field ?? '', /service-name/);
  assert.deepEqual(s.upsertNode(node('n1', '10.0.0.1', 'a', '10.244.1.0/24')), []);
  assert.deepEqual(s.nodeNames(), ['n1']);
});

test('manifests: multi-document YAML, kind List, JSON; wrong apiVersion and v1 Endpoints reported', () => {
  const yaml = `
apiVersion: v1
kind: Service
metadata: {name: a, namespace: x}
spec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata: {name: n1}
- apiVersion: discovery.k8s.io/v1beta1
  kind: EndpointSlice
  metadata: {name: old, namespace: x}
---
apiVersion: v1
kind: Endpoints
metadata: {name: a, namespace: x}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ignored}
`;
  const objs = parseManifests(yaml, 'f.yaml');
  assert.equal(objs.length, 5);
  assert.equal(objs[2]?.source, 'f.yaml#2#items[1]');
  const { state, diagnostics } = loadClusterState(objs);
  assert.deepEqual(state.nodeNames(), ['n1']);
  assert.equal(state.servicePorts(IPFamily.IPv4).length, 1);
  assert.deepEqual(
    diagnostics.map((d) => [d.object.name, d.field, d.severity]),
    [
      ['old', 'apiVersion', 'error'],
      ['a', 'kind', 'warning'],
    ],
  );
  const json = parseManifests('{"apiVersion":"v1","kind":"Node","metadata":{"name":"j"}}', 'f.json');
  assert.equal(json[0]?.object.metadata?.name, 'j');
  assert.throws(() => parseManifests('a: [1,\n', 'broken.yaml'), /broken\.yaml/);
});

test('an object defined twice: warning, the later definition wins', () => {
  const node = (ip: string) =>
    `apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus: {addresses: [{type: InternalIP, address: ${ip}}]}\n`;
  const { state, diagnostics } = loadClusterState([
    ...parseManifests(node('10.0.0.1'), 'a.yaml'),
    ...parseManifests(node('10.0.0.2'), 'b.yaml'),
  ]);
  assert.equal(state.node('n1')?.addresses[0]?.ip, '10.0.0.2');
  assert.match(diagnostics[0]?.message ?? '', /also defined in a\.yaml/);
  assert.equal(diagnostics[0]?.source, 'b.yaml');
});
