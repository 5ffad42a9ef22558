// The controller pipeline: source events -> cluster state -> (coalesced) sync -> per-node deltas -> publish.
// One sync is one cluster-wide generation; only nodes whose rules changed get a delta, chained to their own
// previous generation by prev_generation.
import { context, trace, type Context, type Link, type Span, type Tracer } from '@opentelemetry/api';
import { ClusterState, LabelServiceName, ProxyMode, formatDiagnostic, type Diagnostic, type IPFamily, type KubeProxyConfig } from '@kpx/model';
import { IptablesMode, IpvsMode, iptablesOptionsFromConfig, ipvsOptionsFromConfig, type IptablesOptions, type IpvsOptions } from '@kpx/compiler';
import { FamilyStates, modeCompiler, type NodeChange } from '@kpx/ruleset';
import { Cause, Delta, ObjectRef, RuleObject, type NodeRuleSet } from '@kpx/proto';
import { injectTraceContext } from '@kpx/telemetry';
import type { DeltaSink, GenerationStore, PublishedHeads, SnapshotSink } from './ports.js';
import { CoalescingRunner } from './runner.js';
import { EventType, ObjectKind, type SourceEvent } from './sources/types.js';
import { ConvergenceTracker } from './tracker.js';

/** EndpointSlice annotation carrying the time of the change that caused it (kube-proxy reads it too). */
const TriggerTimeAnnotation = 'endpoints.kubernetes.io/last-change-trigger-time';

export interface PipelineLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface PipelineMetrics {
  /** A sync finished: compile seconds, nodes changed, bytes published. */
  synced?(s: { generation: number; compileSeconds: number; nodes: number; bytes: number }): void;
  /** Change to ack latency, seconds. */
  changeToAck?(seconds: number): void;
}

/** The mode the controller compiles for a configuration: ipvs for `mode: ipvs`, else iptables. */
export function pipelineMode(config: KubeProxyConfig): string {
  return config.mode === ProxyMode.IPVS ? IpvsMode : IptablesMode;
}

/** The compiler options of a family for a configuration's mode. */
export function familyOptionsFromConfig(config: KubeProxyConfig, family: IPFamily): IptablesOptions | IpvsOptions {
  return pipelineMode(config) === IpvsMode ? ipvsOptionsFromConfig(config, family) : iptablesOptionsFromConfig(config, family);
}

export interface PipelineOptions {
  /** Compiler options per IP family; a family not listed gets no rule sets. */
  readonly families: ReadonlyMap<IPFamily, IptablesOptions | IpvsOptions>;
  /** The proxy mode rule sets and deltas are compiled for: "iptables" (default) or "ipvs". */
  readonly mode?: string;
  readonly sink: DeltaSink;
  readonly generations: GenerationStore;
  /** Where published state was left by an earlier controller (for restarts without republishing). */
  readonly heads?: PublishedHeads;
  readonly snapshots?: SnapshotSink;
  /** Store a node's snapshot every this many of its generations (0: only with snapshot deltas). */
  readonly snapshotEvery?: number;
  readonly minSyncPeriodMs: number;
  /** Encoded deltas above this size are sent as snapshot deltas instead (default 512 KiB). */
  readonly maxInlineBytes?: number;
  /** Parallel publishes (default 64). */
  readonly publishConcurrency?: number;
  /**
   * Causes named per delta, earliest trigger first (default 64). A first sync or a relist touches every object;
   * naming them all in every node's delta would make each one as large as the cluster.
   */
  readonly maxCauses?: number;
  readonly logger: PipelineLogger;
  readonly tracer: Tracer;
  readonly metrics?: PipelineMetrics;
}

interface PendingCause {
  readonly cause: Cause;
  readonly observedAt: number;
  readonly span: Span;
}

interface ToPublish {
  readonly change: NodeChange;
  /** The generation the delta continues (the node's last, or a head an earlier controller published). */
  readonly prevGeneration: number;
}

export interface SyncOutcome {
  readonly generation: number;
  readonly deltas: readonly Delta[];
  /** Encoded size of each delta, in the order of `deltas`. */
  readonly deltaBytes: readonly number[];
  /** Every cause of the generation (deltas carry at most maxCauses each), earliest first, deduplicated. */
  readonly causes: readonly Cause[];
  /** Services (`namespace/name`) and nodes whose objects changed in this sync. */
  readonly services: readonly string[];
  readonly nodes: readonly string[];
  /** The earliest trigger time of the causes (ms since the epoch). */
  readonly triggerTime: number | undefined;
}

