// ipvsPortVariantKeyFn and ipvsAddressVariantKeyFn let the controller compile a port (or an address) once for
// every node sharing a key. Two nodes sharing a key but needing different objects would get wrong rules: check
// every port of the fixture clusters on every pair of nodes under several configurations.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IPFamily, LocalMode, loadClusterState, parseCidr, readManifestDir, type ClusterState } from '@kpx/model';
import {
  compileIpvsAddress,
  compileIpvsServicePort,
  defaultIpvsOptions,
  ipvsAddressClaims,
  ipvsAddressVariantKeyFn,
  ipvsServicePortParts,
  makeIpvsContext,
  type IpvsOptions,
} from '../src/index.js';
import { TWO_NODES, repoRoot, stateFrom, svcWithEndpoints, nodePortAddresses } from './helpers.js';

async function fixtureStates(): Promise<[string, ClusterState][]> {
  const out: [string, ClusterState][] = [];
  for (const d of ['examples/', 'test/e2e/fixtures/cluster/'])
    out.push([d, loadClusterState(await readManifestDir(new URL(d, repoRoot).pathname)).state]);
  const nodeHints =
    '[{addresses: [10.244.1.2], nodeName: n1, zone: a, hints: {forZones: [{name: a}], forNodes: [{name: n1}]}}, {addresses: [10.244.2.2], nodeName: n2, zone: b, hints: {forZones: [{name: b}], forNodes: [{name: n2}]}}]';
  out.push([
    'node hints',
    stateFrom(TWO_NODES + svcWithEndpoints('h', '{clusterIP: 10.96.0.1, ports: [{name: p80, port: 80}]}', nodeHints)),
  ]);
  out.push([
    'external IP = node IP, LB ranges',
    stateFrom(
      TWO_NODES +
        svcWithEndpoints(
          'x',
          '{type: LoadBalancer, clusterIP: 10.96.0.2, externalIPs: [10.0.0.1], loadBalancerSourceRanges: [10.0.0.1/32], ports: [{name: p80, port: 80, nodePort: 30080}]}',
          '[{addresses: [10.244.2.2], nodeName: n2}]',
          '{loadBalancer: {ingress: [{ip: 10.0.0.2}]}}',
        ),
    ),
  ]);
  return out;
}

const configs: [string, Partial<IpvsOptions>][] = [
  ['defaults', {}],
  ['clusterCIDR, mh', { clusterCIDRs: [parseCidr('10.244.0.0/16')!, parseCidr('fd00:10:244::/56')!], scheduler: 'mh' }],
  [
    'NodeCIDR, nodePortAddresses',
    { detectLocalMode: LocalMode.NodeCIDR, nodePortAddresses: nodePortAddresses('10.0.0.0/8') },
  ],
  ['no node hints', { topology: { preferSameNodeHints: false } }],
];

test('ipvs: nodes with the same variant key get identical objects for each part of a port and for an address', async () => {
  let ports = 0;
  let split = 0;
  for (const [name, state] of await fixtureStates()) {
    for (const family of [IPFamily.IPv4, IPFamily.IPv6]) {
      for (const [cfgName, cfg] of configs) {
        const opts: IpvsOptions = {
          ...defaultIpvsOptions(family),
          ...cfg,
          clusterCIDRs: (cfg.clusterCIDRs ?? []).filter((c) => c.family === family),
        };
        const ctxs = state.nodeNames().map((n) => makeIpvsContext(state.node(n)!, opts));
        for (const svc of state.servicePorts(family)) {
          ports++;
          const eps = state.endpoints(svc);
          const parts = ipvsServicePortParts(opts, svc, eps);
          let split1 = false;
          for (const part of parts) {
            const byKey = new Map<string, string>();
            for (const ctx of ctxs) {
              const key = part.keyFn?.(ctx) ?? '';
              const out = JSON.stringify(part.compile(ctx));
              const seen = byKey.get(key);
              if (seen === undefined) byKey.set(key, out);
              else
                assert.equal(
                  out,
                  seen,
                  `${name} ${family} ${cfgName} ${svc.name} part "${part.name}": node ${ctx.node.name} shares key "${key}" but differs`,
                );
            }
            if (byKey.size > 1) split1 = true;
          }
          if (split1) split++;
          // The parts are the whole port.
          for (const ctx of ctxs) {
            const whole = compileIpvsServicePort(ctx, svc, eps).map((o) => `${o.kind}:${o.key}`);
            assert.deepEqual(
              parts
                .flatMap((p) => p.compile(ctx))
                .map((o) => `${o.kind}:${o.key}`)
                .sort(),
              [...whole].sort(),
              `${svc.name} parts`,
            );
          }
          for (const claim of ipvsAddressClaims(svc)) {
            const fn = ipvsAddressVariantKeyFn(claim);
            const byAddrKey = new Map<string, string>();
            for (const ctx of ctxs) {
              const key = fn?.(ctx) ?? '';
              const out = JSON.stringify(compileIpvsAddress(ctx, claim));
              const seen = byAddrKey.get(key);
              if (seen === undefined) byAddrKey.set(key, out);
              else
                assert.equal(
                  out,
                  seen,
                  `${name} ${family} ${claim.address}: node ${ctx.node.name} shares key "${key}" but differs`,
                );
            }
          }
        }
      }
    }
  }
  assert.ok(ports > 100, `checked ${ports} ports`);
  assert.ok(split > 5, 'some ports really are node-specific');
});
