// Test helpers: network namespaces of the test's own, compiled example states, kernel dumps.
import type { TestContext } from 'node:test';
import type { ClusterState, ManifestObject } from '@kpx/model';
import { IPFamily, loadClusterState, parseCidr, readManifestDir } from '@kpx/model';
import { compileIptables, defaultIptablesOptions, toWire } from '@kpx/compiler';
import type { RuleObject } from '@kpx/proto';
import { createCommandRunner, isIptablesObject, parseSave, type CommandRunner } from '../src/index.js';

export const examplesDir = new URL('../../../../examples/', import.meta.url).pathname;

const host = createCommandRunner();
let nsCounter = 0;

/** Creates a network namespace `kpxk-<pid>-N`, deleted when the test ends (also when it fails). */
export async function makeNetns(t: TestContext): Promise<{ name: string; runner: CommandRunner }> {
  const name = `kpxk-${process.pid}-${nsCounter++}`;
  await host.run({ file: 'ip', args: ['netns', 'add', name] });
  t.after(async () => {
    await host.run({ file: 'ip', args: ['netns', 'del', name] });
  });
  return { name, runner: createCommandRunner({ netns: name }) };
}

export async function exampleManifests(): Promise<ManifestObject[]> {
  return readManifestDir(examplesDir);
}

export function clusterOf(objects: readonly ManifestObject[]): ClusterState {
  return loadClusterState(objects).state;
}

/** The iptables wire objects of one node of the cluster (iptables mode), as the controller would publish them. */
export function compileNode(cluster: ClusterState, node: string, family: IPFamily = IPFamily.IPv4): RuleObject[] {
  const cidr = parseCidr(family === IPFamily.IPv4 ? '10.244.0.0/16' : 'fd00:10:244::/56');
  const options = { ...defaultIptablesOptions(family), clusterCIDRs: cidr ? [cidr] : [] };
  // Node duties (healthcheck.service) are no kernel objects: the executor keeps them from the applier.
  return compileIptables({ state: cluster, nodeName: node, options }).objects.filter(isIptablesObject).map(toWire);
}

/** Rewrites, in a copy of the manifests, every occurrence of one endpoint address. */
export function withEndpointAddress(objects: readonly ManifestObject[], from: string, to: string): ManifestObject[] {
  return objects.map((m) =>
    JSON.stringify(m.object).includes(`"${from}"`)
      ? {
          ...m,
          object: JSON.parse(JSON.stringify(m.object).replaceAll(`"${from}"`, `"${to}"`)) as ManifestObject['object'],
        }
      : m,
  );
}

/** The manifests without the objects of one service (the Service and its EndpointSlices). */
export function withoutService(objects: readonly ManifestObject[], namespace: string, name: string): ManifestObject[] {
  return objects.filter((m) => {
    const meta = m.object.metadata;
    if (meta?.namespace !== namespace) return true;
    if (m.object.kind === 'Service') return meta.name !== name;
    if (m.object.kind === 'EndpointSlice') return meta.labels?.['kubernetes.io/service-name'] !== name;
    return true;
  });
}

/** Every chain of a table as `NAME` → its rules, from iptables-save inside the namespace. */
export async function dumpTable(runner: CommandRunner, save: string, table: string): Promise<Map<string, string[]>> {
  const { stdout } = await runner.run({ file: save, args: ['-t', table] });
  const out = new Map<string, string[]>();
  for (const c of parseSave(stdout).get(table)?.chains.values() ?? []) out.set(c.name, c.rules);
  return out;
}

/** nf_tables rule handles per chain of one table: a chain that was rewritten gets new handles. */
export async function nftHandles(
  runner: CommandRunner,
  family: 'ip' | 'ip6',
  table: string,
): Promise<Map<string, string>> {
  const { stdout } = await runner.run({ file: 'nft', args: ['-a', 'list', 'table', family, table] });
  const out = new Map<string, string[]>();
  let chain: string | undefined;
  for (const line of stdout.split('\n')) {
    const start = /^\s*chain (\S+) \{/.exec(line);
    if (start) {
      chain = start[1];
      if (chain !== undefined) out.set(chain, []);
      continue;
    }
    const handle = /# handle (\d+)\s*$/.exec(line);
    if (chain !== undefined && handle?.[1] !== undefined && !/^\s*chain /.test(line)) out.get(chain)?.push(handle[1]);
  }
  return new Map([...out].map(([c, hs]) => [c, hs.join(',')]));
}

/** Chain names of kpx's objects touched by a change (chain objects, and the chains of fragments). */
export function chainsOfChange(
  upserts: readonly RuleObject[],
  deletes: readonly { kind: string; key: string }[],
): Set<string> {
  const out = new Set<string>();
  for (const o of upserts) {
    if (o.payload?.$case === 'iptablesChain') out.add(o.payload.value.name);
    if (o.payload?.$case === 'iptablesRules') out.add(o.payload.value.chain);
  }
  for (const d of deletes) {
    const [, chain] = d.key.split('/');
    if (d.kind !== 'iptables.jump' && chain !== undefined) out.add(chain);
  }
  return out;
}
