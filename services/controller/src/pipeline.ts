// The controller pipeline: source events -> cluster state -> (coalesced) sync -> per-node deltas -> publish.
// A sync compiles what changed into what every node is owed (outbox.ts), then publishes it: at most one new
// cluster-wide generation per sync, a delta only for nodes whose rules changed, each chained by prev_generation to
// the last delta JetStream acknowledged for that node. A sync that could not publish everything fails and is
// retried with backoff (runner.ts); nothing compiled is lost and no generation is reused.
import { SpanKind, context, trace, type Context, type Link, type Span, type Tracer } from '@opentelemetry/api';
import { msFromTimestamp, timestampFromMs } from '@kpx/common';
import {
  ClusterState,
  LabelServiceName,
  ProxyMode,
  formatDiagnostic,
  type Diagnostic,
  type IPFamily,
  type KubeProxyConfig,
} from '@kpx/model';
import {
  IptablesMode,
  IpvsMode,
  iptablesOptionsFromConfig,
  ipvsOptionsFromConfig,
  modeCompiler,
  type IptablesOptions,
  type IpvsOptions,
} from '@kpx/compiler';
import { FamilyStates } from '@kpx/node-states';
import { Cause, Delta, ObjectRef, RuleObject, type NodeRuleSet } from '@kpx/proto';
import { injectTraceContext } from '@kpx/telemetry';
import { deltaSubject } from '@kpx/transport';
import {
  Outbox,
  type InFlight,
  type NodeHead,
  type Owed,
  type PendingCause,
  type PendingChange,
  type SyncCauses,
} from './outbox.js';
import type {
  DeltaSink,
  GenerationAudit,
  GenerationStore,
  GenerationSummary,
  PublishedHeads,
  SnapshotSink,
} from './ports.js';
import { CoalescingRunner, type RetryOptions } from './runner.js';
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
  /** A generation was built and its deltas sent: compile seconds, nodes changed, bytes. */
  synced?(s: { generation: number; compileSeconds: number; nodes: number; bytes: number }): void;
  /** Change to ack latency, seconds. */
  changeToAck?(seconds: number): void;
  /** A sync failed (it is retried with backoff). */
  syncFailed?(): void;
  /** Deltas JetStream did not acknowledge (retried), and those it did. */
  publishFailed?(n: number): void;
  published?(n: number): void;
}

/** The mode the controller compiles for a configuration: ipvs for `mode: ipvs`, else iptables. */
export function pipelineMode(config: KubeProxyConfig): string {
  return config.mode === ProxyMode.IPVS ? IpvsMode : IptablesMode;
}

/** The compiler options of a family for a configuration's mode. */
export function familyOptionsFromConfig(config: KubeProxyConfig, family: IPFamily): IptablesOptions | IpvsOptions {
  return pipelineMode(config) === IpvsMode
    ? ipvsOptionsFromConfig(config, family)
    : iptablesOptionsFromConfig(config, family);
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
  /** The audit log's generation records; an append that fails is retried with the deltas. */
  readonly audit?: GenerationAudit;
  /** Store a node's snapshot every this many of its generations (0: only with snapshot deltas). */
  readonly snapshotEvery?: number;
  readonly minSyncPeriodMs: number;
  /** Backoff of a failed sync's retries (default 500 ms doubling to 30 s). */
  readonly retry?: RetryOptions;
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
  /** Acks older than this make a node stale in status (ms; default 60 s). */
  readonly staleAfterMs?: number;
}

export type SyncOutcome = GenerationSummary;

/** Some deltas or audit records could not be published: the sync is retried. */
export class UnpublishedError extends Error {
  override readonly name = 'UnpublishedError';
}

