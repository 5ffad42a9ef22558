// Named values of the string fields of the wire contract (proto/kpx/v1/rules.proto documents them).
// Hand-written next to the generated code so producers and consumers share one spelling: these are the only
// definitions (the compiler, the model and the services import them from here).
import type { RuleObject } from './gen/kpx/v1/rules.js';

/** RuleObject.kind values. */
export const RuleKind = {
  /** An iptables chain kpx owns; payload: its rules in order. Key `table/CHAIN`. */
  IptablesChain: 'iptables.chain',
  /** A jump from a builtin chain into a kpx chain. Key `table/BUILTIN/TARGET`. */
  IptablesJump: 'iptables.jump',
  /**
   * Rules one service port (or the node) contributes to a shared chain such as KUBE-SERVICES. Key
   * `table/CHAIN/OWNER`. The chain is its own rules followed by its fragments, ordered by (position, key).
   */
  IptablesRules: 'iptables.rules',
  /** An IPVS virtual service with its real servers. Key `PROTOCOL/address:port` (IPv6 in brackets). */
  IpvsService: 'ipvs.service',
  /** A virtual IP bound to a dummy interface (kube-ipvs0). Key `interface/address`. */
  IpvsAddress: 'ipvs.address',
  /** An ipset set: its type and options, and entries of its own. Key: the set name. */
  IpsetSet: 'ipset.set',
  /** Entries one owner contributes to a set declared by an IpsetSet. Key `SET/OWNER`. */
  IpsetEntries: 'ipset.entries',
  NftChain: 'nft.chain',
  NftSet: 'nft.set',
  NftMap: 'nft.map',
  /** A healthCheckNodePort the node serves (every mode; a node duty, not a kernel object). Key: the port. */
  HealthCheckService: 'healthcheck.service',
  /** A UDP service port's stale conntrack cleanup (every mode; a node duty, not a kernel object). Key: the port owner. */
  ConntrackPort: 'conntrack.port',
} as const;
export type RuleKind = (typeof RuleKind)[keyof typeof RuleKind];

/**
 * The `mode` field of NodeRuleSet, Delta, AckRequest, SnapshotRequest/Chunk, and KubeProxyConfiguration's `mode`
 * (kube-proxy's names: ProxyModeIPTables, ProxyModeIPVS, ProxyModeNFTables).
 */
export const ProxyMode = {
  IPTables: 'iptables',
  IPVS: 'ipvs',
  NFTables: 'nftables',
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
