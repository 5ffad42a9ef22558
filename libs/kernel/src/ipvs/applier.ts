// The IPVS applier of one IP family: converges the kernel's IPVS services, the VIPs on kube-ipvs0 and the KUBE-*
// ipsets to kpx's objects (full restore), applies deltas as netlink batches touching only what changed, drains
// removed real servers as kube-proxy does (pkg/proxy/ipvs/graceful_termination.go), and reads the kernel back as kpx
// objects. The companion iptables objects go through an IptablesApplier of the same family and namespace.
import { isIPv4, isIPv6 } from 'node:net';
import { SerialQueue } from '@kpx/common';
import type { IpsetSet, IpvsRealServer, IpvsService, ObjectRef, RuleObject } from '@kpx/proto';
import { RuleKind } from '@kpx/proto';
import { canonicalIP, cidrContains, parseCidr, type Cidr } from '@kpx/model';
import { applyChange, digestOf, objectIdOf, refOfId, undoChange, type KeyedObjects } from '@kpx/ruleset';
import { createIptablesApplier, isIptablesObject, type IptablesApplier } from '../iptables/applier.js';
import { createScratchCanonicalizer } from '../iptables/canonical.js';
import { IptablesVariant, iptablesCommands } from '../iptables/commands.js';
import { createCommandRunner, type CommandRunner } from '../runner.js';
import { IpvsApplyError, type NetlinkError } from './errors.js';
import { IpsetTool, createLine, entryKey, isOwnedSet, sameSpec, type SavedSet } from './ipset.js';
import {
  FWD_MASQ,
  IP_VS_SVC_F_HASHED,
  hostPort,
  serviceKey,
  type Destination,
  type IpvsOp,
  type KernelService,
  type VirtualService,
} from './ipvs-netlink.js';
import { createIpvsKernel, type IpvsKernel } from './kernel.js';
import { IpvsState } from './state.js';

export interface IpvsApplierOptions {
  readonly family: 'IPv4' | 'IPv6';
  /** Work inside this network namespace (netlink through an agent process, commands through `ip netns exec`). */
  readonly netns?: string;
  /** The netlink side. Default: createIpvsKernel({ netns }). */
  readonly kernel?: IpvsKernel;
  /** Runs ipset (and the default iptables applier). Default: createCommandRunner({ netns }). */
  readonly runner?: CommandRunner;
  /** The companion iptables rules. Default: createIptablesApplier({ family, runner }). */
  readonly iptables?: IptablesApplier;
  /** The dummy link the VIPs are bound to. Default kube-ipvs0. */
  readonly dummyInterface?: string;
  /** Virtual services in these CIDRs are not kpx's (kube-proxy's --ipvs-exclude-cidrs). */
  readonly excludeCidrs?: readonly string[];
  /** How often draining real servers are checked (kube-proxy: 1 minute). 0: only when drain() is called. Default 10 s. */
  readonly drainIntervalMs?: number;
  /**
   * Set kube-proxy's IPVS sysctls (NODE_SYSCTLS) in the namespace worked in, once, before the first full restore.
   * Default true: the executor runs on the node as kube-proxy does; tests give it a netns of their own.
   */
  readonly sysctls?: boolean;
}

/**
 * The sysctls kube-proxy's IPVS proxier sets (pkg/proxy/ipvs/proxier.go): conntrack for IPVS-ed packets (so the
 * companion iptables rules can masquerade them), drop connections to deleted real servers and stale persistence
 * templates, and forwarding.
 */
export const NODE_SYSCTLS: Readonly<Record<'IPv4' | 'IPv6', readonly string[]>> = {
  IPv4: [
    'net.ipv4.vs.conntrack=1',
    'net.ipv4.vs.expire_nodest_conn=1',
    'net.ipv4.vs.expire_quiescent_template=1',
    'net.ipv4.ip_forward=1',
  ],
  IPv6: [
    'net.ipv4.vs.conntrack=1',
    'net.ipv4.vs.expire_nodest_conn=1',
    'net.ipv4.vs.expire_quiescent_template=1',
    'net.ipv6.conf.all.forwarding=1',
  ],
};

