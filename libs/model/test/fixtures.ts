// Small builders for test objects.
import type { EndpointSliceEndpoint, EndpointSliceObject, NodeObject, ServiceObject } from '../src/k8s.js';

export function service(
  name: string,
  spec: NonNullable<ServiceObject['spec']>,
  extra: Partial<ServiceObject> = {},
): ServiceObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'ns1', resourceVersion: '1' },
    spec,
    ...extra,
  };
}

export function slice(
  name: string,
  svc: string,
  endpoints: EndpointSliceEndpoint[],
  opts: { addressType?: string; ports?: EndpointSliceObject['ports'] } = {},
): EndpointSliceObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'ns1', labels: { 'kubernetes.io/service-name': svc }, resourceVersion: '1' },
    addressType: opts.addressType ?? 'IPv4',
    ports: opts.ports ?? [{ name: 'p80', port: 80, protocol: 'TCP' }],
    endpoints,
  };
}

export function node(name: string, ip: string, zone: string, podCIDR: string): NodeObject {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'topology.kubernetes.io/zone': zone } },
    spec: { podCIDR, podCIDRs: [podCIDR] },
    status: { addresses: [{ type: 'InternalIP', address: ip }] },
  };
}

export const ep = (
  ip: string,
  nodeName: string,
  conditions: EndpointSliceEndpoint['conditions'] = {},
  extra: Partial<EndpointSliceEndpoint> = {},
): EndpointSliceEndpoint => ({
  addresses: [ip],
  nodeName,
  conditions,
  ...extra,
});
