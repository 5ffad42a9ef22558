// The executor of one node: follows kpx.delta.<node>, applies each delta through the backend of its IP family,
// resyncs from a snapshot on start, on a gap, on a digest mismatch, after a failed apply and when far behind,
// checks the kernel for drift, and acks every state it reaches to the controller.
//
// Every kernel operation (apply, restore, read-back) runs in one lane, one at a time, so a drift check never
// interleaves with an apply. Deltas are consumed one by one from an ordered consumer whose buffer is bounded;
// deltas that arrive during an apply wait there.
import { context, trace, SpanStatusCode, type Tracer } from '@opentelemetry/api';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { AckRequest, AckResponse, Delta } from '@kpx/proto';
import { RuleState, hashed, objectIdOf, type HashedObject } from '@kpx/ruleset';
import { extractTraceContext, type ExecutorMetrics, type HealthTracker, type Logger } from '@kpx/telemetry';
import { OutsideRetentionError, replayTo } from '@kpx/replay';
import { readDeltas, type DeltaRecord } from '@kpx/transport';
import type { Backend, ReadBack } from './backend.js';
import type { ConntrackCleaner } from './conntrack.js';
import type { ControllerClient, FetchedSnapshot } from './controller-client.js';
import { healthChecksOf, updateHealthChecks, type HealthCheckServers, type HealthCheckService } from './health-check.js';

export const IptablesMode = 'iptables';

/** The proxy mode whose rule sets a backend programs (its deltas, snapshots and acks): iptables unless it says. */
const modeOf = (b: Backend): string => b.mode ?? IptablesMode;

export interface ExecutorOptions {
  readonly node: string;
  readonly js: JetStreamClient;
  readonly controller: ControllerClient;
  /** One backend per IP family the node programs ("IPv4", "IPv6"). */
  readonly backends: ReadonlyMap<string, Backend>;
  readonly logger: Logger;
  readonly tracer: Tracer;
  readonly metrics?: ExecutorMetrics;
  readonly health?: HealthTracker;
  /**
   * Periodic read-back of the kernel (ms; default 10 s; 0 disables). A read-back also follows each burst of
   * applies. Checks are spaced by at least 10 times the last one's duration: on a large iptables-nft node one
   * read-back takes minutes, and checks share the executor's lane with the deltas.
   */
  readonly driftCheckMs?: number;
  /** Quiet time after the last apply before the read-back that follows it (default 500 ms). */
  readonly driftAfterApplyMs?: number;
  /** More deltas than this still pending on the node's subject: jump to a snapshot instead (default 1000). */
  readonly maxBehind?: number;
  /** Backoff of resync retries after failures (default 200 ms doubling to 10 s). */
  readonly retryInitialMs?: number;
  readonly retryMaxMs?: number;
  /** Deletes stale UDP conntrack entries after each apply and restore (a node duty; absent in dry runs). */
  readonly conntrack?: ConntrackCleaner;
  /** Serves the healthcheck.service objects of the applied state (a node duty; absent in dry runs). */
  readonly healthChecks?: HealthCheckServers;
}

/** What the executor holds for one IP family. */
export interface FamilyStatus {
  readonly family: string;
  readonly generation: number;
  readonly digest: string;
  readonly actualDigest: string;
  readonly lastError: string;
  readonly driftRepairs: number;
  readonly resyncs: number;
}

class Family {
  state = new RuleState();
  /** The rules are known to be in the kernel (false until the first restore). */
  programmed = false;
  actualDigest = '';
  reportedActual = '';
  lastError = '';
  driftRepairs = 0;
  resyncs = 0;
  /** The state's healthcheck.service objects by key, as last given to the health check servers. */
  healthChecks = new Map<string, HealthCheckService>();
  constructor(
    readonly family: string,
    readonly backend: Backend,
  ) {}
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

/** Periodic drift checks are spaced by at least this many times the last check's read-back time. */
const DRIFT_SPACING = 10;

const timestamp = (ms: number): { seconds: number; nanos: number } => ({ seconds: Math.floor(ms / 1000), nanos: Math.round((ms % 1000) * 1e6) });

export class Executor {
  private readonly families = new Map<string, Family>();
  private readonly abort = new AbortController();
  private lane: Promise<unknown> = Promise.resolve();
  private loop: Promise<void> | undefined;
  private driftTimer: NodeJS.Timeout | undefined;
  private driftSoon: NodeJS.Timeout | undefined;
  /** The drift check waiting in the lane (not started yet), if any. */
  private driftQueued: Promise<string[]> | undefined;
  /** How long the last drift check's read-backs took (ms; a repair's restore not counted), and when it ended. */
  private lastDriftMs = 0;
  private lastDriftEnd = -Infinity;
  private lastSeq = 0;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly opts: ExecutorOptions) {
    for (const [family, backend] of opts.backends) this.families.set(family, new Family(family, backend));
  }

