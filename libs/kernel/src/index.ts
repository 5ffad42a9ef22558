// @kpx/kernel: the node side of kpx's backends: thin wrappers of the kernel's tools: iptables, and IPVS (netlink).
//
// Runner
//   createCommandRunner({ netns?, timeoutMs? }): CommandRunner — runs a program (optionally inside
//   `ip netns exec NAME`), input on stdin; a non-zero exit rejects with CommandError carrying stderr.
//
// iptables (one applier per IP family: iptables-* for IPv4, ip6tables-* for IPv6)
//   const applier = createIptablesApplier({ family: 'IPv4', netns?, runner?, variant?, waitSeconds? });
//   await applier.fullRestore(objects)     converge the kernel to exactly these objects (startup, resync, repair
//                                          after a failed delta); they become the applied state
//   await applier.applyDelta({ upserts, deletes })
//                                          one iptables-restore --noflush transaction touching only the chains the
//                                          change touches; the applied state follows. A Delta (proto) fits as is;
//                                          ruleset's ObjectChanges after `.upserts.map((u) => u.wire)`.
//   await applier.readBack()               { objects, digest } as the kernel holds them; digest equals the applied
//                                          state's digest (RuleState.digest / digestOf) exactly when in sync
//   diffActual(desired, readBack.objects)  chains and jumps missing, extra or changed, for drift reports
//   applier.state                          the applied state (IptablesState): objects(), chainRules(ref), …
//
//   Pure planning, for tests and dry runs:
//   planDelta(before: IptablesState, after: IptablesState | IptablesChange, options?): DeltaPlan
//   planFullRestore(desired: IptablesState, saved: SavedTables, options?): RestorePlan
//   parseSave(text): SavedTables;  readBackObjects(saved, desired, options?): RuleObject[]
//
// How the executor is meant to use it: on start, fullRestore(snapshot). For each delta, applyDelta; on an
// IptablesRestoreError (or any error), fullRestore of the desired state (kube-proxy's needFullSync). Every drift
// check, readBack and compare its digest with the applied one; when they differ, report diffActual and repair
// with fullRestore. Calls on one applier run one at a time (they queue).
//
// What kpx owns: the chains of its state, and every other KUBE-* chain but kubelet's and kube-proxy's canaries,
// KUBE-IPTABLES-HINT and KUBE-FIREWALL (isKubeProxyChain; pass isOwnedChain to change it). In builtin chains it
// owns only the rules that jump to a chain it owns (its jumps); everything else there is left alone.
//
// Flags, as kube-proxy: iptables-restore -w 5 --noflush --counters, chains declared `:NAME - [0:0]`; iptables
// and iptables-save are only read. The kernel's spelling of desired rules (for comparing with iptables-save) is
// learned once per rule in a throwaway network namespace (`unshare --net`), see RuleCanonicalizer.
// Cleanup (`kpx executor --cleanup`, as `kube-proxy --cleanup`)
//   await cleanupKubeProxy({ netns? })   removes the KUBE-* chains (but kubelet's canary and hint) and the jumps to them in every
//                                        table of both families, IPVS virtual services, kube-ipvs0, KUBE-* ipsets,
//                                        nft tables ip/ip6 kube-proxy; a report per step (removed, clean, skipped
//                                        when the tool or kernel support is missing, failed)
// IPVS (one applier per IP family; see ipvs/applier.ts and ipvs/kernel.ts)
//   const applier = createIpvsApplier({ family: 'IPv4', netns?, excludeCidrs?, drainIntervalMs? });
//   fullRestore(objects) / applyDelta({ upserts, deletes }) / readBack() / drain() / close()
//   IPVS services and real servers go over generic netlink (family "IPVS", resolved by name), the VIPs on the
//   kube-ipvs0 dummy link over rtnetlink, the KUBE-* ipsets through `ipset restore`, the companion iptables objects
//   through an IptablesApplier. With netns, the netlink sockets live in an agent process started with
//   `ip netns exec` (Node cannot setns). Removed TCP/SCTP real servers drain at weight 0 (kube-proxy's graceful
//   termination); UDP ones go at once.
export { CleanupOutcome, KUBELET_CHAINS, cleanupKubeProxy, isCleanupChain, planIptablesCleanup } from './cleanup.js';
export type { CleanupOptions, CleanupReport, CleanupStep } from './cleanup.js';
export {
  CommandError,
  InvalidRuleObjectError,
  IptablesParseError,
  IptablesReadError,
  IptablesRestoreError,
  RuleCanonicalizeError,
} from './errors.js';
export { commandLine, createCommandRunner } from './runner.js';
export type { Command, CommandResult, CommandRunner, CommandRunnerOptions } from './runner.js';
export { IptablesApplier, createIptablesApplier, isIptablesObject } from './iptables/applier.js';
export type { ApplyResult, IptablesApplierOptions, ReadBack } from './iptables/applier.js';
export { RuleSpellings, createScratchCanonicalizer } from './iptables/canonical.js';
export type { CanonicalRequest, RuleCanonicalizer, ScratchCanonicalizerOptions } from './iptables/canonical.js';
export {
  BUILTIN_CHAINS,
  FOREIGN_KUBE_CHAINS,
  IptablesVariant,
  iptablesCommands,
  isKubeProxyChain,
} from './iptables/commands.js';
export type { IptablesCommands } from './iptables/commands.js';
export { wireJumpOrder } from './iptables/jump-order.js';
export type { JumpOrder } from './iptables/jump-order.js';
export { planBuiltinJumps } from './iptables/jumps.js';
export type { BuiltinJumpInput, BuiltinJumpPlan } from './iptables/jumps.js';
export { changeBetween, planDelta, planFullRestore, planTransition } from './iptables/plan.js';
export type { DeltaPlan, FullRestoreOptions, PlanOptions, RestorePlan } from './iptables/plan.js';
export { diffActual, readBackObjects } from './iptables/read-back.js';
export type { IptablesDrift, ReadBackOptions } from './iptables/read-back.js';
export { chainRef, parseChainRef, ruleTarget, splitArgs } from './iptables/rule-text.js';
export type { ChainRef } from './iptables/rule-text.js';
export { parseListRules, parseSave } from './iptables/save-format.js';
export type { SavedChain, SavedTable, SavedTables } from './iptables/save-format.js';
export { IptablesState, validateObject } from './iptables/state.js';
export type { Fragment, IptablesChange, Transition } from './iptables/state.js';
export { IpvsApplier, NODE_SYSCTLS, createIpvsApplier } from './ipvs/applier.js';
export type { IpvsApplierOptions, IpvsApplyResult, IpvsReadBack } from './ipvs/applier.js';
export { IpsetError, IpvsApplyError, NetlinkError } from './ipvs/errors.js';
export { IpsetTool, entryKey, isOwnedSet, parseIpsetSave } from './ipvs/ipset.js';
export type { SavedSet } from './ipvs/ipset.js';
export { addressBytes, addressText, serviceKey } from './ipvs/ipvs-netlink.js';
export type { Destination, IpvsOp, KernelService, VirtualService } from './ipvs/ipvs-netlink.js';
export { LocalIpvsKernel, NetnsIpvsKernel, createIpvsKernel } from './ipvs/kernel.js';
export type { IpvsKernel } from './ipvs/kernel.js';
export { IpvsState, diffObjects, isIpvsModeKernelObject, isIpvsObject, validateIpvsObject } from './ipvs/state.js';
// What a node refuses to apply: objects outside kpx's chains, sets, interface and table, rule text leaving its chain.
export {
  ForbiddenObjectError,
  IPVS_DUMMY_INTERFACE,
  assertOwnObjects,
  findForbiddenObject,
  forbiddenObject,
  forbiddenRuleText,
  isKpxChain,
} from './forbidden.js';
