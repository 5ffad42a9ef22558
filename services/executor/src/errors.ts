// Typed errors of @kpx/executor.

/** A snapshot (from the controller or rebuilt from JetStream) whose objects do not reach the digest it names. */
export class SnapshotDigestError extends Error {
  override readonly name = 'SnapshotDigestError';
  readonly generation: number;

  constructor(generation: number, options?: { cause?: unknown }) {
    super(`snapshot ${generation} does not reach its digest`, options);
    this.generation = generation;
  }
}

/** An operation given up because the executor is stopping. */
export class StoppingError extends Error {
  override readonly name = 'StoppingError';

  constructor(what: string) {
    super(`${what}: the executor is stopping`);
  }
}

/**
 * A NodeSync call to the controller failed: what was asked of which controller, and why, in words (the gRPC
 * status code is kept in `code`; the underlying ServiceError is the cause).
 */
export class ControllerCallError extends Error {
  override readonly name = 'ControllerCallError';
  readonly code: number;

  constructor(address: string, method: string, err: { code?: number; details?: string; message: string }) {
    super(describeCallFailure(address, method, err), { cause: err });
    this.code = err.code ?? 2;
  }
}

// grpc-js status codes (@grpc/grpc-js `status`), named here to keep this file free of the library.
const PermissionDenied = 7;
const Unavailable = 14;
const Unauthenticated = 16;

function describeCallFailure(address: string, method: string, err: { code?: number; details?: string; message: string }): string {
  // grpc-js wraps connection failures as "No connection established. Last error: Error: <why> (<time>)".
  const details = (err.details || err.message).replace(/^No connection established\. Last error: (?:Error: )?/, '').replace(/ \([^()]*\d{4}-\d{2}-\d{2}T[^()]*\)$/, '');
  if (err.code === PermissionDenied) return `controller ${address} refused ${method}: ${details}`;
  if (err.code === Unauthenticated) return `controller ${address} did not accept our credentials for ${method}: ${details}`;
  if (err.code === Unavailable) return `cannot reach controller ${address} (${method}): ${details}`;
  return `controller ${address}, ${method}: ${details}`;
}
