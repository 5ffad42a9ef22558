// Behaviour of the IPVS compiler against kube-proxy's IPVS mode (pkg/proxy/ipvs/proxier.go).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IPFamily, parseCidr, type ClusterState } from '@kpx/model';
import {
  NodeNotFoundError,
  RuleKind,
  chainRules,
  compileIpvs,
  defaultIpvsOptions,
  ipsetMembers,
  renderIpvsadm,
  type IpvsOptions,
  type IpvsServiceObject,
  type NodeRuleSet,
} from '../src/index.js';
import { TWO_NODES, stateFrom, svcWithEndpoints, nodePortAddresses } from './helpers.js';

const READY_BOTH = '[{addresses: [10.244.1.2], nodeName: n1}, {addresses: [10.244.2.2], nodeName: n2}]';
const ONLY_N2 = '[{addresses: [10.244.2.2], nodeName: n2}]';

function ipvs(state: ClusterState, node: string, opts: Partial<IpvsOptions> = {}): NodeRuleSet {
  const family = opts.family ?? IPFamily.IPv4;
  return compileIpvs({ state, nodeName: node, options: { ...defaultIpvsOptions(family), ...opts } });
}

function vs(rs: NodeRuleSet, key: string): IpvsServiceObject | undefined {
  return rs.objects.find((o): o is IpvsServiceObject => o.kind === RuleKind.IpvsService && o.key === key);
}

const servers = (s: IpvsServiceObject | undefined): string[] =>
  (s?.realServers ?? []).map((r) => `${r.address}:${r.port}/${r.weight}`);
const members = (rs: NodeRuleSet, set: string): string[] => ipsetMembers(rs).get(set) ?? [];
const keys = (rs: NodeRuleSet, kind: string): string[] => rs.objects.filter((o) => o.kind === kind).map((o) => o.key);

test('ClusterIP: one virtual server, rr, masquerade real servers of weight 1, VIP bound, ipset members', () => {
  const rs = ipvs(
    stateFrom(TWO_NODES + svcWithEndpoints('a', '{clusterIP: 10.96.0.1, ports: [{name: p80, port: 80}]}', READY_BOTH)),
    'n1',
  );
  assert.equal(rs.mode, 'ipvs');
  const s = vs(rs, 'TCP/10.96.0.1:80');
  assert.ok(s);
  assert.equal(s.scheduler, 'rr');
  assert.equal(s.flags, 0);
  assert.equal(s.timeoutSeconds, 0);
  assert.deepEqual(servers(s), ['10.244.1.2:8080/1', '10.244.2.2:8080/1']);
  assert.deepEqual(keys(rs, RuleKind.IpvsAddress), ['kube-ipvs0/10.96.0.1']);
  assert.deepEqual(members(rs, 'KUBE-CLUSTER-IP'), ['10.96.0.1,tcp:80']);
  assert.deepEqual(members(rs, 'KUBE-IPVS-IPS'), ['10.96.0.1']);
  // Hairpin: only the endpoint on this node.
  assert.deepEqual(members(rs, 'KUBE-LOOP-BACK'), ['10.244.1.2,tcp:8080,10.244.1.2']);
  assert.deepEqual(
    members(
      ipvs(
        stateFrom(
          TWO_NODES + svcWithEndpoints('a', '{clusterIP: 10.96.0.1, ports: [{name: p80, port: 80}]}', READY_BOTH),
        ),
        'n2',
      ),
      'KUBE-LOOP-BACK',
    ),
    ['10.244.2.2,tcp:8080,10.244.2.2'],
  );
  // Membership is split by owner: the service port's fragment of KUBE-CLUSTER-IP.
  assert.ok(keys(rs, RuleKind.IpsetEntries).includes('KUBE-CLUSTER-IP/ns1/a:p80/TCP'));
  assert.equal(
    renderIpvsadm(rs),
    '-A -t 10.96.0.1:80 -s rr\n-a -t 10.96.0.1:80 -r 10.244.1.2:8080 -m -w 1\n-a -t 10.96.0.1:80 -r 10.244.2.2:8080 -m -w 1\n',
  );
});

