// Leader election for an HA controller, client-go's algorithm (tools/leaderelection) over a narrow lease store: a
// NATS KV key (lease-nats.ts) or a coordination.k8s.io/v1 Lease (lease-kubernetes.ts).
//
// - Every retry period each candidate reads the lease. The holder renews it with a compare-and-set on the version it
//   read. A standby remembers when it last saw the lease's version change, on its own monotonic clock (no clocks
//   compared across machines), and takes the lease over with a compare-and-set once it has seen no change for the
//   lease duration. Every takeover increments the lease's epoch (a Lease's leaseTransitions).
// - A leader is a leader only while its last successful renewal is younger than the renew deadline (shorter than
//   the lease duration): a process paused or cut off longer stops at once, before any standby may take over.
// - The epoch fences what a leader publishes: run.ts claims the generation counter with it, and the counter refuses
//   a deposed leader (FencedError), whatever its clock says.
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';

/** What a lease holds, whatever stores it. */
export interface LeaseRecord {
  readonly holder: string;
  /** Incremented by every takeover: the leader's term. */
  readonly epoch: number;
  readonly leaseDurationMs: number;
  readonly acquireTime: string;
  readonly renewTime: string;
}

/** A stored lease and its version (KV revision, resourceVersion) for compare-and-set. */
export interface VersionedLease {
  readonly record: LeaseRecord;
  readonly version: string;
}

/** Where the lease lives. `create` and `update` reject with LeaseConflictError when someone else wrote first. */
export interface LeaseStore {
  /** For logs: `nats KV KPX_LEADER/controller`, `lease kpx-system/kpx-controller`. */
  readonly description: string;
  get(): Promise<VersionedLease | undefined>;
  create(record: LeaseRecord): Promise<string>;
  update(record: LeaseRecord, version: string): Promise<string>;
}

/** A compare-and-set on the lease lost: another candidate wrote it since it was read. */
export class LeaseConflictError extends Error {
  override readonly name = 'LeaseConflictError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** kube-controller-manager's flags and defaults. */
export interface LeaderElectionTiming {
  readonly leaseDurationMs: number;
  readonly renewDeadlineMs: number;
  readonly retryPeriodMs: number;
}

export const DefaultLeaderElectionTiming: LeaderElectionTiming = {
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
};

export interface LeaderElectionLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface LeaderElectorOptions extends Partial<LeaderElectionTiming> {
  readonly store: LeaseStore;
  /** This candidate's identity (default: hostname_uuid, unique per process). */
  readonly identity?: string;
  readonly logger: LeaderElectionLogger;
  /** Became the leader at `epoch`. */
  readonly onStartedLeading: (epoch: number) => void;
  /** Lost the lease (another holder, or no renewal within the renew deadline); called once. */
  readonly onStoppedLeading: (reason: string) => void;
  /** Monotonic milliseconds (tests). */
  readonly now?: () => number;
}

/** Checks the timing as client-go does: lease duration > renew deadline > retry period × 1.2. */
export function validateTiming(t: LeaderElectionTiming): string | undefined {
  if (t.leaseDurationMs <= t.renewDeadlineMs) return 'the lease duration must be longer than the renew deadline';
  if (t.renewDeadlineMs <= t.retryPeriodMs * 1.2)
    return 'the renew deadline must be longer than 1.2 × the retry period';
  if (t.retryPeriodMs <= 0) return 'the retry period must be positive';
  return undefined;
}

export class LeaderElector {
  readonly identity: string;
  readonly timing: LeaderElectionTiming;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private leading = false;
  private lost = false;
  private lastRenew = -Infinity;
  private epochValue = 0;
  /** The version last seen and when it was first seen (own clock). */
  private observed: { version: string; at: number } | undefined;
  private current: VersionedLease | undefined;
  private round: Promise<void> = Promise.resolve();

  constructor(private readonly opts: LeaderElectorOptions) {
    this.identity = opts.identity ?? `${hostname()}_${randomUUID()}`;
    this.timing = {
      leaseDurationMs: opts.leaseDurationMs ?? DefaultLeaderElectionTiming.leaseDurationMs,
      renewDeadlineMs: opts.renewDeadlineMs ?? DefaultLeaderElectionTiming.renewDeadlineMs,
      retryPeriodMs: opts.retryPeriodMs ?? DefaultLeaderElectionTiming.retryPeriodMs,
    };
    const invalid = validateTiming(this.timing);
    if (invalid) throw new RangeError(`leader election: ${invalid}`);
    this.now = opts.now ?? (() => performance.now());
  }

  /** True while this process holds the lease and renewed it within the renew deadline (checked on every call). */
  isLeader(): boolean {
    if (!this.leading) return false;
    if (this.now() - this.lastRenew < this.timing.renewDeadlineMs) return true;
    this.stepDown(
      `no renewal for ${Math.round(this.now() - this.lastRenew)}ms (renew deadline ${this.timing.renewDeadlineMs}ms)`,
    );
    return false;
  }