const timestamp = (ms: number): { seconds: number; nanos: number } => ({ seconds: Math.floor(ms / 1000), nanos: Math.round((ms % 1000) * 1e6) });

export class ControllerPipeline {
  readonly state = new ClusterState();
  readonly tracker = new ConvergenceTracker();
  private readonly families: FamilyStates[];
  /** The proxy mode of every rule set and delta. */
  readonly mode: string;
  private readonly runner: CoalescingRunner;
  private dirtyServices = new Set<string>();
  /** Of the dirty services, those whose Service object changed (the others only had EndpointSlice events). */
  private changedSpecs = new Set<string>();
  private dirtyNodes = new Set<string>();
  private serviceCauses = new Map<string, PendingCause[]>();
  private nodeCauses = new Map<string, PendingCause[]>();
  private synced = false;
  private lastGeneration = 0;
  private readonly snapshotCounts = new Map<string, number>();
  /** Encoded size of each delta built, measured once (the inline-size check) and read by publish. */
  private readonly encodedSizes = new WeakMap<Delta, number>();
  /** Encoded size of each rule object, object ref and cause put in a delta, measured once. */
  private readonly objectSizes = new WeakMap<object, number>();
  /** Resolves after every sync (tests and benchmarks wait on it). */
  private readonly listeners = new Set<(o: SyncOutcome) => void>();

  constructor(private readonly opts: PipelineOptions) {
    this.mode = opts.mode === IpvsMode ? IpvsMode : IptablesMode;
    this.families = [...opts.families.entries()].map(([family, options]) => new FamilyStates({ family, options, compiler: modeCompiler(this.mode, options) }));
    this.runner = new CoalescingRunner(() => this.sync(), opts.minSyncPeriodMs, (err) => opts.logger.error({ err }, 'sync failed; retrying'));
  }

  get generation(): number {
    return this.lastGeneration;
  }

  /** Accepts one source event; the sync that follows is coalesced with others. */
  onEvent(e: SourceEvent): void {
    const ns = e.object.metadata?.namespace || 'default';
    const name = e.object.metadata?.name ?? '';
    const span = this.opts.tracer.startSpan(`kpx.event ${e.kind}`, { attributes: { 'k8s.kind': e.kind, 'k8s.namespace': ns, 'k8s.name': name, 'kpx.event': e.type } });
    span.end();
    const cause: Cause = { kind: e.kind, namespace: e.kind === ObjectKind.Node ? '' : ns, name, resourceVersion: e.object.metadata?.resourceVersion ?? '' };
    const pc: PendingCause = { cause, observedAt: this.triggerTime(e), span };
    let diags: Diagnostic[] = [];
    switch (e.kind) {
      case ObjectKind.Service: {
        if (e.type === EventType.Delete) this.state.deleteService(ns, name);
        else diags = this.state.upsertService(e.object, { source: e.source });
        this.touchService(`${ns}/${name}`, pc);
        this.changedSpecs.add(`${ns}/${name}`);
        // Services that gained or lost a port another service shares (the first by namespace/name holds it).
        for (const k of this.state.takeAffectedServices()) {
          this.touchService(k, pc);
          this.changedSpecs.add(k);
        }
        break;
      }
      case ObjectKind.EndpointSlice: {
        const before = this.state.sliceService(ns, name);
        if (before) this.touchService(before, pc);
        if (e.type === EventType.Delete) this.state.deleteEndpointSlice(ns, name);
        else diags = this.state.upsertEndpointSlice(e.object, { source: e.source });
        const label = e.object.metadata?.labels?.[LabelServiceName];
        if (label) this.touchService(`${ns}/${label}`, pc);
        break;
      }
      case ObjectKind.Node: {
        if (e.type === EventType.Delete) this.state.deleteNode(name);
        else diags = this.state.upsertNode(e.object, { source: e.source });
        this.dirtyNodes.add(name);
        const l = this.nodeCauses.get(name) ?? [];
        l.push(pc);
        this.nodeCauses.set(name, l);
        break;
      }
    }
    for (const d of diags) this.opts.logger.warn({ object: d.object, field: d.field }, formatDiagnostic(d));
    if (this.synced) this.runner.request();
  }

  /** The sources delivered their initial state: the first sync runs. */
  onSynced(): void {
    this.synced = true;
    this.runner.request();
  }

