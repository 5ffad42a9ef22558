// Retrying with exponential backoff: the first retry waits `initialMs`, each further one twice as long, up to `maxMs`.

export interface BackoffOptions {
  /** The wait before the first retry (ms). */
  readonly initialMs: number;
  /** The longest wait (ms). */
  readonly maxMs: number;
}

/** The wait before retry number `attempt` (1 for the first): `initialMs` doubled `attempt - 1` times, at most `maxMs`. */
export function backoffDelay(attempt: number, options: BackoffOptions): number {
  // The exponent is capped so that a long failure streak cannot overflow to Infinity (2^30 × initialMs is far past
  // any maxMs).
  return Math.min(options.maxMs, options.initialMs * 2 ** Math.min(30, Math.max(0, attempt - 1)));
}

/** The waits of one failure streak: `next()` gives the wait before the next retry; `reset()` after a success. */
export class Backoff {
  private failures = 0;

  constructor(private readonly options: BackoffOptions) {}

  /** Counts one more failure and returns the wait before retrying it. */
  next(): number {
    return backoffDelay(++this.failures, this.options);
  }

  /** Failures since the last reset. */
  get attempts(): number {
    return this.failures;
  }

  /** A success: the next failure waits `initialMs` again. */
  reset(): void {
    this.failures = 0;
  }
}

/** Resolves after `ms`, or at once when `signal` is (or gets) aborted; never rejects. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      resolve();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