export class ControllerPipeline {
  readonly state = new ClusterState();
  readonly tracker: ConvergenceTracker;
  private readonly families: FamilyStates[];
  /** The proxy mode of every rule set and delta. */
  readonly mode: string;
  private readonly runner: CoalescingRunner;
  /** What every node was sent and what it is still owed. */
  readonly outbox = new Outbox();
  private dirtyServices = new Set<string>();
  /** Of the dirty services, those whose Service object changed (the others only had EndpointSlice events). */
  private changedSpecs = new Set<string>();
  private dirtyNodes = new Set<string>();
  private serviceCauses = new Map<string, PendingCause[]>();
  private nodeCauses = new Map<string, PendingCause[]>();
  private synced = false;
  private lastGeneration = 0;
  private readonly snapshotCounts = new Map<string, number>();
  /** Generation records not yet in the audit log, oldest first, with when each was owed (ms). */
  private auditOwed: { readonly outcome: SyncOutcome; readonly since: number }[] = [];
  /** Ends a flush in progress early (stop). */
  private readonly abort = new AbortController();
  /** Encoded size of each rule object, object ref and cause put in a delta, measured once. */
  private readonly objectSizes = new WeakMap<object, number>();
  /** Called after every generation built and sent (tests and benchmarks wait on it). */
  private readonly listeners = new Set<(o: SyncOutcome) => void>();

  constructor(private readonly opts: PipelineOptions) {
    this.mode = opts.mode === IpvsMode ? IpvsMode : IptablesMode;
    this.tracker = new ConvergenceTracker({
      ...(opts.staleAfterMs !== undefined ? { staleAfterMs: opts.staleAfterMs } : {}),
    });
    this.families = [...opts.families.entries()].map(
      ([family, options]) => new FamilyStates({ family, options, compiler: modeCompiler(this.mode, options) }),
    );
    this.runner = new CoalescingRunner(
      () => this.sync(),
      opts.minSyncPeriodMs,
      (err, retryInMs) => {
        opts.metrics?.syncFailed?.();
        opts.logger.error({ err, retryInMs, owed: this.outbox.owed().length }, 'sync failed; retrying');
      },
      opts.retry,
    );
  }

  /** The newest generation built (published or still being retried). */
  get generation(): number {
    return this.lastGeneration;
  }

  /** Consecutive failed syncs (0 once one succeeds). */
  get failingSyncs(): number {
    return this.runner.consecutiveFailures;
  }

