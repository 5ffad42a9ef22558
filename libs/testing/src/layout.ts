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
