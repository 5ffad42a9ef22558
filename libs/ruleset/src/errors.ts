// Errors of @kpx/ruleset.

/** A rule object or delta that cannot be used: bad payload, broken generation chain, digest mismatch. */
export class RuleSetError extends Error {
  override readonly name = 'RuleSetError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
