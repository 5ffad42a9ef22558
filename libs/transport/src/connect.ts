// Connecting to NATS when it may not be up yet (a node booting before the NATS pods, a restart during an outage):
// keep trying with backoff until connected or told to stop. nats.js's own waitOnFirstConnect cannot be cancelled
// (its reconnect loop keeps a stopping process alive), so each attempt here is a plain connect that fails fast.
import { connect, type NodeConnectionOptions } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { Backoff, sleep } from '@kpx/common';

export interface ConnectRetryOptions {
  /** Gives up (rejects with an AbortError) once aborted. */
  readonly signal?: AbortSignal | undefined;
  /** First wait between attempts (default 250 ms), doubled up to `maxMs` (default 5 s). */
  readonly initialMs?: number;
  readonly maxMs?: number;
  /** Told once per failed attempt that will be retried, with the wait before the next one. */
  readonly onRetry?: (err: unknown, attempt: number, waitMs: number) => void;
}

/** Connects, retrying failed first connections until one succeeds or `signal` aborts. */
export async function connectWithRetry(
  options: NodeConnectionOptions,
  retry: ConnectRetryOptions = {},
): Promise<NatsConnection> {
  const backoff = new Backoff({ initialMs: retry.initialMs ?? 250, maxMs: retry.maxMs ?? 5000 });
  for (;;) {
    retry.signal?.throwIfAborted();
    try {
      return await connect({ timeout: 2000, ...options });
    } catch (err) {
      retry.signal?.throwIfAborted();
      const wait = backoff.next();
      retry.onRetry?.(err, backoff.attempts, wait);
      await sleep(wait, retry.signal);
    }
  }
}

/**
 * Calls `changed(false, server)` when the connection drops and `changed(true, server)` when it is back, until the
 * connection closes (it reconnects by itself: this only reports).
 */
export async function followConnection(
  nc: NatsConnection,
  changed: (up: boolean, server: string) => void,
): Promise<void> {
  for await (const s of nc.status()) {
    if (s.type === 'disconnect') changed(false, s.server);
    else if (s.type === 'reconnect') changed(true, s.server);
  }
}
