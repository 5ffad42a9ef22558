// Runs a function at most once per minimum interval, coalescing requests (kube-proxy's BoundedFrequencyRunner):
// a request arriving while a run is in progress or during the quiet period schedules exactly one more run.
// A run that fails is run again with exponential backoff, without waiting for another request: a failed sync
// (NATS down, a publish timing out) is never left for some unrelated event to retry.
import { backoffDelay } from '@kpx/common';

export interface RetryOptions {
  /** First wait after a failure (default 500 ms), doubled per consecutive failure up to `maxMs` (default 30 s). */
  readonly initialMs?: number;
  readonly maxMs?: number;
}

export class CoalescingRunner {
  private timer: NodeJS.Timeout | undefined;
  /** Resolves when the scheduled run has started (or was cancelled). */
  private scheduled: Promise<void> | undefined;
  private cancelScheduled: (() => void) | undefined;
  private running: Promise<void> | undefined;
  private pending = false;
  private lastStart = -Infinity;
  private stopped = false;
  /** Consecutive failed runs, and the earliest time the next run may start after the last one. */
  private failures = 0;
  private retryAt = -Infinity;

  constructor(
    private readonly fn: () => Promise<void>,
    private readonly minIntervalMs: number,
    private readonly onError: (err: unknown, retryInMs: number) => void,
    private readonly retry: RetryOptions = {},
  ) {}

  /** Consecutive failed runs (0 after a success). */
  get consecutiveFailures(): number {
    return this.failures;
  }

  /** Asks for a run as soon as the minimum interval (and any backoff after a failure) allows. */
  request(): void {
    if (this.stopped) return;
    this.pending = true;
    if (this.running || this.timer) return;
    const wait = Math.max(0, this.lastStart + this.minIntervalMs - Date.now(), this.retryAt - Date.now());
    this.scheduled = new Promise<void>((resolve) => {
      this.cancelScheduled = resolve;
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.scheduled = undefined;
        this.start();
        resolve();
      }, wait);
    });
  }

  private start(): void {
    if (this.stopped || !this.pending) return;
    this.pending = false;
    this.lastStart = Date.now();
    this.running = this.fn()
      .then(
        () => {
          this.failures = 0;
          this.retryAt = -Infinity;
        },
        (err: unknown) => {
          this.failures++;
          const backoff = backoffDelay(this.failures, {
            initialMs: this.retry.initialMs ?? 500,
            maxMs: this.retry.maxMs ?? 30_000,
          });
          this.retryAt = Date.now() + backoff;
          this.pending = true;
          this.onError(err, backoff);
        },
      )
      .finally(() => {
        this.running = undefined;
        if (this.pending) {
          this.pending = false;
          this.request();
        }
      });
  }

  /** After failures: drops the backoff and runs as soon as the minimum interval allows (the cause went away). */
  retryNow(): void {
    if (this.failures === 0 || this.stopped) return;
    this.retryAt = -Infinity;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.cancelScheduled?.();
      this.scheduled = undefined;
    }
    this.request();
  }

  /** Resolves when no run is in progress or scheduled: every request made before the call has been served. */
  async idle(): Promise<void> {
    while (this.running || this.scheduled) await (this.running ?? this.scheduled);
  }

  /** No more runs; resolves when the one in progress (if any) has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.scheduled = undefined;
    this.cancelScheduled?.();
    await this.idle();
  }
}