test('scheduler comes from the options; mh sets the source-hash flag', () => {
  const st = stateFrom(
    TWO_NODES + svcWithEndpoints('a', '{clusterIP: 10.96.0.1, ports: [{name: p80, port: 80}]}', READY_BOTH),
  );
  assert.equal(vs(ipvs(st, 'n1', { scheduler: 'wlc' }), 'TCP/10.96.0.1:80')?.scheduler, 'wlc');
  const mh = vs(ipvs(st, 'n1', { scheduler: 'mh' }), 'TCP/10.96.0.1:80');
  assert.equal(mh?.scheduler, 'mh');
  assert.equal(mh?.flags, 0x10);
  assert.match(renderIpvsadm(ipvs(st, 'n1', { scheduler: 'mh' })), /^-A -t 10.96.0.1:80 -s mh -b mh-port$/m);
});

test('ClientIP affinity: persistent flag and timeout on every virtual server of the port', () => {
  const st = stateFrom(
    TWO_NODES +
      svcWithEndpoints(
        'a',
        '{type: NodePort, clusterIP: 10.96.0.1, externalIPs: [192.0.2.7], sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 300}}, ports: [{name: p80, port: 80, nodePort: 30080}]}',
        READY_BOTH,
      ),
  );
  const rs = ipvs(st, 'n1');
  for (const key of ['TCP/10.96.0.1:80', 'TCP/192.0.2.7:80', 'TCP/10.0.0.1:30080']) {
    assert.equal(vs(rs, key)?.flags, 0x1, key);
    assert.equal(vs(rs, key)?.timeoutSeconds, 300, key);
  }
  assert.match(renderIpvsadm(rs), /^-A -t 10.96.0.1:80 -s rr -p 300$/m);
});

test('eTP Local: NodePort, LB and externalIP servers only local; the cluster IP keeps every endpoint', () => {
  const st = stateFrom(
    TWO_NODES +
      svcWithEndpoints(
        'a',
        '{type: LoadBalancer, clusterIP: 10.96.0.1, externalTrafficPolicy: Local, healthCheckNodePort: 32000, externalIPs: [192.0.2.7], ports: [{name: p80, port: 80, nodePort: 30080}]}',
        READY_BOTH,
        '{loadBalancer: {ingress: [{ip: 192.0.2.10}]}}',
      ),
  );
  const rs = ipvs(st, 'n1');
  assert.deepEqual(servers(vs(rs, 'TCP/10.96.0.1:80')), ['10.244.1.2:8080/1', '10.244.2.2:8080/1']);
  for (const key of ['TCP/10.0.0.1:30080', 'TCP/192.0.2.7:80', 'TCP/192.0.2.10:80'])
    assert.deepEqual(servers(vs(rs, key)), ['10.244.1.2:8080/1'], key);
  assert.deepEqual(members(rs, 'KUBE-NODE-PORT-LOCAL-TCP'), ['30080']);
  assert.deepEqual(members(rs, 'KUBE-NODE-PORT-TCP'), ['30080']);
  assert.deepEqual(members(rs, 'KUBE-EXTERNAL-IP-LOCAL'), ['192.0.2.7,tcp:80']);
  assert.deepEqual(members(rs, 'KUBE-EXTERNAL-IP'), []);
  assert.deepEqual(members(rs, 'KUBE-LOAD-BALANCER-LOCAL'), ['192.0.2.10,tcp:80']);
  assert.deepEqual(members(rs, 'KUBE-HEALTH-CHECK-NODE-PORT'), ['32000']);
  assert.deepEqual(keys(rs, RuleKind.IpvsAddress), [
    'kube-ipvs0/10.96.0.1',
    'kube-ipvs0/192.0.2.10',
    'kube-ipvs0/192.0.2.7',
  ]);
  // The health check server, as in iptables mode: one local ready endpoint on n1.
  const hc = (node: string): unknown => ipvs(st, node).objects.filter((o) => o.kind === RuleKind.HealthCheckService);
  assert.deepEqual(hc('n1'), [
    { kind: RuleKind.HealthCheckService, key: '32000', namespace: 'ns1', name: 'a', port: 32000, localEndpoints: 1 },
  ]);
  assert.deepEqual(hc('n2'), [
    { kind: RuleKind.HealthCheckService, key: '32000', namespace: 'ns1', name: 'a', port: 32000, localEndpoints: 1 },
  ]);
});

test('eTP Local on a node without local endpoints falls back to the cluster endpoints (kubernetes#97081)', () => {
  const st = stateFrom(
    TWO_NODES +
      svcWithEndpoints(
        'a',
        '{type: NodePort, clusterIP: 10.96.0.1, externalTrafficPolicy: Local, ports: [{name: p80, port: 80, nodePort: 30080}]}',
        ONLY_N2,
      ),
  );
  assert.deepEqual(servers(vs(ipvs(st, 'n1'), 'TCP/10.0.0.1:30080')), ['10.244.2.2:8080/1']);
  assert.deepEqual(servers(vs(ipvs(st, 'n2'), 'TCP/10.0.0.2:30080')), ['10.244.2.2:8080/1']);
});