  /** Accepts one source event; the sync that follows is coalesced with others. */
  onEvent(e: SourceEvent): void {
    const ns = e.object.metadata?.namespace || 'default';
    const name = e.object.metadata?.name ?? '';
    const span = this.opts.tracer.startSpan(`kpx.event ${e.kind}`, {
      attributes: { 'k8s.kind': e.kind, 'k8s.namespace': ns, 'k8s.name': name, 'kpx.event': e.type },
    });
    span.end();
    const cause: Cause = {
      kind: e.kind,
      namespace: e.kind === ObjectKind.Node ? '' : ns,
      name,
      resourceVersion: e.object.metadata?.resourceVersion ?? '',
    };
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

  /** Waits for every requested sync to finish (including the retries of failed ones). */
  async settle(): Promise<void> {
    await this.runner.idle();
  }

  /** Calls `fn` after every generation built and sent. */
  onSync(fn: (o: SyncOutcome) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Retries a failing sync now instead of after its backoff (NATS reconnected). */
  retryNow(): void {
    this.runner.retryNow();
  }

  /** Stops syncing: a flush in progress ends after the publishes already sent. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.runner.stop();
  }

  /** When the oldest change not yet in JetStream was compiled (ms), undefined when everything is published. */
  unpublishedSince(): number | undefined {
    const deltas = this.outbox.oldestOwed();
    const audit = this.auditOwed[0]?.since;
    return deltas === undefined ? audit : audit === undefined ? deltas : Math.min(deltas, audit);
  }

  private async sync(): Promise<void> {
    const dirty = this.dirtyServices.size > 0 || this.dirtyNodes.size > 0;
    const all = dirty
      ? [...this.serviceCauses.values(), ...this.nodeCauses.values()].flat().sort((a, b) => a.observedAt - b.observedAt)
      : [];
    // One trace from the (earliest) API change to the publish; the other changes are linked.
    const parent: Context = all[0] ? trace.setSpan(context.active(), all[0].span) : context.active();
    const links: Link[] = all.slice(1, 32).map((c) => ({ context: c.span.spanContext() }));
    const span = this.opts.tracer.startSpan(
      'kpx.sync',
      {
        links,
        attributes: { 'kpx.services': this.dirtyServices.size, 'kpx.nodes': this.dirtyNodes.size, 'kpx.retry': !dirty },
      },
      parent,
    );
    try {
      await context.with(trace.setSpan(parent, span), async () => {
        const compileSeconds = dirty ? this.compile() : 0;
        await this.flush(span, compileSeconds);
      });
    } catch (err) {
      span.recordException(err as Error);
      throw err;
    } finally {
      span.end();
    }
  }

  /** Compiles the dirty services and nodes into what every node is owed. Returns the compile time, seconds. */
  private compile(): number {
    const services = this.dirtyServices;
    const endpointsOnly = new Set([...services].filter((s) => !this.changedSpecs.has(s)));
    const nodes = this.dirtyNodes;
    const causes: SyncCauses = { nodes: this.nodeCauses, services: this.serviceCauses };
    this.dirtyServices = new Set();
    this.changedSpecs = new Set();
    this.dirtyNodes = new Set();
    this.serviceCauses = new Map();
    this.nodeCauses = new Map();
    const t0 = performance.now();
    const compileSpan = this.opts.tracer.startSpan('kpx.compile');
    const changes = this.families.flatMap((f) => f.sync({ state: this.state, services, nodes, endpointsOnly }));
    compileSpan.setAttribute('kpx.changes', changes.length);
    compileSpan.end();
    const now = Date.now();
    for (const n of nodes) {
      if (this.state.node(n)) continue;
      for (const f of this.families) {
        this.tracker.forget(n, f.family);
        this.outbox.forget(n, f.family);
      }
    }
    for (const c of changes) {
      this.outbox.compiled(c.node, c.family, c, causes, now);
      this.tracker.compiled({ node: c.node, family: c.family, mode: this.mode, digest: c.digest, at: now });
    }
    return (performance.now() - t0) / 1000;
  }

  /**
   * Publishes what every node is owed: deltas in flight first (verbatim), then one new generation for the nodes
   * with unsent changes, then the audit records. Throws UnpublishedError when anything is still owed after it.
   */
  private async flush(span: Span, compileSeconds: number): Promise<void> {
    const owed = this.outbox.owed();
    const failures: unknown[] = [];
    const retried = owed.filter((e) => e.inFlight !== undefined);
    if (retried.length > 0) {
      this.opts.logger.info({ deltas: retried.length }, 'republishing deltas JetStream did not acknowledge');
      await this.publishAll(retried, failures);
    }
    if (failures.length === 0) {
      try {
        await this.lookUpHeads(owed);
        const ready = owed.filter((e) => !e.inFlight && e.unsent && e.headKnown);
        if (ready.length > 0) await this.buildAndPublish(ready, failures, span, compileSeconds);
      } catch (err) {
        failures.push(err);
      }
    }
    if (failures.length === 0) await this.appendAudit(failures);
    const left = this.outbox.owed().length;
    if (failures.length > 0 || left > 0 || this.auditOwed.length > 0) {
      const first = failures[0];
      const why = first instanceof Error ? `: ${first.message}` : '';
      throw new UnpublishedError(
        `${left} node deltas and ${this.auditOwed.length} audit records not yet in JetStream${why}`,
        { cause: first },
      );
    }
  }

  /**
   * The heads an earlier controller left for nodes this one has not published to yet. A node whose whole state
   * equals its head continues from there (nothing is republished); the generation counter is fenced above every
   * head found, so a counter that went backwards never hands out a generation a node already has.
   */
  private async lookUpHeads(owed: readonly Owed[]): Promise<void> {
    for (const e of owed) {
      if (e.headKnown || e.inFlight || !e.unsent) continue;
      if (this.abort.signal.aborted) throw new UnpublishedError('stopping');
      const head = this.opts.heads ? await this.opts.heads.head(e.node, e.family as IPFamily) : undefined;
      e.head = head;
      e.headKnown = true;
      if (!head) continue;
      await this.opts.generations.fence(head.generation);
      this.lastGeneration = Math.max(this.lastGeneration, head.generation);
      if (e.unsent.initial && head.digest === e.unsent.digest) this.nothingToSend(e, head);
    }
  }

  /** The node's unsent changes leave it at `head`, which JetStream already has: nothing to send, nothing pending. */
  private nothingToSend(e: Owed, head: NodeHead): void {
    e.unsent = undefined;
    this.familyOf(e.family)?.setGeneration(e.node, head.generation);
    const at = {
      node: e.node,
      family: e.family,
      mode: this.mode,
      generation: head.generation,
      digest: head.digest,
      triggerTime: undefined,
    };
    this.tracker.built(at);
    this.tracker.published({ ...at, at: Date.now() });
  }

  private async buildAndPublish(ready: Owed[], failures: unknown[], span: Span, compileSeconds: number): Promise<void> {
    const generation = await this.opts.generations.next();
    this.lastGeneration = Math.max(this.lastGeneration, generation);
    span.setAttribute('kpx.generation', generation);
    const built = await this.buildDeltas(generation, ready, failures);
    if (built.length === 0) return;
    await this.publishAll(
      built.map((b) => b.entry),
      failures,
    );
    const bytes = built.reduce((a, b) => a + b.bytes, 0);
    this.opts.metrics?.synced?.({ generation, compileSeconds, nodes: built.length, bytes });
    this.opts.logger.info(
      {
        generation,
        nodes: built.length,
        bytes,
        compileMs: Math.round(compileSeconds * 1000),
        unacknowledged: built.filter((b) => b.entry.inFlight).length,
      },
      'published generation',
    );
    const outcome = summarize(generation, built);
    this.auditOwed.push({ outcome, since: Date.now() });
    for (const l of this.listeners) l(outcome);
  }

  private familyOf(family: string): FamilyStates | undefined {
    return this.families.find((f) => f.family === family);
  }

  /**
   * Builds the delta of every ready entry at `generation`, chained to its head, and puts it in flight. A snapshot
   * delta is sent only once its snapshot is stored (the executor may fetch it from JetStream); an entry whose
   * snapshot cannot be stored keeps its changes unsent.
   */
  private async buildDeltas(generation: number, ready: Owed[], failures: unknown[]): Promise<Built[]> {
    const maxInline = this.opts.maxInlineBytes ?? 512 * 1024;
    const maxCauses = this.opts.maxCauses ?? 64;
    // Most deltas of a sync name the same services: their causes are summarized once per distinct list.
    const byServices = new Map<string, CauseSummary>();
    const sizeTemplates = new Map<string, number>();
    const built: Built[] = [];
    for (const e of ready) {
      const fam = this.familyOf(e.family);
      const change = e.unsent;
      if (!fam || !change) continue;
      if (change.empty && change.digest === e.head?.digest) {
        // Composed back to what the node has.
        this.nothingToSend(e, e.head);
        continue;
      }
      const causes = this.causesFor(e.node, change, byServices, maxCauses);
      let snapshot = change.initial;
      const delta: Delta = {
        node: e.node,
        generation,
        prevGeneration: e.head?.generation ?? 0,
        upserts: snapshot ? [] : [...change.upserts.values()].map((u) => u.wire),
        deletes: snapshot ? [] : [...change.deletes.values()],
        digest: change.digest,
        cause: causes.kept.map((p) => p.cause),
        ...(causes.trigger !== undefined ? { triggerTime: timestampFromMs(causes.trigger) } : {}),
        mode: this.mode,
        ipFamily: e.family,
        snapshot,
      };
      let size = snapshot ? 0 : this.encodedSize(delta, sizeTemplates);
      if (size > maxInline) {
        snapshot = true;
        delta.upserts = [];
        delta.deletes = [];
        delta.snapshot = true;
      }
      if (snapshot) size = Delta.encode(delta).finish().length;
      try {
        await this.maybeSnapshot(fam, e.node, generation, snapshot);
      } catch (err) {
        failures.push(err);
        this.opts.logger.warn(
          { err, node: e.node, family: e.family, generation },
          'storing a snapshot failed; the node keeps its changes for the next try',
        );
        continue;
      }
      fam.setGeneration(e.node, generation);
      const headers: Record<string, string> = {};
      e.unsent = undefined;
      e.inFlight = { delta, change, bytes: size, headers, attempts: 0 };
      this.tracker.built({
        node: e.node,
        family: e.family,
        mode: this.mode,
        generation,
        digest: delta.digest,
        triggerTime: causes.trigger,
      });
      built.push({ entry: e, delta, change, bytes: size });
    }
    return built;
  }

  private causesFor(
    node: string,
    change: PendingChange,
    byServices: Map<string, CauseSummary>,
    maxCauses: number,
  ): CauseSummary {
    const only = change.syncs.length === 1 ? change.syncs[0] : undefined;
    if (!only) return summarizeCauses(change.causesOf(node), maxCauses);
    // One sync (the common case): the services' causes are summarized once per distinct list of services and
    // shared by every node changed by them (a new node's list is every service); the node's own causes, if any,
    // are added to that summary.
    const key = only.services === 'all' ? '*' : [...only.services].join('\n');
    let shared = byServices.get(key);
    if (!shared) {
      const pcs: PendingCause[] = [];
      if (only.services === 'all') for (const l of only.causes.services.values()) pcs.push(...l);
      else for (const svc of only.services) for (const pc of only.causes.services.get(svc) ?? []) pcs.push(pc);
      byServices.set(key, (shared = summarizeCauses(pcs, maxCauses)));
    }
    const own = only.causes.nodes.get(node);
    return own?.length ? summarizeCauses([...own, ...shared.kept], maxCauses, shared.trigger) : shared;
  }

  /**
   * Publishes the deltas in flight of `entries`, in parallel. An acknowledged delta advances its node's head; one
   * whose generation turns out to be taken goes back to unsent (and the counter is fenced above it). After the
   * first failure no further publish starts: NATS is likely down, and each attempt would wait for its timeout.
   */
  private async publishAll(entries: readonly Owed[], failures: unknown[]): Promise<void> {
    const limit = this.opts.publishConcurrency ?? 64;
    let next = 0;
    let failed = 0;
    let ok = 0;
    const worker = async (): Promise<void> => {
      while (next < entries.length && failures.length === 0 && !this.abort.signal.aborted) {
        const e = entries[next++];
        if (!e?.inFlight) continue;
        if (await this.publishOne(e, e.inFlight, failures)) ok++;
        else failed++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, entries.length) }, () => worker()));
    if (ok > 0) this.opts.metrics?.published?.(ok);
    if (failed > 0) this.opts.metrics?.publishFailed?.(failed);
    if (this.abort.signal.aborted) failures.push(new UnpublishedError('stopping'));
  }

