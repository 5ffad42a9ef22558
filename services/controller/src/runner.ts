// Runs a function at most once per minimum interval, coalescing requests (kube-proxy's BoundedFrequencyRunner):
// a request arriving while a run is in progress or during the quiet period schedules exactly one more run.

export class CoalescingRunner {
  private timer: NodeJS.Timeout | undefined;
  /** Resolves when the scheduled run has started (or was cancelled). */
  private scheduled: Promise<void> | undefined;
  private cancelScheduled: (() => void) | undefined;
  private running: Promise<void> | undefined;
  private pending = false;
  private lastStart = -Infinity;
  private stopped = false;

  constructor(
    private readonly fn: () => Promise<void>,
    private readonly minIntervalMs: number,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Asks for a run as soon as the minimum interval allows. */
  request(): void {
    if (this.stopped) return;
    this.pending = true;
    if (this.running || this.timer) return;
    const wait = Math.max(0, this.lastStart + this.minIntervalMs - Date.now());
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
      .catch((err: unknown) => this.onError(err))
      .finally(() => {
        this.running = undefined;
        if (this.pending) {
          this.pending = false;
          this.request();
        }
      });
  }

  /** Resolves when no run is in progress or scheduled: every request made before the call has been served. */
  async idle(): Promise<void> {
    while (this.running || this.scheduled) await (this.running ?? this.scheduled);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.scheduled = undefined;
    this.cancelScheduled?.();
    await this.idle();
  }
}