export interface IpvsApplyResult {
  /** Netlink operations sent (services, real servers, addresses) and ipset lines fed to ipset restore. */
  readonly netlinkOps: number;
  readonly ipsetLines: number;
  readonly durationMs: number;
  /** Where the time went: reading the kernel, ipset restore, netlink (services, real servers, VIPs), iptables. */
  readonly phasesMs: { read: number; ipset: number; netlink: number; iptables: number };
}

/** A stopwatch adding elapsed time to named phases. */
class Phases {
  readonly ms = { read: 0, ipset: 0, netlink: 0, iptables: 0 };
  private last = performance.now();
  lap(phase: keyof Phases['ms']): void {
    const now = performance.now();
    this.ms[phase] += now - this.last;
    this.last = now;
  }
}

export interface IpvsReadBack {
  /** kpx's IPVS, VIP, ipset and companion iptables objects as the kernel holds them. */
  readonly objects: RuleObject[];
  /** digestOf(objects): equal to the applied state's digest exactly when the kernel holds it. */
  readonly digest: string;
}

/** A real server being drained: weight 0 until its connections are gone, then deleted. */
interface Draining {
  readonly service: VirtualService;
  readonly dest: { address: string; port: number; weight: number };
}

const MASQ_ONLY = FWD_MASQ;

/** The applied state as the keyed store ruleset's applyChange / undoChange work on. */
const keyedObjects = (state: IpvsState): KeyedObjects<RuleObject> => ({
  get: (id) => state.objects.get(id),
  upsert: (o) => state.upsert(o),
  remove: (ref) => state.remove(ref),
});

/** The canonical text of an IP address (IPv6 compressed, lower case). */
const canonicalIp = (address: string): string => canonicalIP(address) ?? address;

const vsOf = (s: IpvsService): VirtualService => ({
  protocol: s.protocol as VirtualService['protocol'],
  address: s.address,
  port: s.port,
  scheduler: s.scheduler,
  flags: s.flags & ~IP_VS_SVC_F_HASHED,
  timeoutSeconds: s.timeoutSeconds,
});
const canonKey = (s: Pick<VirtualService, 'protocol' | 'address' | 'port'>): string =>
  serviceKey({ ...s, address: canonicalIp(s.address) });
const destKey = (d: { address: string; port: number }): string => hostPort(canonicalIp(d.address), d.port);
const sameSettings = (a: VirtualService, b: VirtualService): boolean =>
  a.scheduler === b.scheduler &&
  (a.flags & ~IP_VS_SVC_F_HASHED) === (b.flags & ~IP_VS_SVC_F_HASHED) &&
  a.timeoutSeconds === b.timeoutSeconds;

export class IpvsApplier {
  readonly family: 'IPv4' | 'IPv6';
  readonly iptables: IptablesApplier;
  private readonly kernel: IpvsKernel;
  private readonly ipset: IpsetTool;
  private readonly dummy: string;
  private readonly exclude: readonly Cidr[];
  private readonly drainIntervalMs: number;
  private readonly runner: CommandRunner;
  private sysctlsPending: boolean;
  private current = new IpvsState();
  /** The sets the scratch namespace of the iptables canonicalizer declares: those of the state being applied. */
  private scratchSets: IpsetSet[] = [];
  /** Real servers being drained, by `<service key>|<host:port>`. */
  private readonly draining = new Map<string, Draining>();
  private drainTimer: NodeJS.Timeout | undefined;
  private readonly queue = new SerialQueue();

  constructor(options: IpvsApplierOptions) {
    this.family = options.family;
    const runner = options.runner ?? createCommandRunner(options.netns === undefined ? {} : { netns: options.netns });
    this.kernel = options.kernel ?? createIpvsKernel({ netns: options.netns });
    this.ipset = new IpsetTool(runner);
    // The companion rules match KUBE-* sets: the scratch namespace the iptables applier learns the kernel's
    // spelling in must hold sets of those names too (declared empty there, before iptables-restore runs).
    const canonicalizer = createScratchCanonicalizer({
      runner: withScratchSets(runner, () => this.scratchSets),
      commands: iptablesCommands(options.family, IptablesVariant.System),
    });
    this.iptables = options.iptables ?? createIptablesApplier({ family: options.family, runner, canonicalizer });
    this.dummy = options.dummyInterface ?? 'kube-ipvs0';
    this.exclude = (options.excludeCidrs ?? []).map((c) => {
      const cidr = parseCidr(c);
      if (!cidr) throw new RangeError(`excludeCidrs: ${JSON.stringify(c)} is not a CIDR`);
      return cidr;
    });
    this.drainIntervalMs = options.drainIntervalMs ?? 10_000;
    this.runner = runner;
    this.sysctlsPending = options.sysctls ?? true;
  }

