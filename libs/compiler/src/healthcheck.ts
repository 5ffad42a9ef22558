// healthCheckNodePort servers as rule objects (every mode): kube-proxy's service health server
// (pkg/proxy/healthcheck/service_health.go) answers on a LoadBalancer service's healthCheckNodePort with the
// number of the service's local endpoints, which the load balancer uses to skip nodes without any.
//
// A service has one health check port whatever its number of ports, so one port of it carries the object (the
// model marks it: ServicePort.servesHealthCheck). Its count is kube-proxy's EndpointsMap.LocalReadyEndpoints: the
// distinct IPs of the ready endpoints on this node over every port of the service in the family (terminating
// endpoints do not count, so a node whose pods are all terminating fails its health check). The compilers give
// the carrying port the service's endpoints for it (ClusterState.serviceEndpoints), not only its own.
import type { ClusterState, Endpoint, ServicePort } from '@kpx/model';
import { RuleKind, type HealthCheckServiceObject } from './ruleset.js';

/** Whether this service port carries its service's healthcheck.service object. */
export function servesHealthCheck(svc: ServicePort): boolean {
  return svc.healthCheckNodePort !== 0 && svc.servesHealthCheck === true;
}

/**
 * What a port's health check counts, given the port's own endpoints: its service's endpoints in the family
 * (ClusterState.serviceEndpoints) when the port carries the health check, else its own (nothing reads them).
 */
export function healthCheckEndpoints(state: ClusterState, svc: ServicePort, endpoints: readonly Endpoint[]): readonly Endpoint[] {
  return servesHealthCheck(svc) ? state.serviceEndpoints(svc) : endpoints;
}

/** kube-proxy's local endpoint count of a service on a node: distinct IPs of ready endpoints on that node. */
export function localReadyEndpoints(nodeName: string, endpoints: readonly Endpoint[]): number {
  if (nodeName === '') return 0;
  const ips = new Set<string>();
  for (const ep of endpoints) if (ep.ready && ep.nodeName === nodeName) ips.add(ep.ip);
  return ips.size;
}

/**
 * Nodes on which {@link healthCheckObjects} gives a count other than 0 (every other node gets the same object),
 * for variant keys. Empty when the port carries no health check.
 */
export function healthCheckNodes(svc: ServicePort, endpoints: readonly Endpoint[]): Set<string> {
  const nodes = new Set<string>();
  if (!servesHealthCheck(svc)) return nodes;
  for (const ep of endpoints) if (ep.ready && ep.nodeName !== '') nodes.add(ep.nodeName);
  return nodes;
}

/**
 * The healthcheck.service object a service port contributes on a node (key: the port in decimal): one for the
 * port that carries its service's health check, none for any other.
 */
export function healthCheckObjects(nodeName: string, svc: ServicePort, endpoints: readonly Endpoint[]): HealthCheckServiceObject[] {
  if (!servesHealthCheck(svc)) return [];
  const port = svc.healthCheckNodePort;
  return [
    {
      kind: RuleKind.HealthCheckService,
      key: String(port),
      namespace: svc.service.namespace,
      name: svc.service.name,
      port,
      localEndpoints: localReadyEndpoints(nodeName, endpoints),
    },
  ];
}
