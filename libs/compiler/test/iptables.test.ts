// Behaviour of the iptables compiler, rule family by rule family, against kube-proxy's semantics.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IPFamily, LocalMode, parseCidr } from '@kpx/model';
import { NodeNotFoundError, masqueradeMark, probability, serviceChainNames } from '../src/index.js';
import { TWO_NODES, chain, compile, stateFrom, svcWithEndpoints, nodePortAddresses } from './helpers.js';

const names = (svc: string) => serviceChainNames(`ns1/${svc}:p80`, 'tcp');
const READY_BOTH = '[{addresses: [10.244.1.2], nodeName: n1}, {addresses: [10.244.2.2], nodeName: n2}]';
const ONLY_N2 = '[{addresses: [10.244.2.2], nodeName: n2}]';
const clusterCIDR = { clusterCIDRs: [parseCidr('10.244.0.0/16')!] };

test('ClusterIP: KUBE-SERVICES -> KUBE-SVC -> KUBE-SEP with equal probabilities', () => {
  const rs = compile(
    stateFrom(TWO_NODES + svcWithEndpoints('a', '{clusterIP: 10.96.0.1, ports: [{name: p80, port: 80}]}', READY_BOTH)),
    'n1',
    clusterCIDR,
  );
  const n = names('a');
  assert.ok(
    chain(rs, 'nat', 'KUBE-SERVICES')?.includes(
      `-A KUBE-SERVICES -m comment --comment "ns1/a:p80 cluster IP" -m tcp -p tcp -d 10.96.0.1 --dport 80 -j ${n.cluster}`,
    ),
  );
  const svc = chain(rs, 'nat', n.cluster) ?? [];
  assert.equal(
    svc[0],
    `-A ${n.cluster} -m comment --comment "ns1/a:p80 cluster IP" -m tcp -p tcp -d 10.96.0.1 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ`,
  );
  assert.match(svc[1] ?? '', /--probability 0.5000000000 -j KUBE-SEP-/);
  assert.doesNotMatch(svc[2] ?? '', /probability/);
  assert.equal(chain(rs, 'nat', n.external), undefined, 'no EXT chain for a ClusterIP-only service');
});

test('no endpoints: REJECT in filter, no nat chains', () => {
  const rs = compile(
    stateFrom(
      TWO_NODES +
        svcWithEndpoints(
          'a',
          '{type: NodePort, clusterIP: 10.96.0.1, externalIPs: [192.0.2.1], ports: [{name: p80, port: 80, nodePort: 30080}]}',
          '[]',
        ),
    ),
    'n1',
  );
  const n = names('a');
  assert.ok(
    chain(rs, 'filter', 'KUBE-SERVICES')?.includes(
      '-A KUBE-SERVICES -m comment --comment "ns1/a:p80 has no endpoints" -m tcp -p tcp -d 10.96.0.1 --dport 80 -j REJECT',
    ),
  );
  const ext = chain(rs, 'filter', 'KUBE-EXTERNAL-SERVICES') ?? [];
  assert.ok(
    ext.includes(
      '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/a:p80 has no endpoints" -m tcp -p tcp -d 192.0.2.1 --dport 80 -j REJECT',
    ),
  );
  assert.ok(
    ext.includes(
      '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/a:p80 has no endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j REJECT',
    ),
  );
  for (const c of [n.cluster, n.external, n.local]) assert.equal(chain(rs, 'nat', c), undefined);
  assert.equal(chain(rs, 'nat', 'KUBE-NODEPORTS')?.length, 0);
});

