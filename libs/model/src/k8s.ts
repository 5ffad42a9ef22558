// The subset of Kubernetes API objects kpx reads, in their JSON (wire) form. Every field is optional and
// untrusted: objects come from files or the API and are validated when converted to the model.

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
}

export interface ServicePortSpec {
  name?: string;
  protocol?: string;
  port?: number;
  targetPort?: number | string;
  nodePort?: number;
  appProtocol?: string;
}

export interface LoadBalancerIngress {
  ip?: string;
  hostname?: string;
  ipMode?: string;
}

export interface ServiceObject extends KubeObject {
  spec?: {
    type?: string;
    clusterIP?: string;
    clusterIPs?: string[];
    ipFamilies?: string[];
    ports?: ServicePortSpec[];
    externalIPs?: string[];
    loadBalancerSourceRanges?: string[];
    externalTrafficPolicy?: string;
    internalTrafficPolicy?: string;
    healthCheckNodePort?: number;
    sessionAffinity?: string;
    sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } };
    trafficDistribution?: string;
    externalName?: string;
  };
  status?: { loadBalancer?: { ingress?: LoadBalancerIngress[] } };
}

export interface EndpointSliceEndpoint {
  addresses?: string[];
  conditions?: { ready?: boolean | null; serving?: boolean | null; terminating?: boolean | null };
  nodeName?: string;
  zone?: string;
  hints?: { forZones?: { name?: string }[]; forNodes?: { name?: string }[] };
  targetRef?: unknown;
}

export interface EndpointSlicePort {
  name?: string | null;
  protocol?: string;
  port?: number | null;
  appProtocol?: string;
}

export interface EndpointSliceObject extends KubeObject {
  addressType?: string;
  endpoints?: EndpointSliceEndpoint[] | null;
  ports?: EndpointSlicePort[] | null;
}

export interface NodeAddress {
  type?: string;
  address?: string;
}

export interface NodeObject extends KubeObject {
  spec?: { podCIDR?: string; podCIDRs?: string[]; unschedulable?: boolean };
  status?: { addresses?: NodeAddress[] };
}

export const Kind = { Service: 'Service', EndpointSlice: 'EndpointSlice', Node: 'Node' } as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

export const LabelServiceName = 'kubernetes.io/service-name';
export const LabelTopologyZone = 'topology.kubernetes.io/zone';
