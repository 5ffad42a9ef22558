// Which node applied what: per node and family, the desired state the controller compiled, the newest delta it
// built, what JetStream acknowledged (what the node could have received), and what the executor acked.
//
// A node is in sync only when its executor acked the desired state, nothing compiled for it waits to be published
// (`pending`), and its last ack is recent (`stale` after `staleAfterMs`: an executor heartbeats at least every
// drift check).
import { timestampFromMs } from '@kpx/common';
import type { AckRequest, AckResponse, NodeStatus } from '@kpx/proto';

interface Entry {
  node: string;
  family: string;
  mode: string;
  /** Digest of the newest compiled state. */
  desiredDigest: string;
  /** The newest generation built for the node (published or still being retried) and its digest. */
  builtGeneration: number;
  builtDigest: string;
  /** The newest generation JetStream acknowledged and its digest. */
  publishedGeneration: number;
  publishedDigest: string;
  /** When changes not yet acknowledged by JetStream were first compiled (ms); undefined when none are. */
  pendingSince: number | undefined;
  /** Trigger time (ms) of the newest built generation's causes, for change-to-ack latency. */
  triggerTime: number | undefined;
  /** When the oldest delta not acked by the executor was published (ms), undefined when acked. */
  unackedSince: number | undefined;
  /** When this entry appeared (ms): a node never acked is stale this long after. */
  createdAt: number;
  ackedGeneration: number;
  ackedDigest: string;
  lastError: string;
  lastAckTime: number | undefined;
  actualDigest: string;
  lastDrift: string[];
  lastDriftTotal: number;
  driftRepairs: number;
  lastDriftTime: number | undefined;
  rejectedMessages: number;
  lastRejection: string;
}

export interface AckOutcome {
  readonly response: AckResponse;
  /** Seconds from the change's trigger time to this ack, when this ack reached the newest desired state. */
  readonly changeToAckSeconds?: number;
}

export interface TrackerOptions {
  /** An executor silent for longer than this is stale (ms, default 60 s). */
  readonly staleAfterMs?: number;
}

/** Summary counts over every node and family (metrics). */
export interface TrackerCounts {
  readonly entries: number;
  readonly inSync: number;
  readonly pending: number;
  readonly stale: number;
}

/** Drift lines kept per node (the rest counted), and characters kept of each line and of an error. */
export const MaxDriftLines = 100;
const MaxLineChars = 1000;
const clip = (s: string): string => (s.length > MaxLineChars ? `${s.slice(0, MaxLineChars)}…` : s);

const id = (node: string, family: string): string => `${node}/${family}`;

export class ConvergenceTracker {
  private readonly entries = new Map<string, Entry>();
  private readonly staleAfterMs: number;

  constructor(opts: TrackerOptions = {}) {
    this.staleAfterMs = opts.staleAfterMs ?? 60_000;
  }

  private entry(node: string, family: string, mode: string, now: number): Entry {
    let e = this.entries.get(id(node, family));
    if (!e) {
      e = {
        node,
        family,
        mode,
        desiredDigest: '',
        builtGeneration: 0,
        builtDigest: '',
        publishedGeneration: 0,
        publishedDigest: '',
        pendingSince: undefined,
        triggerTime: undefined,
        unackedSince: undefined,
        createdAt: now,
        ackedGeneration: 0,
        ackedDigest: '',
        lastError: '',
        lastAckTime: undefined,
        actualDigest: '',
        lastDrift: [],
        lastDriftTotal: 0,
        driftRepairs: 0,
        lastDriftTime: undefined,
        rejectedMessages: 0,
        lastRejection: '',
      };
      this.entries.set(id(node, family), e);
    }
    return e;
  }

  /** The controller compiled a new desired state for a node: pending until JetStream has it. */
  compiled(p: { node: string; family: string; mode: string; digest: string; at: number }): void {
    const e = this.entry(p.node, p.family, p.mode, p.at);
    e.desiredDigest = p.digest;
    if (e.publishedDigest === p.digest && e.builtGeneration === e.publishedGeneration) e.pendingSince = undefined;
    else e.pendingSince ??= p.at;
  }

  /** A delta (or an adopted head) was built for a node at a generation. */
  built(p: {
    node: string;
    family: string;
    mode: string;
    generation: number;
    digest: string;
    triggerTime: number | undefined;
  }): void {
    const e = this.entry(p.node, p.family, p.mode, Date.now());
    e.builtGeneration = p.generation;
    e.builtDigest = p.digest;
    if (!e.desiredDigest) e.desiredDigest = p.digest;
    e.triggerTime = p.triggerTime ?? e.triggerTime;
  }