  /** The applied state (do not change it). */
  get state(): IpvsState {
    return this.current;
  }

  /** Real servers waiting for their connections to end, as `<service key>|<host:port>`. */
  drainingServers(): string[] {
    return [...this.draining.keys()].sort();
  }

  private isMine(address: string): boolean {
    return (
      (this.family === 'IPv4' ? isIPv4(address) : isIPv6(address)) &&
      !this.exclude.some((c) => cidrContains(c, address))
    );
  }

  /**
   * Converges the kernel to exactly `objects` for kpx's own services, VIPs, sets and companion iptables rules of
   * this family, leaving foreign ones alone; they become the applied state. Real servers that go are drained.
   */
  fullRestore(objects: Iterable<RuleObject>): Promise<IpvsApplyResult> {
    return this.queue.run(async () => {
      const started = performance.now();
      const ph = new Phases();
      const desired = IpvsState.from(objects);
      if (this.sysctlsPending) {
        await this.runner.run({ file: 'sysctl', args: ['-q', '-w', ...NODE_SYSCTLS[this.family]] });
        this.sysctlsPending = false;
      }
      // VIPs on the dummy link.
      await this.kernel.ensureDummy(this.dummy);
      const bound = new Set(
        ((await this.kernel.linkAddresses(this.dummy)) ?? []).filter((a) => this.isMine(a) && !a.startsWith('fe80:')),
      );
      const wanted = new Set([...desired.addresses.values()].map((a) => canonicalIp(a.address)));
      const bind = [...wanted].filter((a) => !bound.has(a));
      const unbind = [...bound].filter((a) => !wanted.has(a));
      // Sets: created or updated before the rules that match them.
      const saved = await this.ipset.save();
      const setLines = this.setRestoreLines(desired, saved);
      const stale = [...saved.values()].filter(
        (s) => isOwnedSet(s.name, s.family, this.family) && !desired.sets.has(s.name),
      );
      // Services.
      const kernelServices = new Map(
        (await this.kernel.listServices()).filter((s) => this.isMine(s.address)).map((s) => [canonKey(s), s]),
      );
      const ops: IpvsOp[] = [];
      for (const svc of desired.services.values())
        this.convergeService(vsOf(svc), svc.realServers, kernelServices.get(canonKey(svc as VirtualService)), ops);
      const wantedKeys = new Set([...desired.services.values()].map((d) => canonKey(d as VirtualService)));
      for (const [key, s] of kernelServices) {
        if (wantedKeys.has(key)) continue;
        ops.push({ op: 'delService', service: s });
        this.forgetService(key);
      }
      const failures: NetlinkError[] = [];
      ph.lap('read');
      await this.ipset.restore(setLines);
      ph.lap('ipset');
      failures.push(...(await this.kernel.changeAddresses(this.dummy, 'add', bind)));
      failures.push(...(await this.kernel.apply(ops)));
      ph.lap('netlink');
      this.scratchSets = [...desired.sets.values()];
      await this.iptables.fullRestore(desired.iptablesObjects());
      ph.lap('iptables');
      failures.push(...(await this.kernel.changeAddresses(this.dummy, 'del', unbind)));
      ph.lap('netlink');
      await this.ipset.restore(stale.map((s) => `destroy ${s.name}`));
      ph.lap('ipset');
      if (failures.length) throw new IpvsApplyError('full restore', failures);
      this.current = desired;
      this.scheduleDrain();
      return {
        netlinkOps: ops.length + bind.length + unbind.length,
        ipsetLines: setLines.length + stale.length,
        durationMs: performance.now() - started,
        phasesMs: ph.ms,
      };
    });
  }

