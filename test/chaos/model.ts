// The chaos cluster as data: which services exist, their endpoints (pods of the netns topology, each ready,
// terminating or not ready) and which dry-run nodes have joined. Changes are pure functions of it, and it renders
// to the manifests the controller watches: one file per service (Service + EndpointSlice), one per node.
import { nodesYaml, standardNode, type NodeSpec } from '@kpx/testing';
import { Nodes, PodTcpPort, PodUdpPort, Pods, type PodName } from '../e2e/cluster.js';

export const EndpointState = { Ready: 'ready', Terminating: 'terminating', NotReady: 'not-ready' } as const;
export type EndpointState = (typeof EndpointState)[keyof typeof EndpointState];

export const ServiceType = { ClusterIP: 'ClusterIP', NodePort: 'NodePort' } as const;
export type ServiceType = (typeof ServiceType)[keyof typeof ServiceType];

export interface EndpointSpec {
  readonly pod: PodName;
  readonly state: EndpointState;
}

export interface ServiceSpec {
  /** `web`, or `svc-<slot>`. */
  readonly name: string;
  /** 0 for web; 1.. for the churned services (their ClusterIP is 10.96.1.<slot>). */
  readonly slot: number;
  readonly type: ServiceType;
  readonly endpoints: readonly EndpointSpec[];
}

export interface ClusterModel {
  /** By name. */
  readonly services: ReadonlyMap<string, ServiceSpec>;
  /** Dry-run nodes that have joined (their Node objects exist). */
  readonly dryRunNodes: ReadonlySet<string>;
}

export type Change =
  | { readonly kind: 'endpoint-add'; readonly service: string; readonly endpoint: EndpointSpec }
  | { readonly kind: 'endpoint-remove'; readonly service: string; readonly pod: PodName }
  | { readonly kind: 'endpoint-terminate'; readonly service: string; readonly pod: PodName }
  | { readonly kind: 'service-add'; readonly service: ServiceSpec }
  | { readonly kind: 'service-delete'; readonly service: string }
  | { readonly kind: 'node-join'; readonly node: string }
  | { readonly kind: 'node-leave'; readonly node: string };
export type ChangeKind = Change['kind'];

export const Namespace = 'chaos';
export const WebService = 'web';
/** Nodes with a namespace, real iptables and pods. */
export const NetnsNodes = Object.keys(Nodes) as (keyof typeof Nodes)[];
/** Nodes whose executors run with --dry-run (no namespace, no pods): d4..d9, the standard address plan. */
export const DryRunNodePool = ['d4', 'd5', 'd6', 'd7', 'd8', 'd9'] as const;
export const PodNames = Object.keys(Pods) as PodName[];
/** Slots of churned services: svc-1 … svc-MaxSlots. */
export const MaxSlots = 12;
/** At most this many endpoints per service (keeps the packet check's sampling error negligible). */
export const MaxEndpoints = 4;

export function vipOf(service: ServiceSpec): string {
  return service.slot === 0 ? '10.96.0.10' : `10.96.1.${service.slot}`;
}

export function nodePortOf(service: ServiceSpec): number {
  return 30100 + service.slot;
}

export function applyChange(model: ClusterModel, change: Change): ClusterModel {
  const services = new Map(model.services);
  const nodes = new Set(model.dryRunNodes);
  const withEndpoints = (name: string, f: (eps: readonly EndpointSpec[]) => EndpointSpec[]): void => {
    const s = services.get(name);
    if (!s) throw new RangeError(`${change.kind}: no service ${name}`);
    services.set(name, { ...s, endpoints: f(s.endpoints) });
  };
  switch (change.kind) {
    case 'endpoint-add':
      withEndpoints(change.service, (eps) => [...eps.filter((e) => e.pod !== change.endpoint.pod), change.endpoint]);
      break;
    case 'endpoint-remove':
      withEndpoints(change.service, (eps) => eps.filter((e) => e.pod !== change.pod));
      break;
    case 'endpoint-terminate':
      withEndpoints(change.service, (eps) =>
        eps.map((e) => (e.pod === change.pod ? { pod: e.pod, state: EndpointState.Terminating } : e)),
      );
      break;
    case 'service-add':
      services.set(change.service.name, change.service);
      break;
    case 'service-delete':
      services.delete(change.service);
      break;
    case 'node-join':
      nodes.add(change.node);
      break;
    case 'node-leave':
      nodes.delete(change.node);
      break;
  }
  return { services, dryRunNodes: nodes };
}

