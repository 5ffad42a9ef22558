// healthCheckNodePort servers as node duties (every mode): kube-proxy's service health server
// (pkg/proxy/healthcheck/service_health.go) answers on a LoadBalancer service's healthCheckNodePort with the
// number of the service's local endpoints, which the load balancer uses to skip nodes without any.
//
// The check belongs to the service, not to one of its ports: every port of a service that serves one (the model
// marks them: ServicePort.servesHealthCheck) claims one health check unit with its own ready endpoints, and the
// unit is compiled from the merged claims (one healthcheck.service object per service and node). Its count is
// kube-proxy's EndpointsMap.LocalReadyEndpoints: the distinct IPs of the ready endpoints on this node over every
// port of the service in the family (terminating endpoints do not count, so a node whose pods are all terminating
// fails its health check).
import type { Endpoint, ServicePort } from '@kpx/model';
import type { ModeCompiler, NodeContext, UnitClaim, UnitCompiler } from './mode.js';
import { RuleKind, type HealthCheckServiceObject } from './ruleset.js';

/** Whether this service port's service serves a health check (every one of its ports says so). */
export function servesHealthCheck(svc: ServicePort): boolean {
  return svc.healthCheckNodePort !== 0 && svc.servesHealthCheck === true;
}

/** Prefix of the ids of health check claims (`healthcheck:NS/NAME`). */
const ClaimPrefix = 'healthcheck:';

/**
 * A service port's share of its service's health check: the service's check, and the ready endpoints of this port
 * that are on a node, as `node ip` strings (sorted, distinct). Claims with one id merge into the service's check.
 */
export interface HealthCheckClaim {
  readonly id: string;
  /** `namespace/name`: a change of the check is a change of its service. */
  readonly service: string;
  readonly namespace: string;
  readonly name: string;
  readonly port: number;
  readonly ready: readonly string[];
}

/** Whether a unit claim (of any mode) is a health check claim. */
export const isHealthCheckClaim = (claim: { readonly id: string }): claim is HealthCheckClaim =>
  claim.id.startsWith(ClaimPrefix);

const readyOn = (endpoints: readonly Endpoint[]): string[] =>
  [...new Set(endpoints.filter((ep) => ep.ready && ep.nodeName !== '').map((ep) => `${ep.nodeName} ${ep.ip}`))].sort();

/** The health check claim of a service port: one when its service serves a health check, none otherwise. */
export function healthCheckClaims(svc: ServicePort, endpoints: readonly Endpoint[]): HealthCheckClaim[] {
  if (!servesHealthCheck(svc)) return [];
  const { namespace, name } = svc.service;
  return [
    {
      id: `${ClaimPrefix}${namespace}/${name}`,
      service: `${namespace}/${name}`,
      namespace,
      name,
      port: svc.healthCheckNodePort,
      ready: readyOn(endpoints),
    },
  ];
}

/** The claims of one service's ports as one: the ready endpoints of them all. */
export function mergeHealthCheckClaims(claims: readonly HealthCheckClaim[]): HealthCheckClaim {
  const [first] = claims;
  if (first === undefined) throw new Error('mergeHealthCheckClaims: no claims');
  return { ...first, ready: [...new Set(claims.flatMap((c) => c.ready))].sort() };
}

/** Nodes with a ready endpoint of the (merged) claim: the only ones whose count is not 0. */
function countedNodes(claim: HealthCheckClaim): Set<string> {
  return new Set(claim.ready.map((r) => r.slice(0, r.indexOf(' '))));
}

/**
 * How a health check depends on the node: undefined when its count is 0 everywhere, else a key equal for nodes
 * that get the same object (the node's name where it has ready endpoints, '' elsewhere).
 */
export function healthCheckVariantKeyFn(
  claim: HealthCheckClaim,
): ((ctx: { readonly node: { readonly name: string } }) => string) | undefined {
  const counted = countedNodes(claim);
  if (counted.size === 0) return undefined;
  return (ctx) => (counted.has(ctx.node.name) ? ctx.node.name : '');
}

/** The healthcheck.service object of a (merged) claim on a node (key: the port in decimal). */
export function healthCheckObjects(nodeName: string, claim: HealthCheckClaim): HealthCheckServiceObject[] {
  let local = 0;
  if (nodeName !== '') for (const r of claim.ready) if (r.slice(0, r.indexOf(' ')) === nodeName) local++;
  return [
    {
      kind: RuleKind.HealthCheckService,
      key: String(claim.port),
      namespace: claim.namespace,
      name: claim.name,
      port: claim.port,
      localEndpoints: local,
    },
  ];
}

/** The health check objects of every service of these ports on a node (a whole node's compile). */
export function serviceHealthChecks(
  nodeName: string,
  ports: Iterable<{ readonly svc: ServicePort; readonly endpoints: readonly Endpoint[] }>,
): HealthCheckServiceObject[] {
  const byService = new Map<string, HealthCheckClaim[]>();
  for (const { svc, endpoints } of ports) {
    for (const c of healthCheckClaims(svc, endpoints)) {
      const list = byService.get(c.id);
      if (list) list.push(c);
      else byService.set(c.id, [c]);
    }
  }
  return [...byService.values()].flatMap((claims) => healthCheckObjects(nodeName, mergeHealthCheckClaims(claims)));
}

/**
 * A mode's compiler with the per-service health check (a node duty, the same in every mode) as one more unit: every
 * port of a service that serves one claims it with its ready endpoints; the unit counts the node's over them all.
 * The registry (modes.ts) gives it to every mode.
 */
export function withHealthChecks<C extends NodeContext, U extends UnitClaim>(
  mode: ModeCompiler<C, U>,
): ModeCompiler<C, U | HealthCheckClaim> {
  const own: UnitCompiler<C, U> | undefined = mode.units;
  const units: UnitCompiler<C, U | HealthCheckClaim> = {
    claims: (svc, endpoints) => [...(own?.claims(svc, endpoints) ?? []), ...healthCheckClaims(svc, endpoints)],
    // Claims merged share an id, so they are all health checks or all the mode's own.
    merge: (claims) => {
      const checks = claims.filter(isHealthCheckClaim);
      if (checks.length > 0) return mergeHealthCheckClaims(checks);
      if (!own) throw new Error(`internal: ${mode.mode} has no units of its own to merge`);
      return own.merge(claims as readonly U[]);
    },
    compile: (ctx, claim) =>
      isHealthCheckClaim(claim) ? healthCheckObjects(ctx.node.name, claim) : (own?.compile(ctx, claim) ?? []),
    keyFn: (claim) => (isHealthCheckClaim(claim) ? healthCheckVariantKeyFn(claim) : own?.keyFn(claim)),
  };
  return { ...mode, units };
}