  /**
   * Applies a change of the applied state touching only what it changes: ipset lines of the changed members, one
   * netlink batch of service and real-server operations, the VIPs, the companion iptables delta. On failure the
   * applied state is as before and the kernel may be partly changed (netlink has no transactions): converge with
   * fullRestore, as kube-proxy's needFullSync.
   */
  applyDelta(change: { upserts: readonly RuleObject[]; deletes: readonly ObjectRef[] }): Promise<IpvsApplyResult> {
    return this.queue.run(async () => {
      const started = performance.now();
      const ph = new Phases();
      const state = this.current;
      // Members that may change: those of the changed sets and fragments, before and after.
      const touched = new Map<string, Set<string>>();
      const note = (o: RuleObject | undefined): void => {
        const p = o?.payload;
        if (p?.$case !== 'ipsetSet' && p?.$case !== 'ipsetEntries') return;
        const set = p.$case === 'ipsetSet' ? p.value.name : p.value.set;
        let s = touched.get(set);
        if (!s) touched.set(set, (s = new Set()));
        for (const e of p.value.entries) s.add(entryKey(e));
      };
      const wasMember = new Map<string, Set<string>>();
      for (const ref of [...change.deletes, ...change.upserts]) note(state.objects.get(objectIdOf(ref)));
      for (const o of change.upserts) note(o);
      for (const [set, entries] of touched)
        wasMember.set(set, new Set([...entries].filter((e) => state.hasMember(set, e))));
      const setExisted = new Set([...touched.keys()].filter((s) => state.sets.has(s)));
      const store = keyedObjects(state);
      const previous = new Map<string, RuleObject | undefined>();
      try {
        // Filled as it goes: an object that fails validation half way is undone with the ones before it.
        applyChange(store, change.deletes, change.upserts, objectIdOf, previous);
        state.checkFragments();
        // What each changed id held before the delta and holds after it, in the order the delta first touched it.
        const changed = [...previous].map(([id, before]) => ({
          ref: refOfId(id),
          before,
          after: state.objects.get(id),
        }));
        const ops: IpvsOp[] = [];
        const bind: string[] = [];
        const unbind: string[] = [];
        const setLines: string[] = [];
        const destroy: string[] = [];
        for (const c of changed) {
          if (c.ref.kind === RuleKind.IpvsService) this.serviceDelta(c.before, c.after, ops);
          else if (c.ref.kind === RuleKind.IpvsAddress) {
            const b =
              c.before?.payload?.$case === 'ipvsAddress' ? canonicalIp(c.before.payload.value.address) : undefined;
            const a =
              c.after?.payload?.$case === 'ipvsAddress' ? canonicalIp(c.after.payload.value.address) : undefined;
            if (b !== undefined && b !== a) unbind.push(b);
            if (a !== undefined && a !== b) bind.push(a);
          } else if (c.ref.kind === RuleKind.IpsetSet) {
            const b = c.before?.payload?.$case === 'ipsetSet' ? c.before.payload.value : undefined;
            const a = c.after?.payload?.$case === 'ipsetSet' ? c.after.payload.value : undefined;
            if (!a) destroy.push(c.ref.key);
            else if (!b) setLines.push(createLine(a));
            else if (createLine(a) !== createLine(b)) setLines.push(...this.recreateLines(a, state.members(a.name)));
          }
        }
        for (const [set, entries] of touched) {
          if (!state.sets.has(set)) continue;
          const before = setExisted.has(set) ? wasMember.get(set)! : new Set<string>();
          for (const e of entries) {
            const now = state.hasMember(set, e);
            if (now && !before.has(e)) setLines.push(`add ${set} ${e}`);
            else if (!now && before.has(e)) setLines.push(`del ${set} ${e}`);
          }
        }
        const iptUpserts = change.upserts.filter(isIptablesObject);
        const iptDeletes = change.deletes.filter(isIptablesObject);
        const failures: NetlinkError[] = [];
        ph.lap('read');
        await this.ipset.restore(setLines);
        ph.lap('ipset');
        if (bind.length) await this.kernel.ensureDummy(this.dummy);
        failures.push(...(await this.kernel.changeAddresses(this.dummy, 'add', bind)));
        failures.push(...(await this.kernel.apply(ops)));
        ph.lap('netlink');
        if (failures.length) throw new IpvsApplyError('delta', failures);
        this.scratchSets = [...state.sets.values()];
        if (iptUpserts.length || iptDeletes.length)
          await this.iptables.applyDelta({ upserts: iptUpserts, deletes: iptDeletes });
        ph.lap('iptables');
        failures.push(...(await this.kernel.changeAddresses(this.dummy, 'del', unbind)));
        ph.lap('netlink');
        await this.ipset.restore(destroy.map((s) => `destroy ${s}`));
        ph.lap('ipset');
        if (failures.length) throw new IpvsApplyError('delta', failures);
        this.scheduleDrain();
        return {
          netlinkOps: ops.length + bind.length + unbind.length,
          ipsetLines: setLines.length + destroy.length,
          durationMs: performance.now() - started,
          phasesMs: ph.ms,
        };
      } catch (err) {
        undoChange(store, previous);
        throw err;
      }
    });
  }

