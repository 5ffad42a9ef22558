// Golden dumps of IPVS mode: `ipvsadm -Sn`, `ipset save` and iptables-restore text of whole nodes. Regenerate
// with UPDATE_GOLDEN=1 after reviewing the diff; a change here is a change in what nodes get programmed with.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { IPFamily, loadClusterState, parseCidr, readManifestDir, type ClusterState } from '@kpx/model';
import { compileIpvs, defaultIpvsOptions, renderIpvsRuleSet, type IpvsOptions } from '../src/index.js';
import { TWO_NODES, examplesState, goldenDir, readGolden, repoRoot, stateFrom, svcWithEndpoints } from './helpers.js';

function render(state: ClusterState, node: string, opts: Partial<IpvsOptions> = {}): string {
  const family = opts.family ?? IPFamily.IPv4;
  return renderIpvsRuleSet(compileIpvs({ state, nodeName: node, options: { ...defaultIpvsOptions(family), ...opts } }));
}

function checkGolden(name: string, got: string): void {
  if (process.env.UPDATE_GOLDEN) writeFileSync(new URL(name, goldenDir), got);
  const want = readGolden(name);
  assert.ok(want !== undefined, `missing golden file ${name}: run with UPDATE_GOLDEN=1`);
  assert.equal(got, want);
}

const clusterCIDRs = [parseCidr('10.244.0.0/16')!, parseCidr('fd00:10:244::/56')!];

for (const { node, family } of [
  { node: 'node-a', family: IPFamily.IPv4 },
  { node: 'node-b', family: IPFamily.IPv4 },
  { node: 'node-c', family: IPFamily.IPv4 },
  { node: 'node-a', family: IPFamily.IPv6 },
]) {
  test(`golden ipvs: examples, ${node}, ${family}`, async () => {
    const opts = { family, clusterCIDRs: clusterCIDRs.filter((c) => c.family === family) };
    checkGolden(`ipvs-examples-${node}-${family.toLowerCase()}.txt`, render(await examplesState(), node, opts));
  });
}

test('golden ipvs: LB with source ranges excluding the node, UDP NodePort with eTP Local, mh scheduler, no clusterCIDR', () => {
  const st = stateFrom(
    TWO_NODES +
      svcWithEndpoints(
        'lb',
        '{type: LoadBalancer, clusterIP: 10.96.0.1, sessionAffinity: ClientIP, loadBalancerSourceRanges: [198.51.100.0/24], ports: [{name: p80, port: 80, nodePort: 30080}]}',
        '[{addresses: [10.244.1.2], nodeName: n1}, {addresses: [10.244.2.2], nodeName: n2}]',
        '{loadBalancer: {ingress: [{ip: 192.0.2.10}]}}',
      ) +
      `---
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: ns1}
spec: {type: NodePort, clusterIP: 10.96.0.2, externalTrafficPolicy: Local, ports: [{name: dns, port: 53, protocol: UDP, nodePort: 30053}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: dns-1, namespace: ns1, labels: {kubernetes.io/service-name: dns}}
addressType: IPv4
ports: [{name: dns, port: 5353, protocol: UDP}]
endpoints: [{addresses: [10.244.2.3], nodeName: n2}]
`,
  );
  checkGolden('ipvs-targeted-n2.txt', render(st, 'n2', { scheduler: 'mh' }));
});

test('ipvs output is deterministic whatever the input order', async () => {
  const objects = await readManifestDir(new URL('examples/', repoRoot).pathname);
  assert.equal(
    render(loadClusterState(objects).state, 'node-a'),
    render(loadClusterState([...objects].reverse()).state, 'node-a'),
  );
});
