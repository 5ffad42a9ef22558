// Waiting on something that may hang (a gRPC call to a vanished controller, a JetStream request while NATS is
// down) without holding up a stop.
import { StoppingError } from '@kpx/transport';

/** `p`, or a StoppingError as soon as `signal` aborts (`p` is left to settle on its own). */
export function abortable<T>(p: Promise<T>, signal: AbortSignal, what: string): Promise<T> {
  if (signal.aborted) {
    p.catch(() => undefined);
    return Promise.reject(new StoppingError(what));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new StoppingError(what));
    signal.addEventListener('abort', onAbort, { once: true });
    p.finally(() => signal.removeEventListener('abort', onAbort)).then(resolve, reject);
  });
}