  /** Converges every family from a snapshot, then follows the node's deltas. Resolves once converged. */
  async start(): Promise<void> {
    for (const fam of this.families.values()) await this.inLane(() => this.resync(fam, 'start', 0));
    this.loop = this.follow();
    this.schedulePeriodicDrift();
  }

  /** The next periodic drift check: `driftCheckMs` after the last one ended, or 10 times its duration if longer. */
  private schedulePeriodicDrift(): void {
    const every = this.opts.driftCheckMs ?? 10_000;
    if (every <= 0 || this.abort.signal.aborted) return;
    const wait = Math.max(every, DRIFT_SPACING * this.lastDriftMs);
    this.driftTimer = setTimeout(() => {
      this.driftTimer = undefined;
      void this.checkDrift().finally(() => this.schedulePeriodicDrift());
    }, wait);
  }

  async stop(): Promise<void> {
    this.abort.abort();
    if (this.driftTimer) clearTimeout(this.driftTimer);
    if (this.driftSoon) clearTimeout(this.driftSoon);
    await this.loop;
    await this.lane.catch(() => undefined);
  }

  status(): FamilyStatus[] {
    return [...this.families.values()].map((f) => ({
      family: f.family,
      generation: f.state.generation,
      digest: f.state.digest,
      actualDigest: f.actualDigest,
      lastError: f.lastError,
      driftRepairs: f.driftRepairs,
      resyncs: f.resyncs,
    }));
  }

  /** Called after every state change (apply, resync, repair); tests wait on it. */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Reads the kernel back now and repairs drift (also runs periodically). Resolves with what was found. */
  checkDrift(): Promise<string[]> {
    // At most one check waiting in the lane: a check asked for meanwhile joins it (it reads after the ask). One
    // that has started may have read before, so an ask then queues the next.
    if (this.driftQueued) return this.driftQueued;
    const check: Promise<string[]> = this.inLane(async () => {
      if (this.driftQueued === check) this.driftQueued = undefined;
      const readBacks = { ms: 0 };
      try {
        const found: string[] = [];
        for (const fam of this.families.values()) if (fam.programmed) found.push(...(await this.readBackAndRepair(fam, true, readBacks)));
        return found;
      } finally {
        this.lastDriftMs = readBacks.ms;
        this.lastDriftEnd = performance.now();
      }
    }).catch((err: unknown) => {
      this.opts.logger.error({ err }, 'drift check failed');
      return [];
    });
    this.driftQueued = check;
    return check;
  }

