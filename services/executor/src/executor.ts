// The executor of one node: follows kpx.delta.<node>, applies each delta through the backend of its IP family,
// resyncs from a snapshot on start, on a gap, on a digest mismatch, after a failed apply, when far behind and when
// the controller's answer to an ack asks, checks the kernel for drift, and acks every state it reaches to the
// controller.
//
// Nothing a message says is waited for (issue #12): a message that cannot be decoded, is another node's, does not
// chain or does not reach its digest is skipped (never redelivered: the consumer moves past its seq), counted and
// reported in the next ack, and the node resyncs to the newest state available (the controller's latest, else
// what replay builds from JetStream), whatever generation the message named.
//
// Every kernel operation (apply, restore, read-back) runs in one lane, one at a time, so a drift check never
// interleaves with an apply. Deltas are consumed one by one from an ordered consumer whose buffer is bounded;
// deltas that arrive during an apply wait there.
import { context, trace, SpanKind, SpanStatusCode, type Tracer } from '@opentelemetry/api';
import type { JetStreamClient } from '@nats-io/jetstream';
import {
  Backoff,
  SerialQueue,
  backoffDelay,
  msFromTimestamp,
  secondsFromMs,
  sleep,
  timestampFromMs,
} from '@kpx/common';
import { ProxyMode, type AckRequest, type AckResponse, type Delta } from '@kpx/proto';
import { RuleState, type UndoToken } from '@kpx/ruleset';
import { extractTraceContext, type ExecutorMetrics, type HealthTracker, type Logger } from '@kpx/telemetry';
import { findForbiddenObject } from '@kpx/kernel';
import { OutsideRetentionError, replayTo } from '@kpx/replay';
import {
  deltaSubject,
  lastDeltaSeq,
  readDeltaMessages,
  RejectReason,
  StoppingError,
  type ControllerClient,
  type DeltaMessage,
  type DeltaRecord,
  type FetchedSnapshot,
  type Verifier,
} from '@kpx/transport';
import { abortable } from './abortable.js';
import type { Backend, ReadBack } from './backend.js';
import type { ConntrackCleaner } from './conntrack.js';
import { SnapshotDigestError } from './errors.js';
import {
  healthChecksOf,
  updateHealthChecks,
  type HealthCheckServers,
  type HealthCheckService,
} from './health-check.js';
import { Rejections } from './rejections.js';

export const IptablesMode = ProxyMode.IPTables;

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
  /**
   * After a resync a bad message caused, how long further bad messages hold the next one back (default 5 s,
   * doubling to 60 s while they keep coming; a delta that chains ends it). See Executor.resyncForMessage.
   */
  readonly messageResyncHoldMs?: number;
  /**
   * An ack at least this often (ms, default 15 s; 0 disables), also while nothing changes and a read-back holds the
   * lane, so the controller can tell a silent executor (`stale` in status) from a quiet one.
   */
  readonly heartbeatMs?: number;
  /** Deletes stale UDP conntrack entries after each apply and restore (a node duty; absent in dry runs). */
  readonly conntrack?: ConntrackCleaner;
  /** Serves the healthcheck.service objects of the applied state (a node duty; absent in dry runs). */
  readonly healthChecks?: HealthCheckServers;
  /**
   * The controller's public keys (issue #15): a message of the subject whose signature does not verify is rejected
   * (reason `signature`) like any other bad message, and replay from JetStream verifies deltas and snapshots.
   */
  readonly verifier?: Verifier;
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
  /** `generation/digest` of the state the controller last refused (resyncRequired), while it still refuses it. */
  refused: string | undefined;
  /** When the controller last took an ack of this family (ms, performance.now()). */
  lastAckAt = -Infinity;
  /** A bad message already caused a resync and no delta has chained since (see Executor.resyncForMessage). */
  messageResyncSpent = false;
  /** Why a resync a bad message asked for is held back, and the timer that runs it. */
  heldResync: string | undefined;
  heldTimer: NodeJS.Timeout | undefined;
  /** Resyncs held back since a delta last chained: the next one waits longer (backoff). */
  holds = 0;
  constructor(
    readonly family: string,
    readonly backend: Backend,
  ) {}
}