test('eTP Local: node with local endpoint keeps source; node without drops external traffic but short-circuits pods', () => {
  const st = stateFrom(
    TWO_NODES +
      svcWithEndpoints(
        'a',
        '{type: NodePort, clusterIP: 10.96.0.1, externalTrafficPolicy: Local, ports: [{name: p80, port: 80, nodePort: 30080}]}',
        ONLY_N2,
      ),
  );
  const n = names('a');
  const on2 = compile(st, 'n2', clusterCIDR);
  assert.deepEqual(chain(on2, 'nat', n.external), [
    `-A ${n.external} -m comment --comment "pod traffic for ns1/a:p80 external destinations" -s 10.244.0.0/16 -j ${n.cluster}`,
    `-A ${n.external} -m comment --comment "masquerade LOCAL traffic for ns1/a:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ`,
    `-A ${n.external} -m comment --comment "route LOCAL traffic for ns1/a:p80 external destinations" -m addrtype --src-type LOCAL -j ${n.cluster}`,
    `-A ${n.external} -j ${n.local}`,
  ]);
  assert.equal(chain(on2, 'nat', n.local)?.length, 1);
  const on1 = compile(st, 'n1', clusterCIDR);
  assert.equal(chain(on1, 'nat', n.external)?.length, 3, 'short-circuit rules only, no jump to SVL');
  assert.equal(chain(on1, 'nat', n.local), undefined);
  assert.ok(
    chain(on1, 'filter', 'KUBE-EXTERNAL-SERVICES')?.includes(
      '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/a:p80 has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j DROP',
    ),
  );
  assert.ok(chain(on1, 'nat', 'KUBE-NODEPORTS')?.some((r) => r.endsWith(`-j ${n.external}`)));
});

test('eTP Cluster NodePort masquerades in KUBE-EXT', () => {
  const rs = compile(
    stateFrom(
      TWO_NODES +
        svcWithEndpoints(
          'a',
          '{type: NodePort, clusterIP: 10.96.0.1, ports: [{name: p80, port: 80, nodePort: 30080}]}',
          ONLY_N2,
        ),
    ),
    'n1',
  );
  const n = names('a');
  assert.deepEqual(chain(rs, 'nat', n.external), [
    `-A ${n.external} -m comment --comment "masquerade traffic for ns1/a:p80 external destinations" -j KUBE-MARK-MASQ`,
    `-A ${n.external} -j ${n.cluster}`,
  ]);
});

test('iTP Local without a local endpoint: DROP the cluster IP; with one: only it', () => {
  const st = stateFrom(
    TWO_NODES +
      svcWithEndpoints(
        'a',
        '{clusterIP: 10.96.0.1, internalTrafficPolicy: Local, ports: [{name: p80, port: 80}]}',
        ONLY_N2,
      ),
  );
  const n = names('a');
  const on1 = compile(st, 'n1');
  assert.ok(
    chain(on1, 'filter', 'KUBE-SERVICES')?.includes(
      '-A KUBE-SERVICES -m comment --comment "ns1/a:p80 has no local endpoints" -m tcp -p tcp -d 10.96.0.1 --dport 80 -j DROP',
    ),
  );
  const on2 = compile(st, 'n2');
  assert.ok(chain(on2, 'nat', 'KUBE-SERVICES')?.some((r) => r.endsWith(`-j ${n.local}`)));
  assert.equal(chain(on2, 'nat', n.cluster), undefined);
});

test('LoadBalancer with source ranges: KUBE-FW chain, firewall drop, node allowed when its IP is in range', () => {
  const st = stateFrom(
    TWO_NODES +
      svcWithEndpoints(
        'a',
        '{type: LoadBalancer, clusterIP: 10.96.0.1, loadBalancerSourceRanges: [10.0.0.0/24, 198.51.100.0/24], ports: [{name: p80, port: 80, nodePort: 30080}]}',
        ONLY_N2,
        '{loadBalancer: {ingress: [{ip: 192.0.2.10}, {ip: 192.0.2.11, ipMode: Proxy}]}}',
      ),
  );
  const n = names('a');
  const rs = compile(st, 'n1');
  assert.ok(
    chain(rs, 'nat', 'KUBE-SERVICES')?.includes(
      `-A KUBE-SERVICES -m comment --comment "ns1/a:p80 loadbalancer IP" -m tcp -p tcp -d 192.0.2.10 --dport 80 -j ${n.firewall}`,
    ),
  );
  assert.ok(!chain(rs, 'nat', 'KUBE-SERVICES')?.some((r) => r.includes('192.0.2.11')), 'ipMode Proxy gets no rules');
  assert.deepEqual(chain(rs, 'nat', n.firewall), [
    `-A ${n.firewall} -m comment --comment "ns1/a:p80 loadbalancer IP" -s 10.0.0.0/24 -j ${n.external}`,
    `-A ${n.firewall} -m comment --comment "ns1/a:p80 loadbalancer IP" -s 198.51.100.0/24 -j ${n.external}`,
    `-A ${n.firewall} -m comment --comment "ns1/a:p80 loadbalancer IP" -s 192.0.2.10 -j ${n.external}`,
    `-A ${n.firewall} -m comment --comment "other traffic to ns1/a:p80 will be dropped by KUBE-PROXY-FIREWALL"`,
  ]);
  assert.ok(
    chain(rs, 'filter', 'KUBE-PROXY-FIREWALL')?.includes(
      `-A KUBE-PROXY-FIREWALL -m comment --comment "ns1/a:p80 traffic not accepted by ${n.firewall}" -m tcp -p tcp -d 192.0.2.10 --dport 80 -j DROP`,
    ),
  );
});

