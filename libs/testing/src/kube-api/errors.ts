// Errors of the test API server. (They live next to it rather than in ../errors.ts so the server stays one
// self-contained folder.)

/** A test asked the store for something the API would reject: an unknown kind, an object without a name. */
export class KubeApiStoreError extends Error {
  override readonly name = 'KubeApiStoreError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The test API server could not start (listen, write its kubeconfig). */
export class KubeApiServerError extends Error {
  override readonly name = 'KubeApiServerError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
