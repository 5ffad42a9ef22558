// The node-side validator (issue #15 item 4): every compiled object passes; every way out of kpx's namespace is refused.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IPFamily } from '@kpx/model';
import { compileIpvs, defaultIpvsOptions, toWire } from '@kpx/compiler';
import type { RuleObject } from '@kpx/proto';
import {
  ForbiddenObjectError,
  assertOwnObjects,
  findForbiddenObject,
  forbiddenObject,
  forbiddenRuleText,
} from '../src/index.js';
import { clusterOf, compileNode, exampleManifests } from './helpers.js';

const chain = (name: string, rules: string[], table = 'nat'): RuleObject => ({
  kind: 'iptables.chain',
  key: `${table}/${name}`,
  payload: { $case: 'iptablesChain', value: { table, name, rules } },
});
const fragment = (chainName: string, rules: string[]): RuleObject => ({
  kind: 'iptables.rules',
  key: `nat/${chainName}/ns/svc:p`,
  payload: { $case: 'iptablesRules', value: { table: 'nat', chain: chainName, rules, position: 0 } },
});
const jump = (chainName: string, target: string, rule: string): RuleObject => ({
  kind: 'iptables.jump',
  key: `nat/${chainName}/${target}`,
  payload: {
    $case: 'iptablesJump',
    value: { table: 'nat', chain: chainName, target, rule, prepend: false, position: 0 },
  },
});
const vip = (iface: string, address = '10.96.0.10'): RuleObject => ({
  kind: 'ipvs.address',
  key: address,
  payload: { $case: 'ipvsAddress', value: { interface: iface, address } },
});
const set = (name: string, entries: string[] = []): RuleObject => ({
  kind: 'ipset.set',
  key: name,
  payload: {
    $case: 'ipsetSet',
    value: { name, type: 'hash:ip,port', family: 'inet', comment: '', hashSize: 0, maxElem: 0, portRange: '', entries },
  },
});
const entries = (name: string, e: string[]): RuleObject => ({
  kind: 'ipset.entries',
  key: `${name}/x`,
  payload: { $case: 'ipsetEntries', value: { set: name, entries: e } },
});

test("every object the compiler makes for the examples is kpx's own (iptables and IPVS, both families)", async () => {
  const cluster = clusterOf(await exampleManifests());
  for (const family of [IPFamily.IPv4, IPFamily.IPv6]) {
    for (const node of ['node-a', 'node-b']) {
      const ipt = compileNode(cluster, node, family);
      assert.ok(ipt.length > 0);
      assert.equal(findForbiddenObject(ipt), undefined, `${node} ${family} iptables`);
      const ipvs = compileIpvs({ state: cluster, nodeName: node, options: defaultIpvsOptions(family) }).objects.map(
        toWire,
      );
      assert.equal(findForbiddenObject(ipvs), undefined, `${node} ${family} ipvs`);
    }
  }
});