  /**
   * Reads kpx's objects back from the kernel: the services of this family (draining real servers left out), the
   * VIPs on the dummy link, the owned sets split into the applied state's set and fragment objects, and the
   * companion iptables objects. Spellings (IPv6 text, entry order) follow the applied objects where they agree.
   */
  readBack(): Promise<IpvsReadBack> {
    return this.queue.run(async () => {
      const state = this.current;
      const objects: RuleObject[] = [];
      const desiredByCanon = new Map([...state.services.values()].map((s) => [canonKey(s as VirtualService), s]));
      for (const k of (await this.kernel.listServices()).filter((s) => this.isMine(s.address))) {
        objects.push(this.serviceObject(k, desiredByCanon.get(canonKey(k))));
      }
      const desiredAddr = new Map([...state.addresses.values()].map((a) => [canonicalIp(a.address), a]));
      for (const a of (await this.kernel.linkAddresses(this.dummy)) ?? []) {
        if (!this.isMine(a) || a.startsWith('fe80:')) continue;
        const d = desiredAddr.get(a);
        const value = d ?? { interface: this.dummy, address: a };
        objects.push({
          kind: RuleKind.IpvsAddress,
          key: `${value.interface}/${value.address}`,
          payload: { $case: 'ipvsAddress', value },
        });
      }
      objects.push(...this.setObjects(state, await this.ipset.save()));
      this.scratchSets = [...state.sets.values()];
      objects.push(...(await this.iptables.readBack()).objects);
      return { objects, digest: digestOf(objects) };
    });
  }

  /**
   * Deletes the draining real servers whose connections (active and inactive) are gone; returns how many are still
   * draining. Runs by itself every drainIntervalMs while some are.
   */
  drain(): Promise<number> {
    return this.queue.run(async () => {
      const byService = new Map<string, Draining[]>();
      for (const d of this.draining.values()) {
        const k = canonKey(d.service);
        byService.set(k, [...(byService.get(k) ?? []), d]);
      }
      const ops: IpvsOp[] = [];
      for (const [svcKey, list] of byService) {
        const dests = new Map((await this.kernel.listDestinations(list[0]!.service)).map((d) => [destKey(d), d]));
        for (const d of list) {
          const k = destKey(d.dest);
          const cur = dests.get(k);
          if (cur && cur.activeConns + cur.inactiveConns > 0) continue;
          if (cur) ops.push({ op: 'delDest', service: d.service, dest: d.dest });
          this.draining.delete(`${svcKey}|${k}`);
        }
      }
      const failures = await this.kernel.apply(ops);
      if (failures.length) throw new IpvsApplyError('drain', failures);
      return this.draining.size;
    });
  }

  /** Stops the drain timer and the netlink agent. */
  async close(): Promise<void> {
    if (this.drainTimer) clearInterval(this.drainTimer);
    this.drainTimer = undefined;
    await this.queue.idle();
    await this.kernel.close();
  }

  // ---------------------------------------------------------------------------------------------------------------

  private scheduleDrain(): void {
    if (this.drainIntervalMs <= 0 || this.drainTimer || this.draining.size === 0) return;
    this.drainTimer = setInterval(() => {
      this.drain().then(
        (left) => {
          if (left === 0 && this.drainTimer) {
            clearInterval(this.drainTimer);
            this.drainTimer = undefined;
          }
        },
        () => undefined, // the next tick tries again; a full restore rebuilds the list
      );
    }, this.drainIntervalMs);
    this.drainTimer.unref();
  }