  private touchService(key: string, pc: PendingCause): void {
    this.dirtyServices.add(key);
    const l = this.serviceCauses.get(key) ?? [];
    l.push(pc);
    this.serviceCauses.set(key, l);
  }

  private triggerTime(e: SourceEvent): number {
    if (e.kind === ObjectKind.EndpointSlice) {
      const t = Date.parse(e.object.metadata?.annotations?.[TriggerTimeAnnotation] ?? '');
      if (Number.isFinite(t) && t <= e.observedAt) return t;
    }
    return e.observedAt;
  }

  /** Waits for every requested sync to finish. */
  async settle(): Promise<void> {
    await this.runner.idle();
  }

  /** Calls `fn` after every sync that published (or would have published) deltas. */
  onSync(fn: (o: SyncOutcome) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  async stop(): Promise<void> {
    await this.runner.stop();
  }

  private async sync(): Promise<void> {
    const services = this.dirtyServices;
    const changedSpecs = this.changedSpecs;
    const nodes = this.dirtyNodes;
    const serviceCauses = this.serviceCauses;
    const nodeCauses = this.nodeCauses;
    this.dirtyServices = new Set();
    this.changedSpecs = new Set();
    this.dirtyNodes = new Set();
    this.serviceCauses = new Map();
    this.nodeCauses = new Map();
    const all = [...serviceCauses.values(), ...nodeCauses.values()].flat().sort((a, b) => a.observedAt - b.observedAt);
    // One trace from the (earliest) API change to the publish; the other changes are linked.
    const parent: Context = all[0] ? trace.setSpan(context.active(), all[0].span) : context.active();
    const links: Link[] = all.slice(1, 32).map((c) => ({ context: c.span.spanContext() }));
    const span = this.opts.tracer.startSpan('kpx.sync', { links, attributes: { 'kpx.services': services.size, 'kpx.nodes': nodes.size } }, parent);
    try {
      await context.with(trace.setSpan(parent, span), async () => {
        const t0 = performance.now();
        const compileSpan = this.opts.tracer.startSpan('kpx.compile');
        const endpointsOnly = new Set([...services].filter((s) => !changedSpecs.has(s)));
        const changes = this.families.flatMap((f) => f.sync({ state: this.state, services, nodes, endpointsOnly }));
        compileSpan.setAttribute('kpx.changes', changes.length);
        compileSpan.end();
        const compileSeconds = (performance.now() - t0) / 1000;
        for (const n of nodes) if (!this.state.node(n)) for (const f of this.families) this.tracker.forget(n, f.family);
        const toPublish = await this.adoptPublishedHeads(changes);
        if (toPublish.length === 0) return;
        const generation = await this.opts.generations.next();
        this.lastGeneration = generation;
        span.setAttribute('kpx.generation', generation);
        const deltas = await this.buildDeltas(generation, toPublish, serviceCauses, nodeCauses);
        const bytes = await this.publish(deltas);
        this.opts.metrics?.synced?.({ generation, compileSeconds, nodes: deltas.length, bytes });
        this.opts.logger.info({ generation, nodes: deltas.length, bytes, compileMs: Math.round(compileSeconds * 1000) }, 'published generation');
        if (this.listeners.size > 0) {
          const seen = new Set<string>();
          const causes = all.map((p) => p.cause).filter((c) => {
            const k = `${c.kind}/${c.namespace}/${c.name}/${c.resourceVersion}`;
            return seen.has(k) ? false : (seen.add(k), true);
          });
          const outcome: SyncOutcome = {
            generation,
            deltas,
            deltaBytes: deltas.map((d) => this.encodedSizes.get(d) ?? Delta.encode(d).finish().length),
            causes,
            services: [...services].sort(),
            nodes: [...nodes].sort(),
            triggerTime: all[0]?.observedAt,
          };
          for (const l of this.listeners) l(outcome);
        }
      });
    } catch (err) {
      span.recordException(err as Error);
      throw err;
    } finally {
      span.end();
    }
  }

  private familyOf(family: string): FamilyStates | undefined {
    return this.families.find((f) => f.family === family);
  }

  /**
   * A node state compiled for the first time may already be what an earlier controller published: its last
   * published head then continues (nothing is republished), or the new state chains to that head. Returns the
   * changes that still need a delta, each with the generation it continues; when none do, the sync allocates no
   * generation.
   */
  private async adoptPublishedHeads(changes: NodeChange[]): Promise<ToPublish[]> {
    if (!this.opts.heads) return changes.map((change) => ({ change, prevGeneration: change.prevGeneration }));
    const out: ToPublish[] = [];
    for (const c of changes) {
      const fam = this.familyOf(c.family);
      if (!c.initial || !fam) {
        out.push({ change: c, prevGeneration: c.prevGeneration });
        continue;
      }
      const head = await this.opts.heads.head(c.node, c.family);
      if (head && head.digest === c.digest) {
        fam.setGeneration(c.node, head.generation);
        this.lastGeneration = Math.max(this.lastGeneration, head.generation);
        this.tracker.published({ node: c.node, family: c.family, mode: this.mode, generation: head.generation, digest: c.digest, triggerTime: undefined, at: Date.now() });
        continue;
      }
      out.push({ change: c, prevGeneration: head?.generation ?? 0 });
    }
    return out;
  }

  private async buildDeltas(generation: number, changes: ToPublish[], serviceCauses: Map<string, PendingCause[]>, nodeCauses: Map<string, PendingCause[]>): Promise<Delta[]> {
    const maxInline = this.opts.maxInlineBytes ?? 512 * 1024;
    const maxCauses = this.opts.maxCauses ?? 64;
    // A new node's state comes from every service: its causes are those of the whole sync, gathered once.
    let allServices: CauseSummary | undefined;
    // Most deltas of a sync name the same services: their causes are summarized once per distinct list.
    const byServices = new Map<string, CauseSummary>();
    const sizeTemplates = new Map<string, number>();
    const deltas: Delta[] = [];
    for (const { change: c, prevGeneration } of changes) {
      const fam = this.familyOf(c.family);
      if (!fam) continue;
      let snapshot = c.initial;
      const own = nodeCauses.get(c.node) ?? [];
      let causes: CauseSummary;
      if (c.initial) {
        allServices ??= summarizeCauses([...serviceCauses.values()].flat(), maxCauses);
        causes = own.length ? summarizeCauses([...own, ...allServices.kept], maxCauses, allServices.trigger) : allServices;
      } else {
        const key = own.length ? undefined : [...c.services].join('\n');
        const known = key === undefined ? undefined : byServices.get(key);
        if (known) causes = known;
        else {
          const pcs: PendingCause[] = [...own];
          for (const s of c.services) for (const pc of serviceCauses.get(s) ?? []) pcs.push(pc);
          causes = summarizeCauses(pcs, maxCauses);
          if (key !== undefined) byServices.set(key, causes);
        }
      }
      const delta: Delta = {
        node: c.node,
        generation,
        prevGeneration,
        upserts: snapshot ? [] : c.upserts.map((u) => u.wire),
        deletes: snapshot ? [] : c.deletes,
        digest: c.digest,
        cause: causes.kept.map((p) => p.cause),
        ...(causes.trigger !== undefined ? { triggerTime: timestamp(causes.trigger) } : {}),
        mode: this.mode,
        ipFamily: c.family,
        snapshot,
      };
      let size = snapshot ? undefined : this.encodedSize(delta, sizeTemplates);
      if (size !== undefined && size > maxInline) {
        snapshot = true;
        size = undefined;
        delta.upserts = [];
        delta.deletes = [];
        delta.snapshot = true;
      }
      if (size !== undefined) this.encodedSizes.set(delta, size);
      fam.setGeneration(c.node, generation);
      deltas.push(delta);
      await this.maybeSnapshot(fam, c.node, generation, snapshot);
    }
    return deltas;
  }

  /**
   * Delta.encode(delta).finish().length, with each upsert, delete and cause measured once per object: the
   * deltas of one sync carry the same objects (shared by reference), only the per-node fields differ.
   */
  private encodedSize(delta: Delta, templates: Map<string, number>): number {
    // The fields every delta of a sync shares are measured once (node and prev_generation left out), the two
    // per-node scalars are added: field 1 (string) and field 3 (uint64, omitted when 0), one-byte tags.
    const t = `${delta.generation}/${delta.triggerTime?.seconds}/${delta.triggerTime?.nanos}/${delta.digest.length}/${delta.mode}/${delta.ipFamily}/${delta.snapshot}`;
    let n = templates.get(t);
    if (n === undefined) {
      n = Delta.encode({ ...delta, node: '', prevGeneration: 0, upserts: [], deletes: [], cause: [] }).finish().length;
      templates.set(t, n);
    }
    const nodeBytes = Buffer.byteLength(delta.node);
    if (nodeBytes > 0) n += 1 + varintSize(nodeBytes) + nodeBytes;
    if (delta.prevGeneration > 0) n += 1 + varintSize(delta.prevGeneration);
    // Fields 4, 5 and 7, each length-delimited: a one-byte tag, the length as a varint, the bytes.
    const field = (len: number): number => 1 + varintSize(len) + len;
    for (const u of delta.upserts) n += field(this.measured(u, () => RuleObject.encode(u).finish().length));
    for (const d of delta.deletes) n += field(this.measured(d, () => ObjectRef.encode(d).finish().length));
    for (const c of delta.cause) n += field(this.measured(c, () => Cause.encode(c).finish().length));
    return n;
  }

  private measured(o: object, measure: () => number): number {
    let len = this.objectSizes.get(o);
    if (len === undefined) {
      len = measure();
      this.objectSizes.set(o, len);
    }
    return len;
  }

  private async maybeSnapshot(fam: FamilyStates, node: string, generation: number, forced: boolean): Promise<void> {
    if (!this.opts.snapshots) return;
    const k = `${node}/${fam.family}`;
    const n = (this.snapshotCounts.get(k) ?? 0) + 1;
    const every = this.opts.snapshotEvery ?? 0;
    if (!forced && (every === 0 || n < every)) {
      this.snapshotCounts.set(k, n);
      return;
    }
    this.snapshotCounts.set(k, 0);
    await this.opts.snapshots.put(this.snapshotOf(fam, node, generation));
  }

  private snapshotOf(fam: FamilyStates, node: string, generation: number): NodeRuleSet {
    return { node, mode: this.mode, ipFamily: fam.family, generation, objects: fam.objects(node).map((o) => o.wire), digest: fam.digest(node) ?? '' };
  }

  private async publish(deltas: Delta[]): Promise<number> {
    const limit = this.opts.publishConcurrency ?? 64;
    let bytes = 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < deltas.length) {
        const d = deltas[next++];
        if (!d) break;
        const span = this.opts.tracer.startSpan('kpx.publish', { attributes: { 'kpx.node': d.node, 'kpx.generation': d.generation, 'kpx.family': d.ipFamily } });
        const headers: Record<string, string> = {};
        injectTraceContext(headers, trace.setSpan(context.active(), span));
        try {
          bytes += this.encodedSizes.get(d) ?? Delta.encode(d).finish().length;
          await this.opts.sink.publish(d, headers);
          this.tracker.published({ node: d.node, family: d.ipFamily, mode: d.mode, generation: d.generation, digest: d.digest, triggerTime: d.triggerTime ? d.triggerTime.seconds * 1000 + d.triggerTime.nanos / 1e6 : undefined, at: Date.now() });
        } catch (err) {
          span.recordException(err as Error);
          // The node's chain now has a gap; its executor notices (prev_generation) and resyncs.
          this.opts.logger.error({ err, node: d.node, generation: d.generation }, 'publish failed');
        } finally {
          span.end();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, deltas.length) }, () => worker()));
    return bytes;
  }

  /** A node's current desired rule set (waits for a sync in progress so state and generation agree). */
  async snapshot(node: string, family: string): Promise<NodeRuleSet | undefined> {
    await this.runner.idle();
    const fam = this.familyOf(family);
    if (!fam || fam.generation(node) === undefined) return undefined;
    return this.snapshotOf(fam, node, fam.generation(node) ?? 0);
  }

  /** Known node and family pairs. */
  nodes(): { node: string; family: string }[] {
    return this.families.flatMap((f) => f.nodeNames().map((node) => ({ node, family: f.family })));
  }
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    size++;
  }
  return size;
}

interface CauseSummary {
  /** At most the limit, one per object (its last event), earliest trigger first. */
  readonly kept: PendingCause[];
  /** The earliest trigger time of all the causes, kept or not. */
  readonly trigger: number | undefined;
}

function summarizeCauses(pcs: readonly PendingCause[], max: number, trigger?: number): CauseSummary {
  const latest = new Map<string, PendingCause>();
  let earliest = trigger;
  for (const p of pcs) {
    if (earliest === undefined || p.observedAt < earliest) earliest = p.observedAt;
    latest.set(`${p.cause.kind}/${p.cause.namespace}/${p.cause.name}`, p);
  }
  let kept = [...latest.values()];
  if (kept.length > 1) kept.sort((a, b) => a.observedAt - b.observedAt);
  if (kept.length > max) kept = kept.slice(0, max);
  return { kept, trigger: earliest };
}

export type { RuleObject };