  private async publishOne(e: Owed, f: InFlight, failures: unknown[]): Promise<boolean> {
    const d = f.delta;
    // A PRODUCER span (messaging semantic conventions): the executor's apply is its CONSUMER child.
    const span = this.opts.tracer.startSpan('kpx.publish', {
      kind: SpanKind.PRODUCER,
      attributes: {
        'messaging.system': 'nats',
        'messaging.destination.name': deltaSubject(d.node),
        'messaging.operation.type': 'send',
        'messaging.operation.name': 'publish',
        'kpx.node': d.node,
        'kpx.generation': d.generation,
        'kpx.family': d.ipFamily,
        'kpx.attempt': f.attempts + 1,
      },
    });
    if (f.attempts === 0) injectTraceContext(f.headers, trace.setSpan(context.active(), span));
    f.attempts++;
    try {
      const outcome = await this.opts.sink.publish(d, f.headers);
      if (outcome?.duplicate && !outcome.duplicate.sameDelta) {
        // Another delta holds this generation's msg id: the stored counter went backwards. Never reuse it.
        await this.generationTaken(e, f);
        return false;
      }
      e.inFlight = undefined;
      e.head = { generation: d.generation, digest: d.digest };
      e.headKnown = true;
      this.tracker.published({
        node: d.node,
        family: d.ipFamily,
        mode: d.mode,
        generation: d.generation,
        digest: d.digest,
        triggerTime: d.triggerTime ? msFromTimestamp(d.triggerTime) : undefined,
        at: Date.now(),
      });
      return true;
    } catch (err) {
      span.recordException(err as Error);
      failures.push(err);
      this.opts.logger.warn(
        { err, node: d.node, generation: d.generation, attempts: f.attempts },
        'publish not acknowledged; will retry the same delta',
      );
      return false;
    } finally {
      span.end();
    }
  }

