// portVariantKey is what lets the controller compile a service port once for every node that shares a key.
// If two nodes share a key but would get different objects, nodes get wrong rules: check it exhaustively on
// the fixture clusters, for every port, every pair of nodes and several configurations.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IPFamily, LocalMode, loadClusterState, parseCidr, readManifestDir, type ClusterState } from '@kpx/model';
import {
  compileServicePort,
  defaultIptablesOptions,
  makeContext,
  portVariantKey,
  totalEndpoints,
  type IptablesOptions,
} from '../src/index.js';
import { TWO_NODES, repoRoot, stateFrom, svcWithEndpoints } from './helpers.js';

async function fixtureStates(): Promise<[string, ClusterState][]> {
  const dirs = ['examples/', 'test/e2e/fixtures/cluster/'];
  const out: [string, ClusterState][] = [];
  for (const d of dirs) out.push([d, loadClusterState(await readManifestDir(new URL(d, repoRoot).pathname)).state]);
  const nodeHints =
    '[{addresses: [10.244.1.2], nodeName: n1, zone: a, hints: {forZones: [{name: a}], forNodes: [{name: n1}]}}, {addresses: [10.244.2.2], nodeName: n2, zone: b, hints: {forZones: [{name: b}], forNodes: [{name: n2}]}}]';
  out.push([
    'node hints',
    stateFrom(TWO_NODES + svcWithEndpoints('h', '{clusterIP: 10.96.0.1, ports: [{name: p80, port: 80}]}', nodeHints)),
  ]);
  return out;
}

const configs: [string, Partial<IptablesOptions>][] = [
  ['defaults', {}],
  ['clusterCIDR', { clusterCIDRs: [parseCidr('10.244.0.0/16')!, parseCidr('fd00:10:244::/56')!] }],
  ['NodeCIDR', { detectLocalMode: LocalMode.NodeCIDR }],
  ['masqueradeAll, no node hints', { masqueradeAll: true, topology: { preferSameNodeHints: false } }],
];

test('nodes with the same variant key get identical objects for a port; keys tell apart what differs', async () => {
  let ports = 0;
  let distinct = 0;
  for (const [name, state] of await fixtureStates()) {
    for (const family of [IPFamily.IPv4, IPFamily.IPv6]) {
      for (const [cfgName, cfg] of configs) {
        const opts = {
          ...defaultIptablesOptions(family),
          ...cfg,
          clusterCIDRs: (cfg.clusterCIDRs ?? []).filter((c) => c.family === family),
        };
        const svcs = state.servicePorts(family);
        const total = totalEndpoints(state, svcs);
        const ctxs = state.nodeNames().map((n) => makeContext(state.node(n)!, opts, total));
        for (const svc of svcs) {
          ports++;
          const eps = state.endpoints(svc);
          const byKey = new Map<string, string>();
          const outputs = new Set<string>();
          for (const ctx of ctxs) {
            const key = portVariantKey(ctx, svc, eps);
            const out = JSON.stringify(compileServicePort(ctx, svc, eps));
            outputs.add(out);
            const seen = byKey.get(key);
            if (seen === undefined) byKey.set(key, out);
            else
              assert.equal(
                out,
                seen,
                `${name} ${family} ${cfgName} ${svc.name}: node ${ctx.node.name} shares key "${key}" but differs`,
              );
          }
          // Keys may split more finely than outputs, but never coarser (checked above); count what they save.
          if (byKey.size > 1) distinct++;
          assert.ok(byKey.size >= outputs.size);
        }
      }
    }
  }
  assert.ok(ports > 100, `checked ${ports} ports`);
  assert.ok(distinct > 5, 'some ports really are node-specific');
});