test('iTP Local: the cluster IP has only local endpoints; none on a node without', () => {
  const st = stateFrom(
    TWO_NODES +
      svcWithEndpoints(
        'a',
        '{clusterIP: 10.96.0.1, internalTrafficPolicy: Local, ports: [{name: p80, port: 80}]}',
        READY_BOTH,
      ),
  );
  assert.deepEqual(servers(vs(ipvs(st, 'n1'), 'TCP/10.96.0.1:80')), ['10.244.1.2:8080/1']);
  const only2 = stateFrom(
    TWO_NODES +
      svcWithEndpoints(
        'a',
        '{clusterIP: 10.96.0.1, internalTrafficPolicy: Local, ports: [{name: p80, port: 80}]}',
        ONLY_N2,
      ),
  );
  assert.deepEqual(servers(vs(ipvs(only2, 'n1'), 'TCP/10.96.0.1:80')), []);
});

test('terminating endpoints are used only when no endpoint is ready', () => {
  const eps =
    '[{addresses: [10.244.1.2], nodeName: n1, conditions: {ready: false, serving: true, terminating: true}}, {addresses: [10.244.2.2], nodeName: n2}]';
  const st = stateFrom(
    TWO_NODES + svcWithEndpoints('a', '{clusterIP: 10.96.0.1, ports: [{name: p80, port: 80}]}', eps),
  );
  assert.deepEqual(servers(vs(ipvs(st, 'n1'), 'TCP/10.96.0.1:80')), ['10.244.2.2:8080/1']);
  const allTerminating =
    '[{addresses: [10.244.1.2], nodeName: n1, conditions: {ready: false, serving: true, terminating: true}}]';
  const st2 = stateFrom(
    TWO_NODES + svcWithEndpoints('a', '{clusterIP: 10.96.0.1, ports: [{name: p80, port: 80}]}', allTerminating),
  );
  assert.deepEqual(servers(vs(ipvs(st2, 'n1'), 'TCP/10.96.0.1:80')), ['10.244.1.2:8080/1']);
});

test('no endpoints: virtual servers without real servers; KUBE-IPVS-FILTER rejects other ports of the VIPs', () => {
  const st = stateFrom(
    TWO_NODES +
      svcWithEndpoints(
        'a',
        '{type: NodePort, clusterIP: 10.96.0.1, ports: [{name: p80, port: 80, nodePort: 30080}]}',
        '[]',
      ),
  );
  const rs = ipvs(st, 'n1');
  assert.deepEqual(servers(vs(rs, 'TCP/10.96.0.1:80')), []);
  assert.deepEqual(servers(vs(rs, 'TCP/10.0.0.1:30080')), []);
  assert.deepEqual(members(rs, 'KUBE-CLUSTER-IP'), ['10.96.0.1,tcp:80']);
  assert.deepEqual(chainRules(rs, 'filter', 'KUBE-IPVS-FILTER')?.slice(-1), [
    '-m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT',
  ]);
});

test('NodePort: a virtual server per node address, filtered by nodePortAddresses; SCTP uses the hash set', () => {
  const st = stateFrom(`
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}, {type: ExternalIP, address: 198.51.100.1}, {type: InternalIP, address: "fd00::1"}]}
${svcWithEndpoints('a', '{type: NodePort, clusterIP: 10.96.0.1, ports: [{name: p80, port: 80, nodePort: 30080}, {name: s, port: 90, protocol: SCTP, nodePort: 30090}]}', '[{addresses: [10.244.1.2], nodeName: n1}]')}`);
  const all = ipvs(st, 'n1');
  assert.deepEqual(
    keys(all, RuleKind.IpvsService).filter((k) => k.includes(':300')),
    ['SCTP/10.0.0.1:30090', 'SCTP/198.51.100.1:30090', 'TCP/10.0.0.1:30080', 'TCP/198.51.100.1:30080'],
  );
  assert.deepEqual(members(all, 'KUBE-NODE-PORT-SCTP-HASH'), ['10.0.0.1,sctp:30090', '198.51.100.1,sctp:30090']);
  assert.deepEqual(members(all, 'KUBE-NODE-PORT-TCP'), ['30080']);
  // Node addresses are never bound to kube-ipvs0.
  assert.deepEqual(keys(all, RuleKind.IpvsAddress), ['kube-ipvs0/10.96.0.1']);
  const internalOnly = ipvs(st, 'n1', { nodePortAddresses: nodePortAddresses('10.0.0.0/8') });
  assert.deepEqual(
    keys(internalOnly, RuleKind.IpvsService).filter((k) => k.includes(':300')),
    ['SCTP/10.0.0.1:30090', 'TCP/10.0.0.1:30080'],
  );
  const primary = ipvs(st, 'n1', { nodePortAddresses: nodePortAddresses('primary') });
  assert.deepEqual(
    keys(primary, RuleKind.IpvsService).filter((k) => k.includes(':300')),
    ['SCTP/10.0.0.1:30090', 'TCP/10.0.0.1:30080'],
  );
  const none = ipvs(st, 'n1', { nodePortAddresses: nodePortAddresses('192.168.0.0/16') });
  assert.deepEqual(keys(none, RuleKind.IpvsService), ['SCTP/10.96.0.1:90', 'TCP/10.96.0.1:80']);
  assert.deepEqual(members(none, 'KUBE-NODE-PORT-TCP'), []);
});

