// Typed errors of @kpx/transport.

/** A string is not a valid Kubernetes node name (DNS-1123 subdomain), or not the subject token of one. */
export class InvalidNodeNameError extends Error {
  override readonly name = 'InvalidNodeNameError';
  readonly value: string;

  constructor(value: string, why = 'not a DNS-1123 subdomain', options?: { cause?: unknown }) {
    super(`invalid node name ${JSON.stringify(value)}: ${why}`, options);
    this.value = value;
  }
}

/**
 * A delta does not fit in one NATS message (payload plus headers above the server's max_payload). The caller
 * must publish a snapshot (putSnapshot) and a Delta with `snapshot: true` instead.
 */
export class PayloadTooLargeError extends Error {
  override readonly name = 'PayloadTooLargeError';
  readonly node: string;
  readonly generation: number;
  /** Bytes the message would need (payload + encoded headers). */
  readonly size: number;
  /** The server's max_payload. */
  readonly maxPayload: number;

  constructor(options: { node: string; generation: number; size: number; maxPayload: number }) {
    super(
      `delta for node ${options.node} generation ${options.generation} needs ${options.size} bytes, ` +
        `above the server's max_payload of ${options.maxPayload}: publish a snapshot instead`,
    );
    this.node = options.node;
    this.generation = options.generation;
    this.size = options.size;
    this.maxPayload = options.maxPayload;
  }
}

/** A stream or bucket exists with a configuration kpx cannot use (e.g. other subjects or storage). */
export class StreamConfigError extends Error {
  override readonly name = 'StreamConfigError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A message or stored object could not be decoded, or its headers disagree with its content. */
export class DecodeError extends Error {
  override readonly name = 'DecodeError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A snapshot could not be written or read (object store failure, concurrent writers that kept conflicting). */
export class SnapshotError extends Error {
  override readonly name = 'SnapshotError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * The generation counter refused a reservation: a leader with a newer epoch (lease term) has claimed it. The
 * caller was deposed and must not publish anything.
 */
export class FencedError extends Error {
  override readonly name = 'FencedError';
  /** This process's epoch, and the newer one stored with the counter. */
  readonly epoch: number;
  readonly storedEpoch: number;

  constructor(options: { epoch: number; storedEpoch: number }) {
    super(
      `deposed: the generation counter belongs to leader epoch ${options.storedEpoch}, this controller's epoch is ${options.epoch}`,
    );
    this.epoch = options.epoch;
    this.storedEpoch = options.storedEpoch;
  }
}

/** A certificate, key or CA file given on the command line cannot be read (the flag and path are named, never the contents). */
export class CredentialFileError extends Error {
  override readonly name = 'CredentialFileError';
  readonly flag: string;
  readonly path: string;

  constructor(flag: string, path: string, why: string, options?: { cause?: unknown }) {
    super(`${flag} ${path}: ${why}`, options);
    this.flag = flag;
    this.path = path;
  }
}

/** A signing or verify key cannot be used, or a stored object's signature does not verify. */
export class SignatureError extends Error {
  override readonly name = 'SignatureError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** NATS credentials or TLS options that cannot be used (a missing file, a user without a password). */
export class NatsAuthError extends Error {
  override readonly name = 'NatsAuthError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A NodeSync call given up because its caller (the executor) is stopping: its signal aborted. */
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

function describeCallFailure(
  address: string,
  method: string,
  err: { code?: number; details?: string; message: string },
): string {
  // grpc-js wraps connection failures as "No connection established. Last error: Error: <why> (<time>)".
  const details = (err.details || err.message)
    .replace(/^No connection established\. Last error: (?:Error: )?/, '')
    .replace(/ \([^()]*\d{4}-\d{2}-\d{2}T[^()]*\)$/, '');
  if (err.code === PermissionDenied) return `controller ${address} refused ${method}: ${details}`;
  if (err.code === Unauthenticated)
    return `controller ${address} did not accept our credentials for ${method}: ${details}`;
  if (err.code === Unavailable) return `cannot reach controller ${address} (${method}): ${details}`;
  return `controller ${address}, ${method}: ${details}`;
}