  /** Removes a real server the way kube-proxy does: TCP and SCTP ones drain at weight 0, UDP ones go at once. */
  private removeDest(service: VirtualService, dest: { address: string; port: number }, ops: IpvsOp[]): void {
    if (service.protocol === 'UDP') {
      ops.push({ op: 'delDest', service, dest: { ...dest, weight: 0 } });
      return;
    }
    const key = `${canonKey(service)}|${destKey(dest)}`;
    if (this.draining.has(key)) return;
    ops.push({ op: 'editDest', service, dest: { ...dest, weight: 0 } });
    this.draining.set(key, { service, dest: { address: dest.address, port: dest.port, weight: 0 } });
  }

  private forgetService(canon: string): void {
    for (const k of [...this.draining.keys()]) if (k.startsWith(`${canon}|`)) this.draining.delete(k);
  }

  /** Operations taking the kernel's service `cur` (or none) to the desired one. */
  private convergeService(
    want: VirtualService,
    servers: readonly IpvsRealServer[],
    cur: KernelService | undefined,
    ops: IpvsOp[],
  ): void {
    if (!cur) {
      ops.push({ op: 'addService', service: want });
      for (const r of servers) ops.push({ op: 'addDest', service: want, dest: r });
      this.forgetService(canonKey(want));
      return;
    }
    if (!sameSettings(want, cur)) ops.push({ op: 'editService', service: want });
    const have = new Map(cur.destinations.map((d) => [destKey(d), d]));
    const svcKey = canonKey(want);
    for (const r of servers) {
      const k = destKey(r);
      const d = have.get(k);
      have.delete(k);
      const wasDraining = this.draining.delete(`${svcKey}|${k}`);
      if (!d) ops.push({ op: 'addDest', service: want, dest: r });
      else if (d.weight !== r.weight || d.forward !== MASQ_ONLY || wasDraining)
        ops.push({ op: 'editDest', service: want, dest: r });
    }
    for (const d of have.values()) this.removeDest(want, d, ops);
  }

  /** Operations for one changed ipvs.service object, from its applied version (not from the kernel). */
  private serviceDelta(before: RuleObject | undefined, after: RuleObject | undefined, ops: IpvsOp[]): void {
    const b = before?.payload?.$case === 'ipvsService' ? before.payload.value : undefined;
    const a = after?.payload?.$case === 'ipvsService' ? after.payload.value : undefined;
    if (b && !a) {
      ops.push({ op: 'delService', service: vsOf(b) });
      this.forgetService(canonKey(vsOf(b)));
      return;
    }
    if (!a) return;
    if (!b) {
      this.convergeService(vsOf(a), a.realServers, undefined, ops);
      return;
    }
    const have: KernelService = {
      ...vsOf(b),
      destinations: b.realServers.map((r) => ({ ...r, forward: MASQ_ONLY, activeConns: 0, inactiveConns: 0 })),
    };
    this.convergeService(vsOf(a), a.realServers, have, ops);
  }

  private serviceObject(k: KernelService, desired: IpvsService | undefined): RuleObject {
    const svcKey = canonKey(k);
    const present = new Map<string, Destination>();
    for (const d of k.destinations) {
      const dk = destKey(d);
      // Draining servers are on their way out; servers not masqueraded are not what kpx programs.
      if (this.draining.has(`${svcKey}|${dk}`) || d.forward !== MASQ_ONLY) continue;
      present.set(dk, d);
    }
    const realServers: IpvsRealServer[] = [];
    for (const r of desired?.realServers ?? []) {
      const d = present.get(destKey(r));
      if (!d) continue;
      present.delete(destKey(r));
      realServers.push({ address: r.address, port: r.port, weight: d.weight });
    }
    for (const [, d] of [...present].sort(([x], [y]) => (x < y ? -1 : 1)))
      realServers.push({ address: d.address, port: d.port, weight: d.weight });
    const value: IpvsService = {
      protocol: k.protocol,
      address: desired?.address ?? k.address,
      port: k.port,
      scheduler: k.scheduler,
      flags: (k.flags & ~IP_VS_SVC_F_HASHED) | ((desired?.flags ?? 0) & IP_VS_SVC_F_HASHED),
      timeoutSeconds: k.timeoutSeconds,
      realServers,
    };
    return {
      kind: RuleKind.IpvsService,
      key: serviceKey(value as VirtualService),
      payload: { $case: 'ipvsService', value },
    };
  }