/** Every node the final manifests name: the netns nodes and the joined dry-run nodes, sorted. */
export function nodesOf(model: ClusterModel): string[] {
  return [...NetnsNodes, ...[...model.dryRunNodes].sort()];
}

/**
 * The pods a connection to the service reaches: the ready endpoints, else (kube-proxy's terminating fallback) the
 * serving terminating ones; none: the service REJECTs.
 */
export function expectedBackends(service: ServiceSpec): PodName[] {
  const ready = service.endpoints.filter((e) => e.state === EndpointState.Ready).map((e) => e.pod);
  const pods =
    ready.length > 0 ? ready : service.endpoints.filter((e) => e.state === EndpointState.Terminating).map((e) => e.pod);
  return pods.sort();
}

// ---- manifests ----

export const serviceFile = (name: string): string => `svc-${name}.yaml`;
export const nodeFile = (name: string): string => `node-${name}.yaml`;
export const NetnsNodesFile = 'nodes.yaml';

export function dryRunNodeSpec(name: string): NodeSpec {
  return standardNode(name, Number(name.slice(1)));
}

export function nodeManifest(name: string): string {
  return nodesYaml([name in Nodes ? Nodes[name as keyof typeof Nodes] : dryRunNodeSpec(name)]);
}

export function netnsNodesManifest(): string {
  return nodesYaml(NetnsNodes.map((n) => Nodes[n]));
}

const conditions: Record<EndpointState, string> = {
  [EndpointState.Ready]: '{ ready: true, serving: true, terminating: false }',
  [EndpointState.Terminating]: '{ ready: false, serving: true, terminating: true }',
  [EndpointState.NotReady]: '{ ready: false, serving: false, terminating: false }',
};

/** The Service and its EndpointSlice. web has TCP 80 and UDP 53; the others TCP 80 (and a NodePort when so typed). */
export function serviceManifest(s: ServiceSpec): string {
  const vip = vipOf(s);
  const web = s.slot === 0;
  const nodePort = s.type === ServiceType.NodePort ? `, nodePort: ${nodePortOf(s)}` : '';
  const ports = [`    - { name: http, protocol: TCP, port: 80, targetPort: ${PodTcpPort}${nodePort} }`];
  const slicePorts = [`{ name: http, protocol: TCP, port: ${PodTcpPort} }`];
  if (web) {
    ports.push(`    - { name: dns, protocol: UDP, port: 53, targetPort: ${PodUdpPort} }`);
    slicePorts.push(`{ name: dns, protocol: UDP, port: ${PodUdpPort} }`);
  }
  const endpoints = s.endpoints.map(
    (e) =>
      `  - { addresses: [${Pods[e.pod].ipv4}], nodeName: ${Pods[e.pod].node}, conditions: ${conditions[e.state]} }`,
  );
  return `apiVersion: v1
kind: Service
metadata: { name: ${s.name}, namespace: ${Namespace} }
spec:
  type: ${s.type}
  clusterIP: ${vip}
  clusterIPs: [${vip}]
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
  ports:
${ports.join('\n')}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${s.name}-1, namespace: ${Namespace}, labels: { kubernetes.io/service-name: ${s.name} } }
addressType: IPv4
ports: [${slicePorts.join(', ')}]
endpoints:${endpoints.length === 0 ? ' []' : `\n${endpoints.join('\n')}`}
`;
}

/** Every file of the model's manifests directory, by name. */
export function manifestFiles(model: ClusterModel): Map<string, string> {
  const files = new Map<string, string>([[NetnsNodesFile, netnsNodesManifest()]]);
  for (const n of [...model.dryRunNodes].sort()) files.set(nodeFile(n), nodeManifest(n));
  for (const s of [...model.services.values()].sort((a, b) => a.slot - b.slot))
    files.set(serviceFile(s.name), serviceManifest(s));
  return files;
}

/** The file a change rewrites (its new text) or deletes (undefined). */
export function fileOfChange(after: ClusterModel, change: Change): { file: string; text: string | undefined } {
  switch (change.kind) {
    case 'node-join':
    case 'node-leave':
      return {
        file: nodeFile(change.node),
        text: after.dryRunNodes.has(change.node) ? nodeManifest(change.node) : undefined,
      };
    case 'service-add':
    case 'endpoint-add':
    case 'endpoint-remove':
    case 'endpoint-terminate':
    case 'service-delete': {
      const name = change.kind === 'service-add' ? change.service.name : change.service;
      const s = after.services.get(name);
      return { file: serviceFile(name), text: s ? serviceManifest(s) : undefined };
    }
  }
}
