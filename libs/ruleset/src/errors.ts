// Errors of @kpx/ruleset.

/** A rule object or delta that cannot be used: bad payload, broken generation chain, digest mismatch. */
export class RuleSetError extends Error {
  override readonly name = 'RuleSetError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A delta that chains but does not reach the digest it announces (the state is left as it was). */
export class DigestMismatchError extends RuleSetError {
  constructor(
    readonly generation: number,
    readonly reached: string,
    readonly announced: string,
    stays: number,
  ) {
    super(
      `delta ${generation} reaches digest ${reached}, not the announced ${announced}; state stays at generation ${stays}`,
    );
  }
}
