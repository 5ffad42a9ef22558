// The address plan of the standard e2e cluster, so tests and manifests agree on one convention.
//   node i (1..9):  LAN 10.0.0.1i/24 and fd00::1i/64, pod CIDRs 10.244.i.0/24 and fd00:10:244:i::/64
//   pod h on node i: 10.244.i.h and fd00:10:244:i::h (h written in decimal in both)
import type { NodeSpec, PodSpec } from './topology.js';

export function standardNode(name: string, index: number): NodeSpec {
  if (!Number.isInteger(index) || index < 1 || index > 9) throw new RangeError(`node index ${index} not in 1..9`);
  return {
    name,
    lanIPv4: `10.0.0.${10 + index}`,
    lanIPv6: `fd00::${10 + index}`,
    podCIDRv4: `10.244.${index}.0/24`,
    podCIDRv6: `fd00:10:244:${index}::/64`,
  };
}

export function standardPod(name: string, node: NodeSpec, host: number): PodSpec {
  if (!Number.isInteger(host) || host < 2 || host > 254) throw new RangeError(`pod host ${host} not in 2..254`);
  const v4Base = node.podCIDRv4.split('/')[0]?.split('.').slice(0, 3).join('.');
  const v6Base = node.podCIDRv6.split('/')[0]?.replace(/::$/, '');
  if (v4Base === undefined || v6Base === undefined) throw new RangeError(`bad pod CIDRs on node ${node.name}`);
  return { name, node: node.name, ipv4: `${v4Base}.${host}`, ipv6: `${v6Base}::${host}` };
}

/** Node objects of the topology's nodes: pod CIDRs and LAN addresses, dual-stack unless `ipv6` is false. */
export function nodesYaml(nodes: readonly NodeSpec[], { ipv6 = true }: { ipv6?: boolean } = {}): string {
  const q = (s: string): string => `"${s}"`;
  return nodes
    .map((n) => {
      const cidrs = ipv6 ? [n.podCIDRv4, q(n.podCIDRv6)] : [n.podCIDRv4];
      const addresses = (ipv6 ? [n.lanIPv4, q(n.lanIPv6)] : [n.lanIPv4]).map(
        (a) => `{ type: InternalIP, address: ${a} }`,
      );
      return `apiVersion: v1
kind: Node
metadata: { name: ${n.name}, labels: { kubernetes.io/hostname: ${n.name} } }
spec: { podCIDR: ${n.podCIDRv4}, podCIDRs: [${cidrs.join(', ')}] }
status: { addresses: [${addresses.join(', ')}] }
`;
    })
    .join('---\n');
}

/** The executor suites' service `e2e/web`: ClusterIP `vip`, http TCP 80 -> 8080 and dns UDP 53 -> 8053. */
export function webServiceYaml(vip: string): string {
  return `apiVersion: v1
kind: Service
metadata: { name: web, namespace: e2e }
spec:
  type: ClusterIP
  clusterIP: ${vip}
  clusterIPs: [${vip}]
  ipFamilies: [IPv4]
  ports:
    - { name: http, protocol: TCP, port: 80, targetPort: 8080 }
    - { name: dns, protocol: UDP, port: 53, targetPort: 8053 }
`;
}

/** The EndpointSlice of {@link webServiceYaml}: these pods, ready, on their nodes. */
export function webSliceYaml(backends: readonly PodSpec[]): string {
  return `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: web-1, namespace: e2e, labels: { kubernetes.io/service-name: web } }
addressType: IPv4
ports: [{ name: http, protocol: TCP, port: 8080 }, { name: dns, protocol: UDP, port: 8053 }]
endpoints:
${backends.map((p) => `  - { addresses: [${p.ipv4}], nodeName: ${p.node}, conditions: { ready: true } }`).join('\n')}
`;
}