test("chains outside KUBE-* (and kubelet's canaries) are refused; KUBE-FIREWALL is allowed", () => {
  for (const name of ['CILIUM_POST_nat', 'DOCKER', 'INPUT', 'KUBE-KUBELET-CANARY', 'KUBE-IPTABLES-HINT', 'kube-svc']) {
    assert.match(forbiddenObject(chain(name, [])) ?? '', /outside kpx's chains/, name);
    assert.match(forbiddenObject(fragment(name, [])) ?? '', /outside kpx's chains/, name);
  }
  assert.equal(forbiddenObject(chain('KUBE-SVC-ABCDEF', ['-j KUBE-SEP-X'])), undefined);
  assert.equal(forbiddenObject(chain('KUBE-FIREWALL', [], 'filter')), undefined);
  assert.match(forbiddenObject(chain('KUBE-SVC-A', [], 'security')) ?? '', /table "security"/);
});

test('rule text that would leave its chain is refused', () => {
  const bad = [
    '-j ACCEPT\nCOMMIT',
    '-j ACCEPT\r',
    '-j ACCEPT\0',
    '*filter',
    ':INPUT ACCEPT [0:0]',
    'COMMIT',
    '-m comment --comment x COMMIT',
    '-F',
    '-X KUBE-SVC-A',
    '-P INPUT ACCEPT',
    '-N EVIL',
    '-E KUBE-SVC-A EVIL',
    '-Z',
    '-s 10.0.0.1 -j ACCEPT -A INPUT -j ACCEPT',
    '-j ACCEPT -I INPUT 1 -j ACCEPT',
    '-j ACCEPT -D INPUT 1',
    '-j ACCEPT --append INPUT',
  ];
  for (const r of bad) {
    assert.ok(forbiddenRuleText(r), JSON.stringify(r));
    assert.ok(forbiddenObject(chain('KUBE-SVC-A', ['-j KUBE-MARK-MASQ', r])), JSON.stringify(r));
    assert.ok(forbiddenObject(fragment('KUBE-SERVICES', [r])), JSON.stringify(r));
  }
  // A quoted comment holding such words is one argument, not a command.
  assert.equal(forbiddenRuleText('-m comment --comment "default/web -A x" -j KUBE-SVC-A'), undefined);
  assert.equal(forbiddenRuleText('-d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A'), undefined);
});

test("a builtin chain's jump object jumps to a kpx chain, and only there", () => {
  assert.equal(
    forbiddenObject(
      jump('PREROUTING', 'KUBE-SERVICES', '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ),
    undefined,
  );
  assert.match(forbiddenObject(jump('PREROUTING', 'DOCKER', '-j DOCKER')) ?? '', /not a kpx chain/);
  assert.match(forbiddenObject(jump('KUBE-SERVICES', 'KUBE-SVC-A', '-j KUBE-SVC-A')) ?? '', /not a builtin chain/);
  assert.match(forbiddenObject(jump('INPUT', 'KUBE-SERVICES', '-j ACCEPT')) ?? '', /must jump to KUBE-SERVICES only/);
  assert.match(forbiddenObject(jump('INPUT', 'KUBE-SERVICES', '-j KUBE-SERVICES -g DOCKER')) ?? '', /only/);
  assert.ok(forbiddenObject(jump('INPUT', 'KUBE-SERVICES', '-j KUBE-SERVICES\n-A INPUT -j ACCEPT')));
});

test('IPVS objects: VIPs only on kube-ipvs0, ipsets only KUBE-*, entries without line breaks', () => {
  assert.equal(forbiddenObject(vip('kube-ipvs0')), undefined);
  assert.match(forbiddenObject(vip('eth0')) ?? '', /interface "eth0"/);
  assert.match(forbiddenObject(vip('kube-ipvs0', '10.0.0.1\nflush')) ?? '', /not an IP address/);
  assert.equal(forbiddenObject(set('KUBE-CLUSTER-IP', ['10.96.0.10,tcp:80'])), undefined);
  assert.match(forbiddenObject(set('my-allowlist')) ?? '', /outside kpx's sets/);
  assert.match(forbiddenObject(entries('cali40all-hosts', ['10.0.0.1'])) ?? '', /outside kpx's sets/);
  assert.match(forbiddenObject(entries('KUBE-CLUSTER-IP', ['10.0.0.1\ndestroy'])) ?? '', /line break/);
  const svc: RuleObject = {
    kind: 'ipvs.service',
    key: 'TCP/10.96.0.10:80',
    payload: {
      $case: 'ipvsService',
      value: {
        protocol: 'TCP',
        address: '10.96.0.10',
        port: 80,
        scheduler: 'rr',
        flags: 0,
        timeoutSeconds: 0,
        realServers: [{ address: 'evil', port: 80, weight: 1 }],
      },
    },
  };
  assert.match(forbiddenObject(svc) ?? '', /"evil" is not an IP address/);
});

test('nftables objects only in table kube-proxy; an object without payload is refused', () => {
  const nft = (table: string, rules: string[]): RuleObject => ({
    kind: 'nft.chain',
    key: `ip/${table}/c`,
    payload: { $case: 'nftChain', value: { family: 'ip', table, name: 'c', base: '', comment: '', rules } },
  });
  assert.equal(forbiddenObject(nft('kube-proxy', ['ip daddr 10.96.0.10 tcp dport 80 goto service-x'])), undefined);
  assert.match(forbiddenObject(nft('filter', [])) ?? '', /table "filter"/);
  assert.ok(forbiddenObject(nft('kube-proxy', ['accept; flush ruleset'])));
  assert.equal(forbiddenObject({ kind: 'iptables.chain', key: 'x' }), 'no payload');
});

test('assertOwnObjects throws a ForbiddenObjectError naming the object', () => {
  assert.throws(
    () => assertOwnObjects([chain('KUBE-SVC-A', []), chain('EVIL', [])]),
    (err: unknown) => err instanceof ForbiddenObjectError && err.key === 'nat/EVIL' && /EVIL/.test(err.message),
  );
  assert.doesNotThrow(() => assertOwnObjects([chain('KUBE-SVC-A', [])]));
});

test('a conntrack.port duty names only IP addresses (they become conntrack arguments) and only UDP', () => {
  const duty = (ips: string[], endpoints: string[], protocol = 'UDP'): RuleObject => ({
    kind: 'conntrack.port',
    key: 'ns/dns:dns/UDP',
    payload: { $case: 'conntrackPort', value: { protocol, port: 53, ips, nodePort: 30053, endpoints } },
  });
  assert.equal(forbiddenObject(duty(['10.96.0.10', 'fd00::10'], ['10.244.1.2'])), undefined);
  assert.match(forbiddenObject(duty(['10.96.0.10'], ['--flush'])) ?? '', /"--flush" is not an IP address/);
  assert.match(forbiddenObject(duty(['-D'], ['10.244.1.2'])) ?? '', /"-D" is not an IP address/);
  assert.match(forbiddenObject(duty(['10.96.0.10'], ['10.244.1.2'], 'TCP')) ?? '', /not UDP/);
});
