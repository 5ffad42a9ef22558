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