  /** The generation of an in-flight delta was published before by someone else: its changes go back to unsent. */
  private async generationTaken(e: Owed, f: InFlight): Promise<void> {
    const generation = f.delta.generation;
    this.opts.logger.error(
      { node: e.node, family: e.family, generation },
      'generation already published by another delta (the counter went backwards); fencing the counter and rebuilding',
    );
    e.inFlight = undefined;
    const change = f.change;
    if (e.unsent) change.append(e.unsent);
    // The head this node really has is unknown now: look it up again, and send the whole state above it.
    change.sendWholeState();
    e.unsent = change;
    e.headKnown = false;
    e.head = undefined;
    await this.opts.generations.fence(generation);
  }

  private async appendAudit(failures: unknown[]): Promise<void> {
    const audit = this.opts.audit;
    if (!audit) {
      this.auditOwed = [];
      return;
    }
    while (this.auditOwed.length > 0) {
      const o = this.auditOwed[0]!.outcome;
      try {
        await audit.append(o);
      } catch (err) {
        failures.push(err);
        this.opts.logger.warn({ err, generation: o.generation }, 'audit log append failed; will retry');
        return;
      }
      this.auditOwed.shift();
    }
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
    await this.opts.snapshots.put(this.snapshotOf(fam, node, generation));
    this.snapshotCounts.set(k, 0);
  }

