// Errors of @kpx/model.

/** A manifest file or directory could not be read or parsed. */
export class ManifestError extends Error {
  override readonly name = 'ManifestError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