test('LoadBalancer source ranges: FW and source CIDR members; node outside the ranges may not reach the LB', () => {
  const st = stateFrom(
    TWO_NODES +
      svcWithEndpoints(
        'a',
        '{type: LoadBalancer, clusterIP: 10.96.0.1, loadBalancerSourceRanges: [10.0.0.1/32, 198.51.100.0/24], ports: [{name: p80, port: 80, nodePort: 30080}]}',
        ONLY_N2,
        '{loadBalancer: {ingress: [{ip: 192.0.2.10}, {ip: 192.0.2.11, ipMode: Proxy}]}}',
      ),
  );
  const n1 = ipvs(st, 'n1');
  assert.deepEqual(members(n1, 'KUBE-LOAD-BALANCER'), ['192.0.2.10,tcp:80']);
  assert.deepEqual(members(n1, 'KUBE-LOAD-BALANCER-FW'), ['192.0.2.10,tcp:80']);
  assert.deepEqual(members(n1, 'KUBE-LOAD-BALANCER-SOURCE-CIDR'), [
    '192.0.2.10,tcp:80,10.0.0.1/32',
    '192.0.2.10,tcp:80,198.51.100.0/24',
  ]);
  assert.deepEqual(
    members(n1, 'KUBE-LOAD-BALANCER-SOURCE-IP'),
    ['192.0.2.10,tcp:80,192.0.2.10'],
    'n1 (10.0.0.1) is inside the ranges',
  );
  assert.deepEqual(chainRules(n1, 'filter', 'KUBE-IPVS-OUT-FILTER'), []);
  assert.equal(vs(n1, 'TCP/192.0.2.11:80'), undefined, 'ipMode Proxy gets no virtual server');
  const n2 = ipvs(st, 'n2');
  assert.deepEqual(members(n2, 'KUBE-LOAD-BALANCER-SOURCE-IP'), []);
  assert.deepEqual(chainRules(n2, 'filter', 'KUBE-IPVS-OUT-FILTER'), [
    '-s 192.0.2.10 -m ipvs --vaddr 192.0.2.10 --vproto tcp --vport 80 -j DROP',
  ]);
});

test('an externalIP that is a node address is not bound on that node; one VIP shared by two ports is one object', () => {
  const st = stateFrom(
    TWO_NODES +
      svcWithEndpoints(
        'a',
        '{clusterIP: 10.96.0.1, externalIPs: [10.0.0.1], ports: [{name: p80, port: 80}, {name: p81, port: 81}]}',
        READY_BOTH,
      ) +
      svcWithEndpoints(
        'b',
        '{clusterIP: 10.96.0.2, externalIPs: [10.0.0.1], ports: [{name: p80, port: 82}]}',
        READY_BOTH,
      ),
  );
  const n1 = ipvs(st, 'n1');
  assert.deepEqual(keys(n1, RuleKind.IpvsAddress), ['kube-ipvs0/10.96.0.1', 'kube-ipvs0/10.96.0.2']);
  assert.ok(vs(n1, 'TCP/10.0.0.1:80') && vs(n1, 'TCP/10.0.0.1:82'), 'its virtual servers still exist');
  const n2 = ipvs(st, 'n2');
  assert.deepEqual(keys(n2, RuleKind.IpvsAddress), [
    'kube-ipvs0/10.0.0.1',
    'kube-ipvs0/10.96.0.1',
    'kube-ipvs0/10.96.0.2',
  ]);
  assert.deepEqual(members(n2, 'KUBE-IPVS-IPS'), ['10.0.0.1', '10.96.0.1', '10.96.0.2']);
  const ids = n2.objects.map((o) => `${o.kind}:${o.key}`);
  assert.equal(new Set(ids).size, ids.length, 'no object twice');
});

