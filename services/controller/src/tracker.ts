// Which node applied what: desired state per node and family as published, and what each executor acked.
import type { AckRequest, AckResponse, NodeStatus } from '@kpx/proto';

interface Entry {
  node: string;
  family: string;
  mode: string;
  desiredGeneration: number;
  desiredDigest: string;
  /** Trigger time (ms) of the newest desired generation's causes, for change-to-ack latency. */
  triggerTime: number | undefined;
  /** When the oldest unacknowledged delta was published (ms), undefined when in sync. */
  unackedSince: number | undefined;
  ackedGeneration: number;
  ackedDigest: string;
  lastError: string;
  lastAckTime: number | undefined;
  actualDigest: string;
  lastDrift: string[];
  driftRepairs: number;
  lastDriftTime: number | undefined;
}

export interface AckOutcome {
  readonly response: AckResponse;
  /** Seconds from the change's trigger time to this ack, when this ack reached the newest desired state. */
  readonly changeToAckSeconds?: number;
}

const timestamp = (ms: number): { seconds: number; nanos: number } => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 });
const id = (node: string, family: string): string => `${node}/${family}`;

export class ConvergenceTracker {
  private readonly entries = new Map<string, Entry>();

  published(p: { node: string; family: string; mode: string; generation: number; digest: string; triggerTime: number | undefined; at: number }): void {
    let e = this.entries.get(id(p.node, p.family));
    if (!e) {
      e = { node: p.node, family: p.family, mode: p.mode, desiredGeneration: 0, desiredDigest: '', triggerTime: undefined, unackedSince: undefined, ackedGeneration: 0, ackedDigest: '', lastError: '', lastAckTime: undefined, actualDigest: '', lastDrift: [], driftRepairs: 0, lastDriftTime: undefined };
      this.entries.set(id(p.node, p.family), e);
    }
    e.desiredGeneration = p.generation;
    e.desiredDigest = p.digest;
    e.triggerTime = p.triggerTime ?? e.triggerTime;
    e.unackedSince ??= p.at;
    if (e.ackedGeneration === p.generation && e.ackedDigest === p.digest) e.unackedSince = undefined;
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
      e.lastDrift = [...req.drift];
      e.driftRepairs++;
      e.lastDriftTime = now;
    }
    if (req.error) {
      e.lastError = req.error;
      return { response: { resyncRequired: true, latestGeneration: e.desiredGeneration } };
    }
    e.lastError = '';
    e.ackedGeneration = req.generation;
    e.ackedDigest = req.digest;
    const reachedDesired = req.generation === e.desiredGeneration && req.digest === e.desiredDigest;
    // A digest that differs from what we published at that generation means the node holds something else.
    const resyncRequired = req.generation > e.desiredGeneration || (req.generation === e.desiredGeneration && req.digest !== e.desiredDigest);
    let changeToAckSeconds: number | undefined;
    if (reachedDesired) {
      if (e.unackedSince !== undefined && e.triggerTime !== undefined) changeToAckSeconds = Math.max(0, (now - e.triggerTime) / 1000);
      e.unackedSince = undefined;
    }
    return { response: { resyncRequired, latestGeneration: e.desiredGeneration }, ...(changeToAckSeconds !== undefined ? { changeToAckSeconds } : {}) };
  }

  status(node = '', now = Date.now()): NodeStatus[] {
    return [...this.entries.values()]
      .filter((e) => node === '' || e.node === node)
      .sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : a.family < b.family ? -1 : 1))
      .map((e) => {
        const inSync = e.ackedGeneration === e.desiredGeneration && e.ackedDigest === e.desiredDigest;
        return {
          node: e.node,
          mode: e.mode,
          ipFamily: e.family,
          desiredGeneration: e.desiredGeneration,
          desiredDigest: e.desiredDigest,
          ackedGeneration: e.ackedGeneration,
          ackedDigest: e.ackedDigest,
          inSync,
          lagSeconds: inSync || e.unackedSince === undefined ? 0 : Math.max(0, (now - e.unackedSince) / 1000),
          lastError: e.lastError,
          ...(e.lastAckTime !== undefined ? { lastAckTime: timestamp(e.lastAckTime) } : {}),
          actualDigest: e.actualDigest,
          lastDrift: e.lastDrift,
          driftRepairs: e.driftRepairs,
          ...(e.lastDriftTime !== undefined ? { lastDriftTime: timestamp(e.lastDriftTime) } : {}),
          pending: false,
          publishedGeneration: e.desiredGeneration,
          publishedDigest: e.desiredDigest,
          stale: false,
          lastDriftTotal: e.lastDrift.length,
          rejectedMessages: 0,
          lastRejection: '',
        };
      });
  }
}
