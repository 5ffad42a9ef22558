// Test helpers: build a cluster from manifest text and compile a node.
import { readFileSync } from 'node:fs';
import type { ClusterState } from '@kpx/model';
import {
  IPFamily,
  NodePortAddressesKind,
  loadClusterState,
  parseCidr,
  parseManifests,
  readManifestDir,
  type Cidr,
  type NodePortAddresses,
} from '@kpx/model';
import {
  chainRules,
  compileIptables,
  defaultIptablesOptions,
  renderRestore,
  type IptablesOptions,
  type NodeRuleSet,
} from '../src/index.js';

export const repoRoot = new URL('../../../../', import.meta.url);
export const goldenDir = new URL('../../test/golden/', import.meta.url);

/** nodePortAddresses as a KubeProxyConfiguration lists them (CIDRs, or "primary"), decoded. */
export function nodePortAddresses(...texts: string[]): NodePortAddresses {
  if (texts.length === 1 && texts[0] === 'primary') return { kind: NodePortAddressesKind.Primary };
  const cidrs = texts.map((t) => parseCidr(t)).filter((c): c is Cidr => c !== undefined);
  if (cidrs.length !== texts.length) throw new Error(`not CIDRs: ${texts.join(', ')}`);
  return cidrs.length === 0 ? { kind: NodePortAddressesKind.All } : { kind: NodePortAddressesKind.CIDRs, cidrs };
}

export async function examplesState(): Promise<ClusterState> {
  const { state } = loadClusterState(await readManifestDir(new URL('examples/', repoRoot).pathname));
  return state;
}

export function stateFrom(yaml: string): ClusterState {
  const { state, diagnostics } = loadClusterState(parseManifests(yaml, 'test.yaml'));
  const errors = diagnostics.filter((d) => d.severity === 'error');
  if (errors.length) throw new Error(`fixture errors: ${JSON.stringify(errors)}`);
  return state;
}

export function compile(state: ClusterState, nodeName: string, opts: Partial<IptablesOptions> = {}): NodeRuleSet {
  const family = opts.family ?? IPFamily.IPv4;
  return compileIptables({ state, nodeName, options: { ...defaultIptablesOptions(family), ...opts } });
}

export function render(state: ClusterState, nodeName: string, opts: Partial<IptablesOptions> = {}): string {
  return renderRestore(compile(state, nodeName, opts));
}

/** Rules of one chain as `-A CHAIN ...` lines. */
export function chain(rs: NodeRuleSet, table: 'nat' | 'filter', name: string): string[] | undefined {
  return chainRules(rs, table, name)?.map((r) => `-A ${name} ${r}`);
}

export function readGolden(name: string): string | undefined {
  try {
    return readFileSync(new URL(name, goldenDir), 'utf8');
  } catch {
    return undefined;
  }
}

/** A two-node cluster used by behaviour tests; n1 (zone a) holds pod 10.244.1.2, n2 (zone b) 10.244.2.2. */
export const TWO_NODES = `
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {topology.kubernetes.io/zone: a}}
spec: {podCIDR: 10.244.1.0/24}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}, {type: InternalIP, address: "fd00::1"}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2, labels: {topology.kubernetes.io/zone: b}}
spec: {podCIDR: 10.244.2.0/24}
status: {addresses: [{type: InternalIP, address: 10.0.0.2}]}
`;

export function svcWithEndpoints(name: string, spec: string, endpoints: string, status = ''): string {
  return `
---
apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: ns1}
spec: ${spec}
${status ? `status: ${status}` : ''}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ${name}-1, namespace: ns1, labels: {kubernetes.io/service-name: ${name}}}
addressType: IPv4
ports: [{name: p80, port: 8080, protocol: TCP}]
endpoints: ${endpoints}
`;
}