test('ClientIP affinity: recent checks before the random split, recent set in the SEP', () => {
  const rs = compile(
    stateFrom(
      TWO_NODES +
        svcWithEndpoints(
          'a',
          '{clusterIP: 10.96.0.1, sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 300}}, ports: [{name: p80, port: 80}]}',
          READY_BOTH,
        ),
    ),
    'n1',
  );
  const svc = chain(rs, 'nat', names('a').cluster) ?? [];
  assert.equal(svc.length, 4);
  assert.match(svc[0] ?? '', /-m recent --name (KUBE-SEP-\w+) --rcheck --seconds 300 --reap -j \1$/);
  const sep = /-j (KUBE-SEP-\w+)$/.exec(svc[0] ?? '')?.[1] ?? '';
  assert.match(
    chain(rs, 'nat', sep)?.[1] ?? '',
    new RegExp(`-m recent --name ${sep} --set -m tcp -p tcp -j DNAT --to-destination 10.244.1.2:8080$`),
  );
});

test('hairpin: every SEP masquerades its own pod', () => {
  const rs = compile(
    stateFrom(TWO_NODES + svcWithEndpoints('a', '{clusterIP: 10.96.0.1, ports: [{name: p80, port: 80}]}', ONLY_N2)),
    'n1',
  );
  const sep = (chain(rs, 'nat', names('a').cluster) ?? [])[0]?.split(' -j ')[1] ?? '';
  assert.equal(chain(rs, 'nat', sep)?.[0], `-A ${sep} -m comment --comment ns1/a:p80 -s 10.244.2.2 -j KUBE-MARK-MASQ`);
});

test('masqueradeAll and local detection modes', () => {
  const st = stateFrom(
    TWO_NODES + svcWithEndpoints('a', '{clusterIP: 10.96.0.1, ports: [{name: p80, port: 80}]}', ONLY_N2),
  );
  const first = (opts: Parameters<typeof compile>[2]) =>
    chain(compile(st, 'n1', opts), 'nat', names('a').cluster)?.[0] ?? '';
  assert.match(first({ masqueradeAll: true }), /--dport 80 -j KUBE-MARK-MASQ$/);
  assert.match(first({ detectLocalMode: LocalMode.NodeCIDR }), /--dport 80 ! -s 10.244.1.0\/24 -j KUBE-MARK-MASQ$/);
  assert.match(
    first({ detectLocalMode: LocalMode.BridgeInterface, bridgeInterface: 'cbr0' }),
    /! -i cbr0 -j KUBE-MARK-MASQ$/,
  );
  assert.match(
    first({ detectLocalMode: LocalMode.InterfaceNamePrefix, interfaceNamePrefix: 'veth' }),
    /! -i veth\+ -j KUBE-MARK-MASQ$/,
  );
  assert.doesNotMatch(first({}), /KUBE-MARK-MASQ/, 'no detector (no clusterCIDR): no off-cluster masquerade');
});

test('masquerade bit sets the mark like kube-proxy (%#08x)', () => {
  assert.equal(masqueradeMark(14), '0x004000');
  assert.equal(masqueradeMark(0), '0x000001');
  assert.equal(masqueradeMark(31), '0x80000000');
  const rs = compile(stateFrom(TWO_NODES), 'n1', { masqueradeBit: 5 });
  assert.deepEqual(chain(rs, 'nat', 'KUBE-MARK-MASQ'), ['-A KUBE-MARK-MASQ -j MARK --or-mark 0x000020']);
});

