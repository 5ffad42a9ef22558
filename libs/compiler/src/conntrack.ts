// Stale UDP conntrack cleanup as a node duty (every mode): one conntrack.port object per UDP service port with
// serving endpoints, naming the port's frontends and endpoint IPs. The executor deletes stale flows from the
// changes of these objects, as kube-proxy's pkg/proxy/conntrack CleanStaleEntries does from its service and
// endpoint maps: UDP has no connection to close, so a flow keeps the NAT of its first packet (or the lack of one)
// for as long as packets keep coming, whatever the rules say now.
//
// The object is the same on every node (frontends and endpoints are cluster-wide, as kube-proxy's maps are), so it
// adds no node dependence to its port. A port without serving endpoints has none: kube-proxy leaves its flows
// alone ("a Service without endpoints does not require to clean the conntrack entries associated"), and the
// object appearing later is the "went from no endpoints to some" change that makes them stale.
import { Protocol, type Endpoint, type ServicePort } from '@kpx/model';
import { RuleKind, type ConntrackPortObject } from './ruleset.js';

const sorted = (values: Iterable<string>): string[] => [...new Set(values)].sort();

/**
 * The conntrack.port object of a service port: one for a UDP port with serving endpoints, none otherwise. `owner`:
 * the port's portOwner, the object's key.
 */
export function conntrackObjects(
  owner: string,
  svc: ServicePort,
  endpoints: readonly Endpoint[],
): ConntrackPortObject[] {
  if (svc.protocol !== Protocol.UDP) return [];
  const serving = sorted(endpoints.filter((ep) => ep.serving || ep.ready).map((ep) => ep.ip));
  if (serving.length === 0) return [];
  const ips = sorted(
    [svc.clusterIP, ...svc.externalIPs, ...svc.loadBalancerVIPs].filter((ip) => ip !== '' && ip !== 'None'),
  );
  return [
    {
      kind: RuleKind.ConntrackPort,
      key: owner,
      protocol: svc.protocol,
      port: svc.port,
      ips,
      nodePort: svc.nodePort,
      endpoints: serving,
    },
  ];
}