/** Periodic drift checks are spaced by at least this many times the last check's read-back time. */
const DRIFT_SPACING = 10;

/** Drift lines an ack carries at most (AckRequest.drift_total counts them all). */
export const MaxAckDriftLines = 100;

/** Resyncs the controller's answers may ask for in a row before the executor waits for the next delta. */
const MaxAnswerResyncs = 3;

const stateKey = (fam: Family): string => `${fam.state.generation}/${fam.state.digest}`;

export class Executor {
  private readonly families = new Map<string, Family>();
  private readonly abort = new AbortController();
  private readonly lane = new SerialQueue();
  private loop: Promise<void> | undefined;
  private driftTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private driftSoon: NodeJS.Timeout | undefined;
  /** The drift check waiting in the lane (not started yet), if any. */
  private driftQueued: Promise<string[]> | undefined;
  /** How long the last drift check's read-backs took (ms; a repair's restore not counted), and when it ended. */
  private lastDriftMs = 0;
  private lastDriftEnd = -Infinity;
  private lastSeq = 0;
  private readonly listeners = new Set<() => void>();
  private readonly rejections: Rejections;

  constructor(private readonly opts: ExecutorOptions) {
    for (const [family, backend] of opts.backends) this.families.set(family, new Family(family, backend));
    this.rejections = new Rejections(opts.metrics);
  }

  /**
   * Converges every family from a snapshot, then follows the node's deltas. Resolves once converged, or at once
   * when stop() is called meanwhile (the kernel keeps what it had).
   */
  async start(): Promise<void> {
    const head = await this.subjectHead();
    for (const fam of this.families.values()) await this.inLane(() => this.resyncAndObey(fam, 'start'));
    if (this.abort.signal.aborted) return;
    // Every message on the subject before the resyncs is in the states they fetched (the controller's latest, or
    // replay to the end of the subject): follow from the one after, so that the history — and any garbage in it —
    // is not read (and rejected) again on every start.
    if ([...this.families.values()].every((f) => f.programmed)) this.lastSeq = head;
    this.loop = this.follow();
    this.schedulePeriodicDrift();
    this.startHeartbeat();
  }

  /**
   * Acks every programmed family that has not acked for `heartbeatMs`. Sent outside the lane (a read-back there may
   * take minutes); an answer asking for a resync is taken up in the lane, with a fresh ack of the state then.
   */
  private startHeartbeat(): void {
    const every = this.opts.heartbeatMs ?? 15_000;
    if (every <= 0) return;
    this.heartbeatTimer = setInterval(
      () => {
        for (const fam of this.families.values()) {
          if (!fam.programmed || performance.now() - fam.lastAckAt < every) continue;
          void this.sendAck(fam, { applyDurationSeconds: 0 }).then((res) => {
            if (res?.resyncRequired && !this.abort.signal.aborted)
              void this.inLane(() => this.ackAndObey(fam, { applyDurationSeconds: 0 }));
          });
        }
      },
      Math.max(50, Math.floor(every / 3)),
    );
    this.heartbeatTimer.unref();
  }