test('nodePortAddresses: per-address tail rules; primary; loopback handling', () => {
  const st = stateFrom(TWO_NODES);
  const tail = (opts: Parameters<typeof compile>[2]) =>
    (chain(compile(st, 'n1', opts), 'nat', 'KUBE-SERVICES') ?? []).filter((r) => r.includes('KUBE-NODEPORTS'));
  assert.deepEqual(tail({}), [
    '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
  ]);
  assert.deepEqual(
    tail({ localhostNodePorts: false }).map((r) => r.split('LOCAL ')[1]),
    ['! -d 127.0.0.0/8 -j KUBE-NODEPORTS'],
  );
  assert.deepEqual(
    tail({ nodePortAddresses: nodePortAddresses('10.0.0.0/8') }).map((r) => r.split('chain" ')[1]),
    ['-d 10.0.0.1 -j KUBE-NODEPORTS'],
  );
  assert.deepEqual(
    tail({ nodePortAddresses: nodePortAddresses('primary') }).map((r) => r.split('chain" ')[1]),
    ['-d 10.0.0.1 -j KUBE-NODEPORTS'],
  );
  assert.deepEqual(
    tail({ nodePortAddresses: nodePortAddresses('127.0.0.0/8', '10.0.0.0/8') }).map((r) => r.split('chain" ')[1]),
    ['-d 10.0.0.1 -j KUBE-NODEPORTS', '-d 127.0.0.1 -j KUBE-NODEPORTS'],
  );
  // nodePortAddresses without loopback turn localhost NodePorts (and the KUBE-FIREWALL guard) off.
  assert.equal(
    chain(compile(st, 'n1', { nodePortAddresses: nodePortAddresses('10.0.0.0/8') }), 'filter', 'KUBE-FIREWALL'),
    undefined,
  );
  assert.ok(chain(compile(st, 'n1'), 'filter', 'KUBE-FIREWALL'));
  const v6 = (chain(compile(st, 'n1', { family: IPFamily.IPv6 }), 'nat', 'KUBE-SERVICES') ?? []).filter((r) =>
    r.includes('KUBE-NODEPORTS'),
  );
  assert.match(v6[0] ?? '', /--dst-type LOCAL ! -d ::1\/128 -j KUBE-NODEPORTS$/);
});

test('topology: a node uses the endpoints hinted for its zone', () => {
  const eps =
    '[{addresses: [10.244.1.2], nodeName: n1, zone: a, hints: {forZones: [{name: a}]}}, {addresses: [10.244.2.2], nodeName: n2, zone: b, hints: {forZones: [{name: b}]}}]';
  const st = stateFrom(
    TWO_NODES +
      svcWithEndpoints(
        'a',
        '{clusterIP: 10.96.0.1, trafficDistribution: PreferClose, ports: [{name: p80, port: 80}]}',
        eps,
      ),
  );
  const dnat = (node: string) =>
    compile(st, node)
      .objects.flatMap((o) => (o.kind === 'iptables.chain' ? o.rules : []))
      .filter((r) => r.includes('-j DNAT'))
      .map((r) => r.split('--to-destination ')[1]);
  assert.deepEqual(dnat('n1'), ['10.244.1.2:8080']);
  assert.deepEqual(dnat('n2'), ['10.244.2.2:8080']);
});

test('large cluster mode drops per-endpoint comments above 1000 endpoints', () => {
  const many = `[${Array.from({ length: 1001 }, (_, i) => `{addresses: [10.244.${(i >> 8) + 10}.${i & 255}], nodeName: n2}`).join(',')}]`;
  const rs = compile(
    stateFrom(TWO_NODES + svcWithEndpoints('a', '{clusterIP: 10.96.0.1, ports: [{name: p80, port: 80}]}', many)),
    'n1',
  );
  const svc = chain(rs, 'nat', names('a').cluster) ?? [];
  assert.equal(svc.length, 1001);
  assert.ok(svc.every((r) => !r.includes('->')));
  assert.match(svc[1] ?? '', /^-A KUBE-SVC-\w+ -m statistic --mode random --probability 0.0010000000 -j KUBE-SEP-/);
});

test('probability matches Go %0.10f', () => {
  assert.equal(probability(2), '0.5000000000');
  assert.equal(probability(3), '0.3333333333');
  assert.equal(probability(7), '0.1428571429');
});

test('unknown node is an error naming the known ones', () => {
  assert.throws(
    () => compile(stateFrom(TWO_NODES), 'n9'),
    (e: unknown) => e instanceof NodeNotFoundError && /n1, n2/.test(e.message),
  );
});
