// The controller under leader election: only the leader publishes. A standby watches its source, keeps the newest
// version of each object (standby-buffer.ts) and compiles nothing; run.ts hands them to the pipeline and lets its
// first sync run once this process leads. The leader claims the generation counter with
// its epoch before anything else, and every port that writes to JetStream asks first whether this process still
// leads. Losing the lease (or the counter refusing the epoch) stops publishing at once and is reported to the
// caller, which exits: a supervisor restarts it as a standby, as kube-controller-manager does.
import { sleep } from '@kpx/common';
import type { JetStreamClient } from '@nats-io/jetstream';
import { FencedError } from '@kpx/transport';
import { LeaderElector, type LeaderElectionTiming, type LeaseStore } from './leader-election.js';
import type { PipelineLogger } from './pipeline.js';
import type { DeltaSink, GenerationAudit, GenerationStore, SnapshotSink } from './ports.js';

/** runController's option: where the lease is, the timing, and what to do once the lease is lost. */
export interface ControllerLeaderElection extends Partial<LeaderElectionTiming> {
  /** Opens the lease store (a NATS KV key needs the controller's JetStream client; a Kubernetes Lease does not). */
  readonly store: (js: JetStreamClient) => Promise<LeaseStore>;
  readonly identity?: string;
  /** The lease was lost and this controller stopped publishing; the caller should exit. */
  readonly onLost?: (reason: string) => void;
}

/** A write to JetStream was refused because this controller is not (or no longer) the leader. */
export class NotLeaderError extends Error {
  override readonly name = 'NotLeaderError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export interface LeaderStatus {
  readonly leader: boolean;
  readonly identity: string;
  readonly epoch: number;
}

/** The ports that write, gated on leadership. */
export interface WritingPorts {
  readonly sink: DeltaSink;
  readonly snapshots: SnapshotSink;
  readonly generations: GenerationStore;
  readonly audit: GenerationAudit;
}

export interface LeadershipOptions {
  readonly election: ControllerLeaderElection;
  readonly store: LeaseStore;
  readonly logger: PipelineLogger;
  /** Claims the generation counter for the epoch (rejects with FencedError when a newer epoch holds it). */
  readonly claim: (epoch: number) => Promise<void>;
  /** Became the leader and claimed the counter: start publishing. */
  readonly onLeading: () => void;
  /** Lost the lease: publishing has already stopped. */
  readonly onLost: (reason: string) => void;
}

export class Leadership {
  private readonly elector: LeaderElector;
  private claimed = false;

  constructor(private readonly opts: LeadershipOptions) {
    const { election, store, logger } = opts;
    this.elector = new LeaderElector({
      store,
      logger,
      ...(election.identity !== undefined ? { identity: election.identity } : {}),
      ...(election.leaseDurationMs !== undefined ? { leaseDurationMs: election.leaseDurationMs } : {}),
      ...(election.renewDeadlineMs !== undefined ? { renewDeadlineMs: election.renewDeadlineMs } : {}),
      ...(election.retryPeriodMs !== undefined ? { retryPeriodMs: election.retryPeriodMs } : {}),
      onStartedLeading: (epoch) => void this.claimThenLead(epoch),
      onStoppedLeading: (reason) => {
        this.claimed = false;
        opts.onLost(reason);
      },
    });
  }

  start(): void {
    this.opts.logger.info(
      { identity: this.elector.identity, lease: this.opts.store.description, ...this.elector.timing },
      'leader election: waiting to lead; a standby compiles and publishes nothing',
    );
    this.elector.start();
  }

  stop(): Promise<void> {
    return this.elector.stop();
  }

  /** Leads: holds the lease, renewed within the deadline, and has claimed the counter. */
  isLeader(): boolean {
    return this.claimed && this.elector.isLeader();
  }

  status(): LeaderStatus {
    const leader = this.isLeader();
    return {
      leader,
      identity: (leader ? this.elector.identity : this.elector.holder) ?? '',
      epoch: leader ? this.elector.epoch : 0,
    };
  }

  /** Wraps every port that writes to JetStream: each write first checks leadership; a fenced counter deposes. */
  gate(p: WritingPorts): WritingPorts {
    const check = (what: string): void => {
      if (!this.isLeader()) throw new NotLeaderError(`not the leader: refusing to ${what}`);
    };
    const fenced = async <T>(what: string, op: () => Promise<T>): Promise<T> => {
      check(what);
      try {
        return await op();
      } catch (err) {
        if (err instanceof FencedError) this.deposed(err);
        throw err;
      }
    };
    return {
      sink: { publish: (d, h) => fenced('publish a delta', () => p.sink.publish(d, h)) },
      snapshots: { put: (s) => fenced('store a snapshot', () => p.snapshots.put(s)) },
      generations: {
        next: () => fenced('reserve a generation', () => p.generations.next()),
        fence: (f) => fenced('fence the counter', () => p.generations.fence(f)),
      },
      audit: { append: (r) => fenced('append to the audit log', () => p.audit.append(r)) },
    };
  }

  private deposed(err: FencedError): void {
    this.opts.logger.error(
      { err, epoch: err.epoch, storedEpoch: err.storedEpoch },
      'generation refused by the counter: a newer leader claimed it; this controller was deposed and publishes nothing',
    );
    this.elector.depose(`the generation counter holds epoch ${err.storedEpoch}, above this leader's ${err.epoch}`);
  }

  /** Claims the counter with the lease's epoch, raising the epoch when the counter holds a newer one (a lost lease store). */
  private async claimThenLead(epoch: number): Promise<void> {
    let e = epoch;
    while (this.elector.isLeader()) {
      try {
        await this.opts.claim(e);
        this.claimed = true;
        this.opts.logger.info({ epoch: e }, 'generation counter claimed; publishing as the leader');
        this.opts.onLeading();
        return;
      } catch (err) {
        if (err instanceof FencedError) {
          // Only the lease holder can raise the lease's epoch (compare-and-set), so no two leaders share one.
          try {
            await this.elector.raiseEpoch(err.storedEpoch + 1);
            e = this.elector.epoch;
            continue;
          } catch (raiseErr) {
            err = raiseErr;
          }
        }
        this.opts.logger.warn({ err }, 'claiming the generation counter failed; retrying');
        await sleep(this.elector.timing.retryPeriodMs);
      }
    }
  }
}