  private setObjects(state: IpvsState, saved: Map<string, SavedSet>): RuleObject[] {
    const out: RuleObject[] = [];
    for (const s of saved.values()) {
      if (!isOwnedSet(s.name, s.family, this.family)) continue;
      const want = state.sets.get(s.name);
      const claimed = new Set<string>();
      const keep = (entries: readonly string[]): string[] =>
        entries.filter((e) => {
          const k = entryKey(e);
          claimed.add(k);
          return s.entries.has(k);
        });
      for (const f of state.fragmentsOf(s.name)) {
        out.push({
          kind: RuleKind.IpsetEntries,
          key: f.key,
          payload: { $case: 'ipsetEntries', value: { set: f.value.set, entries: keep(f.value.entries) } },
        });
      }
      const own = keep(want?.entries ?? []);
      const extra = [...s.entries].filter((e) => !claimed.has(e)).sort();
      const value: IpsetSet = {
        name: s.name,
        type: s.type,
        family: s.family,
        comment: want?.comment ?? '',
        hashSize: want?.hashSize ?? s.hashSize,
        maxElem: want && (want.maxElem === 0 || want.maxElem === s.maxElem) ? want.maxElem : s.maxElem,
        portRange: want && (want.portRange === '' || want.portRange === s.portRange) ? want.portRange : s.portRange,
        entries: [...own, ...extra],
      };
      out.push({ kind: RuleKind.IpsetSet, key: s.name, payload: { $case: 'ipsetSet', value } });
    }
    return out;
  }

  /** ipset lines taking the kernel's sets to the desired ones (full restore). */
  private setRestoreLines(desired: IpvsState, saved: Map<string, SavedSet>): string[] {
    const lines: string[] = [];
    for (const s of desired.sets.values()) {
      const members = desired.members(s.name);
      const cur = saved.get(s.name);
      if (!cur) {
        lines.push(createLine(s));
        for (const e of members) lines.push(`add ${s.name} ${e}`);
      } else if (!sameSpec(s, cur)) {
        lines.push(...this.recreateLines(s, members));
      } else {
        for (const e of members) if (!cur.entries.has(e)) lines.push(`add ${s.name} ${e}`);
        for (const e of cur.entries) if (!members.has(e)) lines.push(`del ${s.name} ${e}`);
      }
    }
    return lines;
  }

  /** A set whose type or options change: built aside, swapped in, the old one destroyed (rules keep matching it). */
  private recreateLines(s: IpsetSet, members: Iterable<string>): string[] {
    const tmp = `KPX-TMP-${s.name}`.slice(0, 31);
    return [
      createLine(s, tmp),
      ...[...members].map((e) => `add ${tmp} ${e}`),
      `swap ${tmp} ${s.name}`,
      `destroy ${tmp}`,
    ];
  }
}

/**
 * A runner that, for the scratch canonicalizer's `unshare --net -- sh -c SCRIPT …`, first declares `sets()` (empty)
 * in the fresh namespace with `ipset restore`, then runs SCRIPT as before. Every other command runs unchanged.
 */
function withScratchSets(runner: CommandRunner, sets: () => readonly IpsetSet[]): CommandRunner {
  return {
    netns: runner.netns,
    run: (command) => {
      const [net, dashes, sh, c, script, ...rest] = command.args;
      if (
        command.file !== 'unshare' ||
        net !== '--net' ||
        dashes !== '--' ||
        sh !== 'sh' ||
        c !== '-c' ||
        script === undefined
      )
        return runner.run(command);
      const declare = sets()
        .map((s) => createLine(s))
        .join('\n');
      const wrap = `ipset -exist restore <<'KPX_SETS_EOF' || exit 1\n${declare}\nKPX_SETS_EOF\nexec sh -c "$0" "$@"`;
      return runner.run({ ...command, args: [net, dashes, sh, c, wrap, script, ...rest] });
    },
  };
}

export function createIpvsApplier(options: IpvsApplierOptions): IpvsApplier {
  return new IpvsApplier(options);
}