  /** The seq of the last message on the node's subject (0 when unknown: the consumer then starts by generation). */
  private async subjectHead(): Promise<number> {
    try {
      return await abortable(lastDeltaSeq(this.opts.js, this.opts.node), this.abort.signal, 'reading the subject head');
    } catch (err) {
      if (!(err instanceof StoppingError))
        this.opts.logger.warn(
          { err },
          'could not read the last seq of the node subject; following from the applied generation',
        );
      return 0;
    }
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
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.driftSoon) clearTimeout(this.driftSoon);
    for (const fam of this.families.values()) if (fam.heldTimer) clearTimeout(fam.heldTimer);
    await this.loop;
    await this.lane.idle();
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
        for (const fam of this.families.values())
          if (fam.programmed) found.push(...(await this.readBackAndRepair(fam, true, readBacks)));
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
    return this.lane.run(fn);
  }

  /** The waits between retries of a failing consumer or resync: retryInitialMs doubling to retryMaxMs. */
  private retryBackoff(): Backoff {
    return new Backoff({ initialMs: this.opts.retryInitialMs ?? 200, maxMs: this.opts.retryMaxMs ?? 10_000 });
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  /**
   * Follows the node's subject for ever, restarting the consumer after errors from the seq after the last message
   * handled: a message is handled once, whatever it holds, and never redelivered.
   */
  private async follow(): Promise<void> {
    const backoff = this.retryBackoff();
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        const from = Math.min(...[...this.families.values()].map((f) => f.state.generation));
        const position = this.lastSeq > 0 ? { startSeq: this.lastSeq + 1 } : { fromGeneration: from };
        const verifying = this.opts.verifier ? { verifier: this.opts.verifier } : {};
        for await (const m of readDeltaMessages(this.opts.js, this.opts.node, {
          follow: true,
          signal,
          ...position,
          ...verifying,
        })) {
          this.lastSeq = m.ok ? m.record.seq : m.rejected.seq;
          await this.inLane(() => this.handle(m));
          backoff.reset();
        }
      } catch (err) {
        if (signal.aborted) break;
        const wait = backoff.next();
        this.opts.logger.warn({ err, retryInMs: wait }, 'delta consumer failed; resuming');
        await sleep(wait, signal);
      }
    }
  }

  private async handle(m: DeltaMessage): Promise<void> {
    if (!m.ok) return this.rejected(undefined, m.rejected.reason, m.rejected.detail);
    const rec: DeltaRecord = m.record;
    const d = rec.delta;
    const fam = this.families.get(d.ipFamily);
    if (!fam) return; // a family this executor does not program
    if (d.mode !== modeOf(fam.backend))
      return this.rejected(
        fam,
        RejectReason.ModeFamily,
        `seq ${rec.seq}: a ${d.mode} delta, this node programs ${modeOf(fam.backend)}`,
      );
    if (d.generation <= fam.state.generation)
      return this.rejected(
        fam,
        RejectReason.Old,
        `seq ${rec.seq}: delta ${d.generation} is at or below generation ${fam.state.generation}`,
      );
    this.opts.health?.queuedUpdate(fam.family as 'IPv4');
    const maxBehind = this.opts.maxBehind ?? 1000;
    if (rec.pending > maxBehind) return this.resyncAndObey(fam, `${rec.pending} deltas behind`);
    if (d.snapshot)
      return this.resyncForMessage(fam, `the controller published a snapshot at generation ${d.generation}`);
    if (d.prevGeneration !== fam.state.generation) {
      return this.rejected(
        fam,
        RejectReason.Gap,
        `delta ${d.generation} continues generation ${d.prevGeneration}, the node is at ${fam.state.generation}`,
      );
    }
    if (d.digest === '')
      return this.rejected(fam, RejectReason.Digest, `seq ${rec.seq}: delta ${d.generation} announces no digest`);
    // Nothing outside kpx's namespace reaches the kernel, whoever published it: the whole delta is refused.
    const forbidden = findForbiddenObject(d.upserts);
    if (forbidden)
      return this.rejected(
        fam,
        RejectReason.ForbiddenObject,
        `seq ${rec.seq}: delta ${d.generation}: ${forbidden.message}`,
      );
    await this.apply(fam, d, rec.headers);
  }

  /**
   * A message skipped: counted, reported in the next ack, and (unless it is only old, or of a mode resyncing cannot
   * help) a resync of its family — every family for a message that names none — from the newest snapshot.
   */
  private async rejected(fam: Family | undefined, reason: RejectReason, detail: string): Promise<void> {
    this.rejections.add(reason, detail);
    const log = { reason, detail, ...(fam ? { family: fam.family } : {}) };
    if (reason === RejectReason.Old) {
      this.opts.logger.debug(log, 'skipped a delta at or below the applied generation');
      return;
    }
    this.opts.logger.warn(log, 'rejected a message of the node subject');
    const fams = fam ? [fam] : [...this.families.values()];
    if (reason !== RejectReason.ModeFamily)
      for (const f of fams) await this.resyncForMessage(f, `${reason}: ${detail}`);
    const first = fams[0];
    if (first && this.rejections.pending().rejectedMessages > 0)
      await this.ackAndObey(first, { applyDurationSeconds: 0 });
  }

  /**
   * A message says the family may have missed a change (it was rejected, or it is a snapshot marker). The rule
   * against thrashing: the first such message resyncs at once; until a delta chains again, later ones do not (a
   * stream of garbage must not keep the node restoring) but hold one resync back, run `messageResyncHoldMs` later
   * (doubling while bad messages keep coming, up to 60 s), in case one of them did hide a change nothing else
   * would tell the node about.
   */
  private async resyncForMessage(fam: Family, reason: string): Promise<void> {
    if (!fam.messageResyncSpent) {
      fam.messageResyncSpent = true;
      return this.resyncAndObey(fam, reason);
    }
    fam.heldResync = reason;
    if (fam.heldTimer || this.abort.signal.aborted) return;
    const initial = this.opts.messageResyncHoldMs ?? 5_000;
    const wait = backoffDelay(++fam.holds, { initialMs: initial, maxMs: Math.max(initial, 60_000) });
    this.opts.logger.info(
      { family: fam.family, reason, inMs: wait },
      'resync held back: the last bad message already caused one',
    );
    fam.heldTimer = setTimeout(() => {
      fam.heldTimer = undefined;
      void this.inLane(() => this.runHeldResync(fam));
    }, wait);
  }

  private async runHeldResync(fam: Family): Promise<void> {
    const reason = fam.heldResync;
    fam.heldResync = undefined;
    if (reason === undefined || this.abort.signal.aborted) return;
    await this.resyncAndObey(fam, `${reason} (held back)`);
  }

  /** A delta chained onto the state: the messages before it hid nothing; the next bad one may resync at once. */
  private chained(fam: Family): void {
    fam.messageResyncSpent = false;
    fam.heldResync = undefined;
    fam.holds = 0;
    if (fam.heldTimer) clearTimeout(fam.heldTimer);
    fam.heldTimer = undefined;
  }

  private async apply(fam: Family, d: Delta, headers: Record<string, string>): Promise<void> {
    const parent = extractTraceContext(headers);
    // A CONSUMER span (messaging semantic conventions), child of the controller's PRODUCER span kpx.publish.
    const span = this.opts.tracer.startSpan(
      'kpx.apply',
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          'messaging.system': 'nats',
          'messaging.destination.name': deltaSubject(this.opts.node),
          'messaging.operation.type': 'process',
          'kpx.node': this.opts.node,
          'kpx.generation': d.generation,
          'kpx.family': fam.family,
          'kpx.upserts': d.upserts.length,
          'kpx.deletes': d.deletes.length,
        },
      },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    const t0 = performance.now();
    try {
      let applied: UndoToken;
      try {
        applied = fam.state.apply(d);
      } catch (err) {
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: 'digest mismatch' });
        span.end();
        await context.with(ctx, () =>
          this.rejected(
            fam,
            RejectReason.Digest,
            `delta ${d.generation} does not reach its digest: ${(err as Error).message}`,
          ),
        );
        return;
      }
      try {
        await fam.backend.apply(fam.state, applied);
      } catch (err) {
        // The kernel kept the old rules: so does the state.
        fam.state.undo(applied);
        const message = `applying delta ${d.generation} failed: ${(err as Error).message}`;
        fam.lastError = message;
        this.opts.metrics?.iptablesRestoreFailures.inc({ ip_family: fam.family });
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message });
        this.opts.logger.error(
          { err, generation: d.generation, family: fam.family },
          'apply failed; the old rules stay; resyncing',
        );
        await context.with(ctx, () =>
          this.sendAck(fam, { error: message, applyDurationSeconds: (performance.now() - t0) / 1000 }),
        );
        span.end();
        await this.resyncAndObey(fam, 'failed apply');
        return;
      }
      const seconds = (performance.now() - t0) / 1000;
      fam.lastError = '';
      this.chained(fam);
      this.observeSync(fam, seconds, false);
      if (d.triggerTime) {
        const trigger = msFromTimestamp(d.triggerTime);
        this.opts.metrics?.networkProgrammingDuration.observe(
          { ip_family: fam.family },
          Math.max(0, secondsFromMs(Date.now() - trigger)),
        );
      }
      // Logged within the apply's span: the line carries its trace_id and span_id.
      context.with(ctx, () =>
        this.opts.logger.debug(
          {
            generation: d.generation,
            family: fam.family,
            upserts: d.upserts.length,
            deletes: d.deletes.length,
            ms: Math.round(seconds * 1000),
          },
          'applied delta',
        ),
      );
      // The rules are in the kernel: now the UDP flows they no longer describe can go (never rejects).
      await this.opts.conntrack?.afterApply(fam.family, fam.state, applied);
      if (updateHealthChecks(fam.healthChecks, fam.state, applied.previous.keys())) await this.syncHealthChecks(fam);
      const res = await context.with(ctx, () => this.sendAck(fam, { applyDurationSeconds: seconds }));
      span.end();
      this.changed();
      if (await this.obey(fam, res)) return;
      this.scheduleDriftCheck();
    } finally {
      if (span.isRecording()) span.end();
    }
  }

  /** Resyncs, then obeys the controller's answer to the ack of the state reached. */
  private async resyncAndObey(fam: Family, reason: string): Promise<void> {
    await this.obey(fam, await this.resync(fam, reason));
  }

  /**
   * Obeys the controller's answer to an ack (true when it resynced). `resyncRequired`: the controller holds
   * another state for this node than the one acked (another digest at that generation, a generation it never
   * published, or no record of the node), so the family resyncs to the newest state, once per answer. The
   * guard against loops: when a resync lands on the very generation and digest the controller refused before it,
   * resyncing again would fetch the same state again; the family then keeps it and waits for the next delta (whose
   * ack gets a new answer). At most MaxAnswerResyncs in a row either way.
   */
  private async obey(fam: Family, res: AckResponse | undefined): Promise<boolean> {
    let answer = res;
    let resynced = false;
    for (
      let round = 0;
      answer?.resyncRequired === true && round < MaxAnswerResyncs && !this.abort.signal.aborted;
      round++
    ) {
      const here = stateKey(fam);
      if (fam.refused === here) {
        this.opts.logger.warn(
          { family: fam.family, generation: fam.state.generation, latestGeneration: answer.latestGeneration },
          'the controller still refuses the state a resync gave; waiting for the next delta',
        );
        return resynced;
      }
      fam.refused = here;
      answer = await this.resync(
        fam,
        `the controller refused generation ${fam.state.generation} digest ${fam.state.digest} (its newest: ${answer.latestGeneration})`,
      );
      resynced = true;
    }
    if (answer && !answer.resyncRequired) fam.refused = undefined;
    return resynced;
  }

  /**
   * Converges the kernel to the newest state of the family available — the controller's latest, else the newest
   * one replay builds from JetStream — with a full restore, and acks it. Never waits for a particular generation:
   * whatever a message named, the newest state is the one to hold. Retries with backoff while nothing can be
   * fetched (or restored) until the executor stops. A node nobody has rules for keeps what it has. Resolves
   * with the controller's answer to the ack (undefined when there was nothing to converge to, the ack failed or
   * the executor stopped).
   */
  private async resync(fam: Family, reason: string): Promise<AckResponse | undefined> {
    const backoff = this.retryBackoff();
    const signal = this.abort.signal;
    this.opts.logger.info(
      { family: fam.family, reason, generation: fam.state.generation },
      'resyncing from a snapshot',
    );
    while (!signal.aborted) {
      const t0 = performance.now();
      try {
        const snap = await this.fetchSnapshot(fam);
        if (!snap) {
          this.opts.logger.info({ family: fam.family }, 'no rules for this node yet; waiting for the controller');
          return undefined;
        }
        return await this.converge(fam, snap, reason, t0);
      } catch (err) {
        if (signal.aborted) return undefined;
        fam.lastError = `resync failed: ${(err as Error).message}`;
        this.opts.metrics?.iptablesRestoreFailures.inc({ ip_family: fam.family });
        const wait = backoff.next();
        this.opts.logger.warn({ err, family: fam.family, retryInMs: wait }, 'resync failed; retrying');
        await this.sendAck(fam, { error: fam.lastError, applyDurationSeconds: 0 });
        await sleep(wait, signal);
      }
    }
    return undefined;
  }

  /** Restores `snap` into the kernel, makes it the family's state and acks it. */
  private async converge(
    fam: Family,
    snap: FetchedSnapshot,
    reason: string,
    t0: number,
  ): Promise<AckResponse | undefined> {
    const forbidden = findForbiddenObject(snap.objects);
    if (forbidden) {
      // Refused as a whole, like a delta; resync retries with backoff (the controller's next snapshot may be sound).
      this.rejections.add(RejectReason.ForbiddenObject, `snapshot ${snap.generation}: ${forbidden.message}`);
      throw forbidden;
    }
    const state = RuleState.from(snap.objects, snap.generation);
    if (snap.digest && state.digest !== snap.digest) throw new SnapshotDigestError(snap.generation);
    await abortable(fam.backend.restore(state), this.abort.signal, 'restore');
    const before = fam.state;
    fam.state = state;
    fam.programmed = true;
    fam.lastError = '';
    fam.resyncs++;
    const seconds = (performance.now() - t0) / 1000;
    this.observeSync(fam, seconds, true);
    this.opts.logger.info(
      {
        family: fam.family,
        generation: state.generation,
        objects: state.objects.size,
        ms: Math.round(seconds * 1000),
        reason,
      },
      'converged from snapshot',
    );
    await this.opts.conntrack?.afterRestore(fam.family, before, state);
    fam.healthChecks = healthChecksOf(state);
    await this.syncHealthChecks(fam);
    const rb = await this.readBackAndRepair(fam, false);
    const res = await this.sendAck(fam, { applyDurationSeconds: seconds, drift: rb });
    this.changed();
    return res;
  }

  /**
   * The family's newest state: the controller's latest (undefined when it has none for the node); when the
   * controller cannot be reached, the newest state replay builds from JetStream's snapshots and deltas, skipping
   * messages that are not part of the node's chain (undefined when JetStream holds no snapshot of it).
   */
  private async fetchSnapshot(fam: Family): Promise<FetchedSnapshot | undefined> {
    const signal = this.abort.signal;
    try {
      return await this.opts.controller.snapshot(this.opts.node, modeOf(fam.backend), fam.family, { signal });
    } catch (err) {
      if (err instanceof StoppingError || signal.aborted) throw err;
      this.opts.logger.warn({ err, family: fam.family }, 'controller snapshot unavailable; trying JetStream');
    }
    let replayed;
    try {
      replayed = await abortable(
        replayTo(this.opts.js, {
          node: this.opts.node,
          family: fam.family,
          badDigest: 'skip',
          verifier: this.opts.verifier,
        }),
        signal,
        'replay from JetStream',
      );
    } catch (err) {
      if (err instanceof OutsideRetentionError) return undefined;
      throw err;
    }
    if (replayed.skipped > 0)
      this.opts.logger.info(
        { family: fam.family, skipped: replayed.skipped },
        'replay skipped messages that are not part of the node chain',
      );
    return { generation: replayed.generation, digest: replayed.digest, objects: replayed.state.sortedObjects() };
  }

  /** Gives the family's health checks to the servers (never rejects: failed binds are logged and retried there). */
  private async syncHealthChecks(fam: Family): Promise<void> {
    if (!this.opts.healthChecks) return;
    const r = await this.opts.healthChecks.sync(fam.family, [...fam.healthChecks.values()]);
    this.opts.logger.debug(
      { family: fam.family, listening: r.listening, failed: r.failed.length },
      'health check servers synced',
    );
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
      // Also a heartbeat: a restarted controller learns what this node holds without waiting for a change, and
      // its answer may ask for a resync.
      if (report) await this.ackAndObey(fam, { applyDurationSeconds: 0 });
      return [];
    }
    const drift = rb.drift.length > 0 ? [...rb.drift] : [`digest ${rb.digest} instead of ${fam.state.digest}`];
    this.opts.logger.warn(
      { family: fam.family, generation: fam.state.generation, drift: drift.slice(0, 20), differences: drift.length },
      'rules changed behind kpx; repairing',
    );
    const t0 = performance.now();
    await fam.backend.restore(fam.state);
    this.observeSync(fam, (performance.now() - t0) / 1000, true);
    fam.driftRepairs++;
    this.opts.metrics?.driftRepairs.inc();
    const after = await fam.backend.readBack(fam.state);
    fam.actualDigest = after.digest;
    if (after.digest !== fam.state.digest)
      this.opts.logger.error({ family: fam.family, drift: after.drift.slice(0, 20) }, 'drift persists after repair');
    if (report) {
      await this.ackAndObey(fam, { applyDurationSeconds: 0, drift });
      this.changed();
    }
    return drift;
  }

  private observeSync(fam: Family, seconds: number, full: boolean): void {
    const m = this.opts.metrics;
    const labels = { ip_family: fam.family as 'IPv4' };
    m?.syncProxyRulesDuration.observe(labels, seconds);
    (full ? m?.syncFullProxyRulesDuration : m?.syncPartialProxyRulesDuration)?.observe(labels, seconds);
    m?.syncProxyRulesLastTimestamp.set(labels, secondsFromMs(Date.now()));
    m?.appliedGeneration.set(fam.state.generation);
    this.opts.health?.updated(fam.family as 'IPv4');
  }

  /** Acks the family's state and obeys the answer. */
  private async ackAndObey(fam: Family, r: AckFields): Promise<void> {
    await this.obey(fam, await this.sendAck(fam, r));
  }

  /**
   * Acks the family's state to the controller, with at most MaxAckDriftLines of drift (all counted) and the
   * rejected messages not reported yet. Resolves with the answer, undefined when the controller is unreachable.
   */
  private async sendAck(fam: Family, r: AckFields): Promise<AckResponse | undefined> {
    const rejected = this.rejections.pending();
    const req: AckRequest = {
      node: this.opts.node,
      generation: fam.state.generation,
      digest: fam.state.digest,
      applyDurationSeconds: r.applyDurationSeconds,
      error: r.error ?? '',
      mode: modeOf(fam.backend),
      ipFamily: fam.family,
      ...(r.error ? {} : { appliedTime: timestampFromMs(Date.now()) }),
      actualDigest: fam.actualDigest,
      drift: (r.drift ?? []).slice(0, MaxAckDriftLines),
      driftTotal: r.drift?.length ?? 0,
      ...rejected,
    };
    try {
      const res = await this.opts.controller.ack(req, { signal: this.abort.signal });
      fam.reportedActual = fam.actualDigest;
      fam.lastAckAt = performance.now();
      this.rejections.reported(rejected);
      return res;
    } catch (err) {
      // The controller is down or restarting: deltas keep flowing through NATS; the next ack reports the state.
      this.opts.logger.debug({ err }, 'ack failed');
      return undefined;
    }
  }
}

interface AckFields {
  readonly applyDurationSeconds: number;
  readonly error?: string;
  readonly drift?: readonly string[];
}
