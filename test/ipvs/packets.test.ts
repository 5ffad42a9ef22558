// Real TCP and UDP packets through IPVS (run inside tools/ipvs-vm: `npm run test:ipvs`). The e2e cluster's
// manifests are compiled by compileIpvs for every node and applied by the IPVS applier in the node's namespace;
// pods and the external client send real packets: ClusterIP, NodePort, session affinity, externalTrafficPolicy
// Local, a service without endpoints, and an open connection that survives its real server's removal.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { compileIpvs, ipvsOptionsFromConfig, toWire } from '@kpx/compiler';
import { createIpvsApplier, type IpvsApplier } from '@kpx/kernel';
import { loadClusterState, loadKubeProxyConfig, readManifestDir } from '@kpx/model';
import { isDuty, type RuleObject } from '@kpx/proto';
import { digestOf } from '@kpx/ruleset';
import {
  createTopology,
  standardNode,
  standardPod,
  type ProbeRequest,
  type ProbeResult,
  type Topology,
} from '@kpx/testing';
import { holdConnection, svc } from './helpers.js';

const Fixtures = new URL('../../e2e/fixtures/', import.meta.url).pathname;
const nodes = { n1: standardNode('n1', 1), n2: standardNode('n2', 2), n3: standardNode('n3', 3) };
const pods = {
  p1a: standardPod('p1a', nodes.n1, 10),
  p1b: standardPod('p1b', nodes.n1, 11),
  p1c: standardPod('p1c', nodes.n1, 12),
  p2a: standardPod('p2a', nodes.n2, 10),
  p2b: standardPod('p2b', nodes.n2, 11),
  p3a: standardPod('p3a', nodes.n3, 10),
  p3b: standardPod('p3b', nodes.n3, 11),
};
let topo: Topology;
const appliers = new Map<string, IpvsApplier>();
const applied = new Map<string, RuleObject[]>();

before(async () => {
  topo = await createTopology({
    nodes: Object.values(nodes),
    pods: Object.values(pods),
    client: { ipv4: '10.0.0.100', ipv6: 'fd00::100' },
  });
  const { state } = loadClusterState(await readManifestDir(`${Fixtures}cluster`));
  const { config } = loadKubeProxyConfig(await readFile(`${Fixtures}config/kube-proxy.yaml`, 'utf8'));
  const options = ipvsOptionsFromConfig(config, 'IPv4');
  // One at a time: under TCG, node servers starting next to three full restores miss their start timeout.
  for (const pod of Object.keys(pods)) await topo.startServer(pod, { tcp: [8080], udp: [8053] });
  for (const node of Object.keys(nodes)) {
    const objects = compileIpvs({ state, nodeName: node, options })
      .objects.map(toWire)
      .filter((o) => !isDuty(o));
    const applier = createIpvsApplier({ family: 'IPv4', netns: topo.namespaceOf(node), drainIntervalMs: 0 });
    appliers.set(node, applier);
    await applier.fullRestore(objects);
    applied.set(node, objects);
  }
});

after(async () => {
  for (const a of appliers.values()) await a.close();
  await topo?.cleanup();
});

async function probe(from: string, req: ProbeRequest): Promise<ProbeResult[]> {
  const [r] = await topo.probe(from, [req]);
  return r ?? [];
}
const podsOf = (rs: ProbeResult[]): string[] =>
  [...new Set(rs.map((r) => (r.kind === 'reply' ? r.pod : r.kind)))].sort();

test('every node reads back the digest it was given', async () => {
  for (const [node, a] of appliers) assert.equal((await a.readBack()).digest, digestOf(applied.get(node)!), node);
});

test('ClusterIP: TCP and UDP from a pod reach the ready endpoints, on this node and another', async () => {
  assert.deepEqual(podsOf(await probe('p1b', { proto: 'tcp', host: '10.96.0.10', port: 80, count: 8 })), [
    'p1a',
    'p2a',
  ]);
  assert.deepEqual(podsOf(await probe('p1b', { proto: 'udp', host: '10.96.0.10', port: 53, count: 8 })), [
    'p1a',
    'p2a',
  ]);
});

test('NodePort (externalTrafficPolicy Cluster): the external client reaches endpoints behind any node', async () => {
  const rs = await probe('ext', { proto: 'tcp', host: '10.0.0.13', port: 30020, count: 8 });
  assert.deepEqual(
    podsOf(rs),
    ['p1a', 'p2a'],
    'n3 has no endpoint of np: IPVS forwards, the companion rules masquerade',
  );
});

test('session affinity ClientIP: one client always reaches the same endpoint', async () => {
  const rs = await probe('p1b', { proto: 'tcp', host: '10.96.0.70', port: 80, count: 6 });
  assert.equal(podsOf(rs).length, 1, JSON.stringify(rs));
  assert.equal(rs[0]?.kind, 'reply');
});

test('externalTrafficPolicy Local: only the local endpoint, client IP kept; a node without one does not answer', async () => {
  const rs = await probe('ext', { proto: 'tcp', host: '10.0.0.11', port: 30030, count: 4 });
  assert.deepEqual(podsOf(rs), ['p1b']);
  assert.ok(
    rs.every((r) => r.kind === 'reply' && r.clientIP === '10.0.0.100'),
    JSON.stringify(rs),
  );
  const none = await probe('ext', { proto: 'tcp', host: '10.0.0.13', port: 30030, count: 1, timeoutMs: 1500 });
  assert.notEqual(none[0]?.kind, 'reply');
});

test('a service without endpoints refuses connections', async () => {
  const rs = await probe('p1b', { proto: 'tcp', host: '10.96.0.80', port: 80, count: 1, timeoutMs: 1500 });
  assert.ok(rs[0]?.kind === 'refused' || rs[0]?.kind === 'unreachable', JSON.stringify(rs));
});

test('an open connection survives its real server removal while new connections go elsewhere', async () => {
  const n1 = appliers.get('n1')!;
  const held = holdConnection(topo.namespaceOf('p1b'), '10.96.0.10', 80);
  try {
    const first = (await held.exchange()).split(' ')[0]!;
    assert.ok(first === 'p1a' || first === 'p2a', first);
    const other = first === 'p1a' ? 'p2a' : 'p1a';
    const keep = first === 'p1a' ? pods.p2a.ipv4 : pods.p1a.ipv4;
    // The delta the controller would send when the endpoint goes: web's TCP virtual server without it.
    const web = svc('TCP', '10.96.0.10', 80, [[keep, 8080]]);
    await n1.applyDelta({ upserts: [web], deletes: [] });
    const desired = applied.get('n1')!.map((o) => (o.kind === web.kind && o.key === web.key ? web : o));
    assert.equal((await n1.readBack()).digest, digestOf(desired), 'the draining real server is not drift');
    assert.deepEqual(podsOf(await probe('p1b', { proto: 'tcp', host: '10.96.0.10', port: 80, count: 6 })), [other]);
    assert.equal((await held.exchange()).split(' ')[0], first, 'the open connection still reaches its pod');
    assert.equal(await n1.drain(), 1, 'a real server with an open connection is not deleted');
    assert.match(
      (await topo.exec('n1', 'ipvsadm', ['-Ln', '-t', '10.96.0.10:80'])).stdout,
      new RegExp(`${first === 'p1a' ? '10\\.244\\.1\\.10' : '10\\.244\\.2\\.10'}:8080 +Masq +0 +1 `),
    );
  } finally {
    await held.close();
  }
});