  /** The epoch of the lease this process holds (0 before it led). */
  get epoch(): number {
    return this.epochValue;
  }

  /** The lease's holder as last read (standbys: who leads). */
  get holder(): string | undefined {
    return this.current?.record.holder;
  }

  start(): void {
    this.tick();
  }

  /** Stops campaigning and renewing (the lease is left to expire: a successor waits at most the lease duration). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.round;
  }

  /** Gives up leadership now (the generation counter refused this leader's epoch: someone newer claimed it). */
  depose(reason: string): void {
    this.stepDown(reason);
  }

  /** Moves the held lease's epoch up to `epoch` (the counter holds a newer one: the lease store was lost). */
  async raiseEpoch(epoch: number): Promise<void> {
    const held = this.current;
    if (!this.isLeader() || !held || held.record.holder !== this.identity)
      throw new LeaseConflictError('not the leader');
    if (epoch <= held.record.epoch) return;
    const record = { ...held.record, epoch, renewTime: new Date().toISOString() };
    const version = await this.opts.store.update(record, held.version);
    this.current = { record, version };
    this.epochValue = epoch;
    this.opts.logger.info(
      { epoch, lease: this.opts.store.description },
      'leader epoch raised above the generation counter',
    );
  }

  private tick(): void {
    if (this.stopped || this.lost) return;
    this.round = this.tryAcquireOrRenew().catch((err: unknown) => {
      this.opts.logger.warn({ err, lease: this.opts.store.description }, 'leader election: lease read or write failed');
    });
    void this.round.then(() => {
      // A renewal that kept failing past the deadline deposes here; every publish also asks isLeader() first.
      this.isLeader();
      if (this.stopped || this.lost) return;
      this.timer = setTimeout(() => this.tick(), this.timing.retryPeriodMs);
    });
  }

  private async tryAcquireOrRenew(): Promise<void> {
    const { store } = this.opts;
    const got = await store.get();
    const at = this.now();
    const nowIso = new Date().toISOString();
    if (got?.version !== this.observed?.version) this.observed = got ? { version: got.version, at } : undefined;
    this.current = got;
    if (!got) {
      const record: LeaseRecord = {
        holder: this.identity,
        epoch: 1,
        leaseDurationMs: this.timing.leaseDurationMs,
        acquireTime: nowIso,
        renewTime: nowIso,
      };
      await this.write(() => store.create(record), record, at);
      return;
    }
    const mine = got.record.holder === this.identity;
    if (mine && !this.leading) {
      this.stepDown('the lease names this process but it was not leading');
      return;
    }
    if (!mine) {
      if (this.leading) {
        this.stepDown(`the lease is held by ${got.record.holder} (epoch ${got.record.epoch})`);
        return;
      }
      if (got.record.holder !== '' && at - (this.observed?.at ?? at) < this.timing.leaseDurationMs) return;
      const record: LeaseRecord = {
        holder: this.identity,
        epoch: got.record.epoch + 1,
        leaseDurationMs: this.timing.leaseDurationMs,
        acquireTime: nowIso,
        renewTime: nowIso,
      };
      await this.write(() => store.update(record, got.version), record, at);
      return;
    }
    const record: LeaseRecord = { ...got.record, renewTime: nowIso };
    await this.write(() => store.update(record, got.version), record, at);
  }

  /** Writes the lease; a lost compare-and-set deposes a leader, a standby just tries again next round. */
  private async write(op: () => Promise<string>, record: LeaseRecord, at: number): Promise<void> {
    let version: string;
    try {
      version = await op();
    } catch (err) {
      if (!(err instanceof LeaseConflictError)) throw err;
      if (this.leading) this.stepDown('another candidate wrote the lease');
      return;
    }
    if (this.stopped || this.lost) return;
    this.current = { record, version };
    this.observed = { version, at };
    if (this.leading) {
      this.lastRenew = at;
      return;
    }
    if (at - this.now() <= -this.timing.renewDeadlineMs) return; // the write took longer than the deadline: wait for the next round
    this.leading = true;
    this.lastRenew = at;
    this.epochValue = record.epoch;
    this.opts.logger.info(
      { identity: this.identity, epoch: record.epoch, lease: this.opts.store.description },
      'became the leader',
    );
    this.opts.onStartedLeading(record.epoch);
  }

  private stepDown(reason: string): void {
    if (this.lost) return;
    this.lost = true;
    this.leading = false;
    clearTimeout(this.timer);
    this.opts.logger.warn(
      { identity: this.identity, epoch: this.epochValue, reason, lease: this.opts.store.description },
      'leader election lost; not publishing anything more',
    );
    this.opts.onStoppedLeading(reason);
  }
}
