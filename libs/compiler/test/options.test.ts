// The options the compiler takes from a KubeProxyConfiguration: the resolved values, wherever the file gave them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IPFamily, NodePortAddressesKind, loadKubeProxyConfig, parseCidr } from '@kpx/model';
import {
  chainRules,
  compileIptables,
  compileIpvs,
  iptablesOptionsFromConfig,
  ipvsOptionsFromConfig,
} from '../src/index.js';
import { TWO_NODES, stateFrom, svcWithEndpoints } from './helpers.js';

const HEADER = 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n';
const config = (body: string) => loadKubeProxyConfig(HEADER + body).config;

const state = stateFrom(
  TWO_NODES +
    svcWithEndpoints(
      'a',
      '{clusterIP: 10.96.0.1, ports: [{name: p80, port: 80}]}',
      '[{addresses: [10.244.2.2], nodeName: n2, conditions: {ready: true}}]',
    ),
);

/** Whether the iptables rules of n1 masquerade every packet to the cluster IP (masqueradeAll). */
function iptablesMasqueradesAll(body: string): boolean {
  const rs = compileIptables({
    state,
    nodeName: 'n1',
    options: iptablesOptionsFromConfig(config(body), IPFamily.IPv4),
  });
  const svc =
    (chainRules(rs, 'nat', 'KUBE-SERVICES') ?? []).find((r) => r.includes('-d 10.96.0.1 '))?.split(' -j ')[1] ?? '';
  return (chainRules(rs, 'nat', svc) ?? []).some((r) => r.endsWith('--dport 80 -j KUBE-MARK-MASQ'));
}

/** Whether the IPVS companion rules of n1 masquerade every packet to a cluster IP (masqueradeAll). */
function ipvsMasqueradesAll(body: string): boolean {
  const rs = compileIpvs({
    state,
    nodeName: 'n1',
    options: ipvsOptionsFromConfig(config(`mode: ipvs\n${body}`), IPFamily.IPv4),
  });
  return (chainRules(rs, 'nat', 'KUBE-SERVICES') ?? []).some((r) =>
    r.endsWith('--match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ'),
  );
}

test('a top-level masqueradeAll: true changes the rules, as the per-mode field does', () => {
  assert.equal(iptablesMasqueradesAll(''), false);
  assert.equal(
    iptablesMasqueradesAll('masqueradeAll: true\n'),
    true,
    'top level (warned as used as iptables.masqueradeAll)',
  );
  assert.equal(iptablesMasqueradesAll('iptables:\n  masqueradeAll: true\n'), true);
  assert.equal(
    iptablesMasqueradesAll('masqueradeAll: true\niptables:\n  masqueradeAll: false\n'),
    false,
    'the section wins',
  );
  assert.equal(ipvsMasqueradesAll(''), false);
  assert.equal(ipvsMasqueradesAll('masqueradeAll: true\n'), true, 'ipvs mode reads it as iptables.masqueradeAll');
  assert.equal(ipvsMasqueradesAll('iptables:\n  masqueradeAll: true\n'), true);
});

test('options carry the resolved values: masqueradeBit by mode, typed nodePortAddresses, the IPVS scheduler', () => {
  assert.equal(iptablesOptionsFromConfig(config('iptables:\n  masqueradeBit: 9\n'), IPFamily.IPv4).masqueradeBit, 9);
  const nft = config('mode: nftables\niptables:\n  masqueradeBit: 9\nnftables:\n  masqueradeBit: 3\n');
  assert.equal(iptablesOptionsFromConfig(nft, IPFamily.IPv4).masqueradeBit, 3);
  const cidrs = iptablesOptionsFromConfig(
    config('nodePortAddresses: [10.0.0.0/8, "fd00::/64"]\n'),
    IPFamily.IPv6,
  ).nodePortAddresses;
  assert.deepEqual(cidrs, {
    kind: NodePortAddressesKind.CIDRs,
    cidrs: [parseCidr('10.0.0.0/8'), parseCidr('fd00::/64')],
  });
  const ipvs = ipvsOptionsFromConfig(config('mode: ipvs\nipvs:\n  scheduler: wlc\n'), IPFamily.IPv4);
  assert.equal(ipvs.scheduler, 'wlc');
  assert.equal(ipvs.localhostNodePorts, false);
});
