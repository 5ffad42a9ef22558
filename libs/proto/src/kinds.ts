// Named values of the string fields of the wire contract (proto/kpx/v1/rules.proto documents them).
// Hand-written next to the generated code so producers and consumers share one spelling.
import type { RuleObject } from './gen/kpx/v1/rules.js';

/** RuleObject.kind values. */
export const RuleKind = {
  IptablesChain: 'iptables.chain',
  IptablesJump: 'iptables.jump',
  IptablesRules: 'iptables.rules',
  IpvsService: 'ipvs.service',
  IpvsAddress: 'ipvs.address',
  IpsetSet: 'ipset.set',
  IpsetEntries: 'ipset.entries',
  NftChain: 'nft.chain',
  NftSet: 'nft.set',
  NftMap: 'nft.map',
  HealthCheckService: 'healthcheck.service',
  ConntrackPort: 'conntrack.port',
} as const;
export type RuleKind = (typeof RuleKind)[keyof typeof RuleKind];

/** The `mode` field of NodeRuleSet, Delta, AckRequest, SnapshotRequest/Chunk (kube-proxy mode names). */
export const ProxyMode = {
  Iptables: 'iptables',
  Ipvs: 'ipvs',
  Nftables: 'nftables',
} as const;
export type ProxyMode = (typeof ProxyMode)[keyof typeof ProxyMode];

/** The `ip_family` field (Kubernetes IPFamily names). */
export const IpFamily = {
  IPv4: 'IPv4',
  IPv6: 'IPv6',
} as const;
export type IpFamily = (typeof IpFamily)[keyof typeof IpFamily];

/** The payload of a RuleObject: a `{ $case, value }` union. */
export type RulePayload = NonNullable<RuleObject['payload']>;
/** The `$case` names of RulePayload, e.g. "iptablesChain". */
export type RulePayloadCase = RulePayload['$case'];

/**
 * The kind each payload case must be sent with. `satisfies` makes the compiler fail here when a payload is
 * added to the oneof without a kind.
 */
export const kindOfPayloadCase = {
  iptablesChain: RuleKind.IptablesChain,
  iptablesJump: RuleKind.IptablesJump,
  iptablesRules: RuleKind.IptablesRules,
  ipvsService: RuleKind.IpvsService,
  ipvsAddress: RuleKind.IpvsAddress,
  ipsetSet: RuleKind.IpsetSet,
  ipsetEntries: RuleKind.IpsetEntries,
  nftChain: RuleKind.NftChain,
  nftSet: RuleKind.NftSet,
  nftMap: RuleKind.NftMap,
  healthCheckService: RuleKind.HealthCheckService,
  conntrackPort: RuleKind.ConntrackPort,
} as const satisfies Record<RulePayloadCase, RuleKind>;

/** True when the object has a payload and its kind is the one of that payload (see RuleObject). */
export function hasConsistentKind(object: RuleObject): boolean {
  return object.payload !== undefined && kindOfPayloadCase[object.payload.$case] === object.kind;
}

/**
 * The kinds of node duties: objects the executor acts on itself (health check servers, conntrack cleanup), in
 * every mode. They are in the node's state and digest like every object, but are no kernel objects: no applier,
 * read-back, render or drift check sees them.
 */
export const DutyKinds: ReadonlySet<string> = new Set<RuleKind>([RuleKind.HealthCheckService, RuleKind.ConntrackPort]);

/** Whether an object is a node duty (see {@link DutyKinds}), not a kernel object. */
export const isDuty = (o: { readonly kind: string }): boolean => DutyKinds.has(o.kind);