  /** JetStream acknowledged a node's delta. */
  published(p: {
    node: string;
    family: string;
    mode: string;
    generation: number;
    digest: string;
    triggerTime: number | undefined;
    at: number;
  }): void {
    const e = this.entry(p.node, p.family, p.mode, p.at);
    e.publishedGeneration = p.generation;
    e.publishedDigest = p.digest;
    if (e.builtGeneration < p.generation) {
      e.builtGeneration = p.generation;
      e.builtDigest = p.digest;
    }
    if (!e.desiredDigest) e.desiredDigest = p.digest;
    e.triggerTime = p.triggerTime ?? e.triggerTime;
    if (e.builtGeneration === p.generation && e.desiredDigest === p.digest) e.pendingSince = undefined;
    if (e.ackedGeneration === p.generation && e.ackedDigest === p.digest) e.unackedSince = undefined;
    else e.unackedSince ??= p.at;
  }

  forget(node: string, family: string): void {
    this.entries.delete(id(node, family));
  }

  ack(req: AckRequest, now = Date.now()): AckOutcome {
    const e = this.entries.get(id(req.node, req.ipFamily));
    if (!e) return { response: { resyncRequired: true, latestGeneration: 0 } };
    e.lastAckTime = now;
    if (req.actualDigest) e.actualDigest = req.actualDigest;
    if (req.drift.length > 0) {
      e.lastDrift = req.drift.slice(0, MaxDriftLines).map(clip);
      e.lastDriftTotal = Math.max(req.driftTotal, req.drift.length);
      e.driftRepairs++;
      e.lastDriftTime = now;
    }
    if (req.rejectedMessages > 0) {
      e.rejectedMessages += req.rejectedMessages;
      e.lastRejection = clip(req.lastRejection);
    }
    if (req.error) {
      e.lastError = clip(req.error);
      return { response: { resyncRequired: true, latestGeneration: e.builtGeneration } };
    }
    e.lastError = '';
    e.ackedGeneration = req.generation;
    e.ackedDigest = req.digest;
    const reachedDesired = req.generation === e.builtGeneration && req.digest === e.desiredDigest;
    // The node holds something the controller never built: a generation from the future, or another digest at the
    // newest one (neither the delta's nor, for a node served a snapshot while changes waited, the desired one).
    const knownDigest = req.digest === e.builtDigest || req.digest === e.desiredDigest;
    const resyncRequired = req.generation > e.builtGeneration || (req.generation === e.builtGeneration && !knownDigest);
    let changeToAckSeconds: number | undefined;
    if (reachedDesired) {
      if (e.unackedSince !== undefined && e.triggerTime !== undefined)
        changeToAckSeconds = Math.max(0, (now - e.triggerTime) / 1000);
      e.unackedSince = undefined;
    }
    return {
      response: { resyncRequired, latestGeneration: e.builtGeneration },
      ...(changeToAckSeconds !== undefined ? { changeToAckSeconds } : {}),
    };
  }

  private isStale(e: Entry, now: number): boolean {
    return now - (e.lastAckTime ?? e.createdAt) > this.staleAfterMs;
  }

  private isInSync(e: Entry, now: number): boolean {
    return (
      e.ackedGeneration === e.builtGeneration &&
      e.ackedDigest === e.desiredDigest &&
      e.pendingSince === undefined &&
      !this.isStale(e, now)
    );
  }

  /** How many node and family entries are in sync, pending and stale now. */
  counts(now = Date.now()): TrackerCounts {
    let inSync = 0;
    let pending = 0;
    let stale = 0;
    for (const e of this.entries.values()) {
      if (this.isInSync(e, now)) inSync++;
      if (e.pendingSince !== undefined) pending++;
      if (this.isStale(e, now)) stale++;
    }
    return { entries: this.entries.size, inSync, pending, stale };
  }

  status(node = '', now = Date.now()): NodeStatus[] {
    return [...this.entries.values()]
      .filter((e) => node === '' || e.node === node)
      .sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : a.family < b.family ? -1 : 1))
      .map((e) => {
        const inSync = this.isInSync(e, now);
        const behindSince = e.pendingSince ?? e.unackedSince;
        return {
          node: e.node,
          mode: e.mode,
          ipFamily: e.family,
          desiredGeneration: e.builtGeneration,
          desiredDigest: e.desiredDigest,
          ackedGeneration: e.ackedGeneration,
          ackedDigest: e.ackedDigest,
          inSync,
          lagSeconds: inSync || behindSince === undefined ? 0 : Math.max(0, (now - behindSince) / 1000),
          lastError: e.lastError,
          ...(e.lastAckTime !== undefined ? { lastAckTime: timestampFromMs(e.lastAckTime) } : {}),
          actualDigest: e.actualDigest,
          lastDrift: e.lastDrift,
          driftRepairs: e.driftRepairs,
          ...(e.lastDriftTime !== undefined ? { lastDriftTime: timestampFromMs(e.lastDriftTime) } : {}),
          pending: e.pendingSince !== undefined,
          publishedGeneration: e.publishedGeneration,
          publishedDigest: e.publishedDigest,
          stale: this.isStale(e, now),
          lastDriftTotal: e.lastDriftTotal,
          rejectedMessages: e.rejectedMessages,
          lastRejection: e.lastRejection,
        };
      });
  }
}