test('IPv6: bracketed keys, inet6 sets named KUBE-6-, IPv6 members', () => {
  const st = stateFrom(`
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: "fd00::1"}]}
---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: ns1}
spec: {type: NodePort, clusterIP: "fd00:96::1", ipFamilies: [IPv6], ports: [{name: p80, port: 80, nodePort: 30080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: a-1, namespace: ns1, labels: {kubernetes.io/service-name: a}}
addressType: IPv6
ports: [{name: p80, port: 8080, protocol: TCP}]
endpoints: [{addresses: ["fd00:244::2"], nodeName: n1}]
`);
  const rs = ipvs(st, 'n1', { family: IPFamily.IPv6 });
  assert.deepEqual(keys(rs, RuleKind.IpvsService), ['TCP/[fd00:96::1]:80', 'TCP/[fd00::1]:30080']);
  assert.deepEqual(members(rs, 'KUBE-6-CLUSTER-IP'), ['fd00:96::1,tcp:80']);
  assert.deepEqual(members(rs, 'KUBE-6-LOOP-BACK'), ['fd00:244::2,tcp:8080,fd00:244::2']);
  assert.ok(keys(rs, RuleKind.IpsetSet).includes('KUBE-6-LOAD-BALANCER-SOURCE-CID'), 'names are cut at 31 characters');
  const set = rs.objects.find((o) => o.kind === RuleKind.IpsetSet && o.key === 'KUBE-6-CLUSTER-IP');
  assert.equal(set?.kind === RuleKind.IpsetSet ? set.family : '', 'inet6');
  assert.match(renderIpvsadm(rs), /^-a -t \[fd00:96::1\]:80 -r \[fd00:244::2\]:8080 -m -w 1$/m);
  assert.deepEqual(chainRules(rs, 'nat', 'KUBE-SERVICES')?.[0], '-s ::1/128 -j RETURN');
});

test('companion iptables: cluster IP masquerade follows masqueradeAll and local traffic detection', () => {
  const st = stateFrom(
    TWO_NODES + svcWithEndpoints('a', '{clusterIP: 10.96.0.1, ports: [{name: p80, port: 80}]}', READY_BOTH),
  );
  const rule = (opts: Partial<IpvsOptions>): string | undefined =>
    chainRules(ipvs(st, 'n1', opts), 'nat', 'KUBE-SERVICES')?.find(
      (r) => r.includes('KUBE-CLUSTER-IP') && r.includes('KUBE-MARK-MASQ'),
    );
  assert.match(rule({}) ?? '', /--match-set KUBE-CLUSTER-IP src,dst -j KUBE-MARK-MASQ$/);
  assert.match(rule({ masqueradeAll: true }) ?? '', /--match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ$/);
  assert.match(
    rule({ clusterCIDRs: [parseCidr('10.244.0.0/16')!] }) ?? '',
    /--match-set KUBE-CLUSTER-IP dst,dst ! -s 10.244.0.0\/16 -j KUBE-MARK-MASQ$/,
  );
  const rs = ipvs(st, 'n1');
  assert.deepEqual(
    rs.objects.filter((o) => o.kind === RuleKind.IptablesJump).map((o) => o.key),
    [
      'filter/FORWARD/KUBE-FORWARD',
      'filter/FORWARD/KUBE-PROXY-FIREWALL',
      'filter/INPUT/KUBE-IPVS-FILTER',
      'filter/INPUT/KUBE-NODE-PORT',
      'filter/INPUT/KUBE-PROXY-FIREWALL',
      'filter/OUTPUT/KUBE-IPVS-OUT-FILTER',
      'nat/OUTPUT/KUBE-SERVICES',
      'nat/POSTROUTING/KUBE-POSTROUTING',
      'nat/PREROUTING/KUBE-SERVICES',
    ],
  );
  assert.deepEqual(
    chainRules(rs, 'nat', 'KUBE-POSTROUTING')?.[0],
    '-m comment --comment "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE',
  );
});

test('unknown node: NodeNotFoundError', () => {
  assert.throws(() => ipvs(stateFrom(TWO_NODES), 'nope'), NodeNotFoundError);
});