  private snapshotOf(fam: FamilyStates, node: string, generation: number): NodeRuleSet {
    return {
      node,
      mode: this.mode,
      ipFamily: fam.family,
      generation,
      objects: fam.objects(node).map((o) => o.wire),
      digest: fam.digest(node) ?? '',
    };
  }

  /**
   * A node's current desired rule set (waits for a sync in progress so state and generation agree), labelled with
   * the newest generation built for the node. Changes not yet built are in it: the node's next delta composes every
   * object they touched, so it applies on this state as on the one of that generation.
   */
  async snapshot(node: string, family: string): Promise<NodeRuleSet | undefined> {
    await this.runnerQuiet();
    const fam = this.familyOf(family);
    if (!fam || fam.generation(node) === undefined) return undefined;
    return this.snapshotOf(fam, node, fam.generation(node) ?? 0);
  }

  /** Waits for a sync in progress, not for the retries of a failing one (NATS may be down for long). */
  private async runnerQuiet(): Promise<void> {
    if (this.runner.consecutiveFailures > 0) return;
    await this.runner.idle();
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

/** A delta built in a generation, for the node it was built for. */
interface Built {
  readonly entry: Owed;
  readonly delta: Delta;
  readonly change: PendingChange;
  readonly bytes: number;
}

/** What a generation did (audit log, listeners): its deltas, their sizes, and the causes of every change in it. */
function summarize(generation: number, built: readonly Built[]): SyncOutcome {
  const services = new Set<string>();
  const syncs = new Set<SyncCauses>();
  for (const { change } of built) {
    for (const s of change.services) services.add(s);
    for (const s of change.syncs) {
      syncs.add(s.causes);
      if (s.services === 'all') for (const k of s.causes.services.keys()) services.add(k);
    }
  }
  const pcs: PendingCause[] = [];
  for (const c of syncs) for (const m of [c.services, c.nodes]) for (const l of m.values()) pcs.push(...l);
  pcs.sort((a, b) => a.observedAt - b.observedAt);
  const seen = new Set<string>();
  const causes = pcs
    .map((p) => p.cause)
    .filter((c) => {
      const k = `${c.kind}/${c.namespace}/${c.name}/${c.resourceVersion}`;
      return seen.has(k) ? false : (seen.add(k), true);
    });
  return {
    generation,
    deltas: built.map((b) => b.delta),
    deltaBytes: built.map((b) => b.bytes),
    causes,
    services: [...services].sort(),
    triggerTime: pcs[0]?.observedAt,
  };
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