  private inLane<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lane.then(fn, fn);
    this.lane = run.catch(() => undefined);
    return run;
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  /** Follows the node's subject for ever, restarting the consumer after errors from where it stopped. */
  private async follow(): Promise<void> {
    let backoff = this.opts.retryInitialMs ?? 200;
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        const from = Math.min(...[...this.families.values()].map((f) => f.state.generation));
        for await (const rec of readDeltas(this.opts.js, this.opts.node, { follow: true, signal, fromGeneration: from, ...(this.lastSeq > 0 ? { startSeq: this.lastSeq + 1 } : {}) })) {
          this.lastSeq = rec.seq;
          await this.inLane(() => this.handle(rec));
          backoff = this.opts.retryInitialMs ?? 200;
        }
      } catch (err) {
        if (signal.aborted) break;
        this.opts.logger.warn({ err, retryInMs: backoff }, 'delta consumer failed; resuming');
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, this.opts.retryMaxMs ?? 10_000);
      }
    }
  }

  private async handle(rec: DeltaRecord): Promise<void> {
    const d = rec.delta;
    const fam = this.families.get(d.ipFamily);
    if (!fam || d.mode !== modeOf(fam.backend)) return;
    if (d.generation <= fam.state.generation) return; // already reached (a snapshot jumped past it)
    this.opts.health?.queuedUpdate(fam.family as 'IPv4');
    const maxBehind = this.opts.maxBehind ?? 1000;
    if (rec.pending > maxBehind) return this.resync(fam, `${rec.pending} deltas behind`, d.generation);
    if (d.snapshot) return this.resync(fam, 'the controller published a snapshot', d.generation);
    if (d.prevGeneration !== fam.state.generation) {
      return this.resync(fam, `gap: delta ${d.generation} continues generation ${d.prevGeneration}, the node is at ${fam.state.generation}`, d.generation);
    }
    await this.apply(fam, d, rec.headers);
  }

  private async apply(fam: Family, d: Delta, headers: Record<string, string>): Promise<void> {
    const parent = extractTraceContext(headers);
    const span = this.opts.tracer.startSpan('kpx.apply', { attributes: { 'kpx.node': this.opts.node, 'kpx.generation': d.generation, 'kpx.family': fam.family, 'kpx.upserts': d.upserts.length, 'kpx.deletes': d.deletes.length } }, parent);
    const ctx = trace.setSpan(parent, span);
    const t0 = performance.now();
    const previous = new Map<string, HashedObject | undefined>();
    for (const ref of d.deletes) previous.set(objectIdOf(ref), fam.state.objects.get(objectIdOf(ref)));
    const upserts = d.upserts.map(hashed);
    for (const u of upserts) if (!previous.has(u.id)) previous.set(u.id, fam.state.objects.get(u.id));
    const prevGeneration = fam.state.generation;
    try {
      try {
        fam.state.applyDelta(d);
      } catch (err) {
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: 'digest mismatch' });
        span.end();
        await context.with(ctx, () => this.resync(fam, `delta ${d.generation} does not reach its digest: ${(err as Error).message}`, d.generation));
        return;
      }
      try {
        await fam.backend.apply(fam.state, { upserts, deletes: d.deletes, previous });
      } catch (err) {
        // The kernel kept the old rules: so does the state.
        for (const [id, old] of previous) {
          const cur = fam.state.objects.get(id);
          if (cur) fam.state.delete(cur.wire);
          if (old) fam.state.upsert(old);
        }
        fam.state.generation = prevGeneration;
        const message = `applying delta ${d.generation} failed: ${(err as Error).message}`;
        fam.lastError = message;
        this.opts.metrics?.iptablesRestoreFailures.inc({ ip_family: fam.family });
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message });
        this.opts.logger.error({ err, generation: d.generation, family: fam.family }, 'apply failed; the old rules stay; resyncing');
        await context.with(ctx, () => this.sendAck(fam, { error: message, applyDurationSeconds: (performance.now() - t0) / 1000 }));
        span.end();
        await this.resync(fam, 'failed apply', d.generation);
        return;
      }
      const seconds = (performance.now() - t0) / 1000;
      fam.lastError = '';
      this.observeSync(fam, seconds, false);
      if (d.triggerTime) {
        const trigger = d.triggerTime.seconds * 1000 + d.triggerTime.nanos / 1e6;
        this.opts.metrics?.networkProgrammingDuration.observe({ ip_family: fam.family }, Math.max(0, (Date.now() - trigger) / 1000));
      }
      this.opts.logger.debug({ generation: d.generation, family: fam.family, upserts: d.upserts.length, deletes: d.deletes.length, ms: Math.round(seconds * 1000) }, 'applied delta');
      // The rules are in the kernel: now the UDP flows they no longer describe can go (never rejects).
      await this.opts.conntrack?.afterApply(fam.family, fam.state, { upserts, deletes: d.deletes, previous });
      if (updateHealthChecks(fam.healthChecks, fam.state, previous.keys())) await this.syncHealthChecks(fam);
      const res = await context.with(ctx, () => this.sendAck(fam, { applyDurationSeconds: seconds }));
      span.end();
      this.changed();
      if (res?.resyncRequired && res.latestGeneration === fam.state.generation) {
        // The controller published another digest at this generation than the one we reached.
        await this.resync(fam, `the controller's digest at generation ${fam.state.generation} differs from ours`, fam.state.generation);
        return;
      }
      this.scheduleDriftCheck();
    } finally {
      if (span.isRecording()) span.end();
    }
  }

  /**
   * Fetches the node's state (from the controller, else the newest snapshot in JetStream) at `minGeneration` or
   * later and converges the kernel to it with a full restore. Retries with backoff until it succeeds or the
   * executor stops. A node the controller does not know (yet) keeps what it has.
   */
  private async resync(fam: Family, reason: string, minGeneration: number): Promise<void> {
    let backoff = this.opts.retryInitialMs ?? 200;
    const signal = this.abort.signal;
    this.opts.logger.info({ family: fam.family, reason, generation: fam.state.generation }, 'resyncing from a snapshot');
    while (!signal.aborted) {
      const t0 = performance.now();
      try {
        const snap = await this.fetchSnapshot(fam, minGeneration);
        if (!snap) {
          if (minGeneration === 0) {
            this.opts.logger.info({ family: fam.family }, 'no rules for this node yet; waiting for the controller');
            return;
          }
          throw new Error(`no snapshot at generation ${minGeneration} or later yet`);
        }
        const state = RuleState.from(snap.objects, snap.generation);
        if (snap.digest && state.digest !== snap.digest) throw new Error(`snapshot ${snap.generation} does not reach its digest`);
        await fam.backend.restore(state);
        const before = fam.state;
        fam.state = state;
        fam.programmed = true;
        fam.lastError = '';
        fam.resyncs++;
        const seconds = (performance.now() - t0) / 1000;
        this.observeSync(fam, seconds, true);
        this.opts.logger.info({ family: fam.family, generation: state.generation, objects: state.objects.size, ms: Math.round(seconds * 1000), reason }, 'converged from snapshot');
        await this.opts.conntrack?.afterRestore(fam.family, before, state);
        fam.healthChecks = healthChecksOf(state);
        await this.syncHealthChecks(fam);
        const rb = await this.readBackAndRepair(fam, false);
        await this.sendAck(fam, { applyDurationSeconds: seconds, drift: rb });
        this.changed();
        return;
      } catch (err) {
        if (signal.aborted) return;
        fam.lastError = `resync failed: ${(err as Error).message}`;
        this.opts.metrics?.iptablesRestoreFailures.inc({ ip_family: fam.family });
        this.opts.logger.warn({ err, family: fam.family, retryInMs: backoff }, 'resync failed; retrying');
        await this.sendAck(fam, { error: fam.lastError, applyDurationSeconds: 0 });
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, this.opts.retryMaxMs ?? 10_000);
      }
    }
  }

  private async fetchSnapshot(fam: Family, minGeneration: number): Promise<FetchedSnapshot | undefined> {
    try {
      const snap = await this.opts.controller.snapshot(this.opts.node, modeOf(fam.backend), fam.family);
      if (snap && snap.generation >= minGeneration) return snap;
      if (!snap && minGeneration === 0) return undefined;
    } catch (err) {
      this.opts.logger.warn({ err, family: fam.family }, 'controller snapshot unavailable; trying JetStream');
    }
    // The controller is down or behind: the snapshots it stored in JetStream, then the deltas after them.
    let replayed;
    try {
      replayed = await replayTo(this.opts.js, { node: this.opts.node, family: fam.family });
    } catch (err) {
      if (err instanceof OutsideRetentionError) return undefined;
      throw err;
    }
    if (replayed.generation < minGeneration) return undefined;
    return { generation: replayed.generation, digest: replayed.digest, objects: replayed.state.sortedObjects() };
  }

  /** Gives the family's health checks to the servers (never rejects: failed binds are logged and retried there). */
  private async syncHealthChecks(fam: Family): Promise<void> {
    if (!this.opts.healthChecks) return;
    const r = await this.opts.healthChecks.sync(fam.family, [...fam.healthChecks.values()]);
    this.opts.logger.debug({ family: fam.family, listening: r.listening, failed: r.failed.length }, 'health check servers synced');
  }

  private scheduleDriftCheck(): void {
    if (this.driftSoon) clearTimeout(this.driftSoon);
    this.driftSoon = setTimeout(() => {
      this.driftSoon = undefined;
      // Within 10 read-back times of the last check, leave it to the periodic one (due by the end of that
      // window): on a node whose read-back takes minutes, one after every burst would hold up the deltas.
      const periodic = (this.opts.driftCheckMs ?? 10_000) > 0;
      if (periodic && performance.now() - this.lastDriftEnd < DRIFT_SPACING * this.lastDriftMs) return;
      void this.checkDrift();
    }, this.opts.driftAfterApplyMs ?? 500);
  }

  /**
   * Reads one family back; repairs and reports drift. Returns the drift found. Runs in the lane. The read-back's
   * time (not a repair's) is added to `readBacks` when given.
   */
  private async readBackAndRepair(fam: Family, report = true, readBacks?: { ms: number }): Promise<string[]> {
    const started = performance.now();
    let rb: ReadBack;
    try {
      rb = await fam.backend.readBack(fam.state);
    } finally {
      if (readBacks) readBacks.ms += performance.now() - started;
    }
    fam.actualDigest = rb.digest;
    if (rb.digest === fam.state.digest) {
      // Also a heartbeat: a restarted controller learns what this node holds without waiting for a change.
      if (report) await this.sendAck(fam, { applyDurationSeconds: 0 });
      return [];
    }
    const drift = rb.drift.length > 0 ? [...rb.drift] : [`digest ${rb.digest} instead of ${fam.state.digest}`];
    this.opts.logger.warn({ family: fam.family, generation: fam.state.generation, drift: drift.slice(0, 20), differences: drift.length }, 'rules changed behind kpx; repairing');
    const t0 = performance.now();
    await fam.backend.restore(fam.state);
    this.observeSync(fam, (performance.now() - t0) / 1000, true);
    fam.driftRepairs++;
    this.opts.metrics?.driftRepairs.inc();
    const after = await fam.backend.readBack(fam.state);
    fam.actualDigest = after.digest;
    if (after.digest !== fam.state.digest) this.opts.logger.error({ family: fam.family, drift: after.drift.slice(0, 20) }, 'drift persists after repair');
    if (report) {
      await this.sendAck(fam, { applyDurationSeconds: 0, drift });
      this.changed();
    }
    return drift;
  }

  private observeSync(fam: Family, seconds: number, full: boolean): void {
    const m = this.opts.metrics;
    const labels = { ip_family: fam.family as 'IPv4' };
    m?.syncProxyRulesDuration.observe(labels, seconds);
    (full ? m?.syncFullProxyRulesDuration : m?.syncPartialProxyRulesDuration)?.observe(labels, seconds);
    m?.syncProxyRulesLastTimestamp.set(labels, Date.now() / 1000);
    m?.appliedGeneration.set(fam.state.generation);
    this.opts.health?.updated(fam.family as 'IPv4');
  }

  private async sendAck(fam: Family, r: { applyDurationSeconds: number; error?: string; drift?: readonly string[] }): Promise<AckResponse | undefined> {
    const req: AckRequest = {
      node: this.opts.node,
      generation: fam.state.generation,
      digest: fam.state.digest,
      applyDurationSeconds: r.applyDurationSeconds,
      error: r.error ?? '',
      mode: modeOf(fam.backend),
      ipFamily: fam.family,
      ...(r.error ? {} : { appliedTime: timestamp(Date.now()) }),
      actualDigest: fam.actualDigest,
      drift: [...(r.drift ?? [])],
      driftTotal: r.drift?.length ?? 0,
      rejectedMessages: 0,
      lastRejection: '',
    };
    try {
      const res = await this.opts.controller.ack(req);
      fam.reportedActual = fam.actualDigest;
      return res;
    } catch (err) {
      // The controller is down or restarting: deltas keep flowing through NATS; the next ack reports the state.
      this.opts.logger.debug({ err }, 'ack failed');
      return undefined;
    }
  }
}
