// Self-test of the netns harness with hand-written rules: what each probe outcome means, routing, masquerade
// source addresses, cleanup. Needs root (CI runs as root); fails rather than skips without it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  createTopology,
  IpFamily,
  listNamespaces,
  RulesLoadError,
  standardNode,
  standardPod,
  sweepNamespaces,
  type ProbeResult,
  type Topology,
} from '../src/index.js';

const n1 = standardNode('n1', 1);
const n2 = standardNode('n2', 2);
const pa = standardPod('pa', n1, 10);
const pb = standardPod('pb', n1, 11);
const pc = standardPod('pc', n2, 10);

// Hand-written rules for n1 (not kube-proxy's): a "service" 10.96.0.1:80 DNATed to pc and masqueraded, one
// REJECTed (TCP and UDP) and one DROPped address, and a hairpin 10.96.0.2:80 → pa masqueraded.
const n1Rules = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 10.96.0.1/32 -p tcp --dport 80 -j MARK --set-xmark 0x4000/0x4000
-A PREROUTING -d 10.96.0.1/32 -p tcp --dport 80 -j DNAT --to-destination ${pc.ipv4}:8080
-A PREROUTING -d 10.96.0.2/32 -p tcp --dport 80 -j MARK --set-xmark 0x4000/0x4000
-A PREROUTING -d 10.96.0.2/32 -p tcp --dport 80 -j DNAT --to-destination ${pa.ipv4}:8080
-A PREROUTING -d 10.0.0.11/32 -p tcp --dport 30000 -j DNAT --to-destination ${pb.ipv4}:8080
-A POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -d 10.96.0.3/32 -j REJECT
-A FORWARD -d 10.96.0.4/32 -j DROP
COMMIT
`;

let topo: Topology | undefined;
function t(): Topology {
  if (topo === undefined) throw new Error('topology not built');
  return topo;
}
const one = async (from: string, req: Parameters<Topology['probe']>[1][number]): Promise<ProbeResult[]> =>
  (await t().probe(from, [req]))[0] ?? [];

describe('netns topology harness', () => {
  before(async () => {
    topo = await createTopology({
      nodes: [n1, n2],
      pods: [pa, pb, pc],
      client: { routes: [{ destination: '192.0.2.1', via: 'n1' }] },
    });
    await t().loadRules('n1', n1Rules, IpFamily.IPv4);
    await Promise.all([pa, pb, pc].map((p) => t().startServer(p.name, { tcp: [8080], udp: [8053] })));
  });
  after(async () => {
    await topo?.cleanup();
  });

  it('pods reach pods on other nodes over IPv4 and IPv6 and see the real source', async () => {
    const [v4, v6, udp] = await t().probe('pa', [
      { proto: 'tcp', host: pc.ipv4, port: 8080 },
      { proto: 'tcp', host: pc.ipv6, port: 8080 },
      { proto: 'udp', host: pc.ipv4, port: 8053 },
    ]);
    assert.deepEqual(v4, [{ kind: 'reply', pod: 'pc', clientIP: pa.ipv4, replies: 1 }]);
    assert.deepEqual(v6, [{ kind: 'reply', pod: 'pc', clientIP: pa.ipv6, replies: 1 }]);
    assert.deepEqual(udp, [{ kind: 'reply', pod: 'pc', clientIP: pa.ipv4, replies: 1 }]);
  });

  it('a TCP connection stays open for many lines', async () => {
    assert.deepEqual(await one('pb', { proto: 'tcp', host: pc.ipv4, port: 8080, messages: 10 }), [
      { kind: 'reply', pod: 'pc', clientIP: pb.ipv4, replies: 10 },
    ]);
  });

  it('a closed port is refused (TCP RST, UDP ICMP port unreachable)', async () => {
    const [tcp, udp] = await t().probe('pa', [
      { proto: 'tcp', host: pc.ipv4, port: 9 },
      { proto: 'udp', host: pc.ipv4, port: 9 },
    ]);
    assert.deepEqual(tcp, [{ kind: 'refused' }]);
    assert.deepEqual(udp, [{ kind: 'refused' }]);
  });

  it('the external client reaches nothing but the LAN', async () => {
    assert.deepEqual(await one('ext', { proto: 'tcp', host: pa.ipv4, port: 8080, timeoutMs: 1000 }), [
      { kind: 'unreachable', code: 'ENETUNREACH' },
    ]);
  });

  it('DNAT + MASQUERADE: the pod sees the node LAN address, locally and across nodes', async () => {
    const [remote, hairpin, nodePort] = await Promise.all([
      one('pb', { proto: 'tcp', host: '10.96.0.1', port: 80 }),
      one('pa', { proto: 'tcp', host: '10.96.0.2', port: 80 }),
      one('ext', { proto: 'tcp', host: n1.lanIPv4, port: 30000 }),
    ]);
    assert.deepEqual(remote, [{ kind: 'reply', pod: 'pc', clientIP: n1.lanIPv4, replies: 1 }]);
    assert.deepEqual(hairpin, [{ kind: 'reply', pod: 'pa', clientIP: n1.lanIPv4, replies: 1 }]);
    assert.deepEqual(nodePort, [{ kind: 'reply', pod: 'pb', clientIP: '10.0.0.100', replies: 1 }]);
  });

  it('REJECT is refused every time (ICMP rate limit off), TCP and UDP', async () => {
    const [tcp, udp] = await t().probe('pa', [
      { proto: 'tcp', host: '10.96.0.3', port: 80, count: 10 },
      { proto: 'udp', host: '10.96.0.3', port: 53, count: 10 },
    ]);
    assert.ok(tcp?.length === 10 && tcp.every((o) => o.kind === 'refused'), JSON.stringify(tcp));
    assert.ok(udp?.length === 10 && udp.every((o) => o.kind === 'refused'), JSON.stringify(udp));
  });

  it('DROP and unrouted addresses time out (forwarded to the uplink, lost silently)', async () => {
    const [dropped, unrouted] = await t().probe('pa', [
      { proto: 'tcp', host: '10.96.0.4', port: 80, timeoutMs: 1200 },
      { proto: 'tcp', host: '192.0.2.77', port: 80, timeoutMs: 1200 },
    ]);
    assert.deepEqual(dropped, [{ kind: 'timeout' }]);
    assert.deepEqual(unrouted, [{ kind: 'timeout' }]);
  });

  it('loadRules reports iptables-restore errors', async () => {
    await assert.rejects(t().loadRules('n2', '*nat\n-A NOPE -j ACCEPT\nCOMMIT\n', IpFamily.IPv4), RulesLoadError);
  });

  it('cleanup kills the servers and deletes every namespace; twice is fine; the sweeper finds nothing left', async () => {
    const { prefix } = t();
    assert.ok((await listNamespaces()).some((ns) => ns.startsWith(prefix)));
    await t().cleanup();
    await t().cleanup();
    assert.deepEqual(
      (await listNamespaces()).filter((ns) => ns.startsWith(prefix)),
      [],
    );
    assert.deepEqual(await sweepNamespaces(prefix), []);
  });
});
