// Which node facts a service port's endpoint policy (kube-proxy's CategorizeEndpoints: Local traffic policies,
// topology zone hints, node hints) depends on: the part of a variant key every mode shares.
import { usesLocalEndpoints, type Endpoint, type ServicePort } from '@kpx/model';

export interface PolicyDependence {
  /** The endpoints chosen differ by the node's zone (every ready endpoint has zone hints). */
  readonly byZone: boolean;
  /** Nodes whose endpoints differ from every other node's: hosts of local endpoints, nodes named in node hints. */
  readonly nodes: Set<string>;
}

/** How the endpoints a port uses on a node depend on that node. `nodes` is a new set, the caller's to extend. */
export function policyDependence(
  svc: ServicePort,
  endpoints: readonly Endpoint[],
  preferSameNodeHints: boolean,
): PolicyDependence {
  const local = usesLocalEndpoints(svc);
  let anyReady = false;
  let allZoneHints = true;
  let allNodeHints = true;
  const nodes = new Set<string>();
  const hinted = new Set<string>();
  for (const ep of endpoints) {
    if (local && ep.nodeName !== '') nodes.add(ep.nodeName);
    if (!ep.ready) continue;
    anyReady = true;
    if (ep.zoneHints.length === 0) allZoneHints = false;
    if (ep.nodeHints.length === 0) allNodeHints = false;
    else for (const n of ep.nodeHints) hinted.add(n);
  }
  if (preferSameNodeHints && allNodeHints) for (const n of hinted) nodes.add(n);
  return { byZone: anyReady && allZoneHints, nodes };
}
