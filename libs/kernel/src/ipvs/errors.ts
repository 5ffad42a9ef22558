// Typed errors of the IPVS side of @kpx/kernel.

/** The kernel refused a netlink request (errno), or its answer could not be understood. */
export class NetlinkError extends Error {
  override readonly name = 'NetlinkError';
  /** What was asked, e.g. `add service TCP/10.96.0.10:80`. */
  readonly operation: string;
  /** The positive errno (e.g. 17 for EEXIST); 0 when the failure was not an errno. */
  readonly errno: number;
  /** The errno's name, e.g. "EEXIST", or a description. */
  readonly code: string;

  constructor(operation: string, errno: number, code: string, options: { cause?: unknown } = {}) {
    super(`${operation}: ${code}`, options);
    this.operation = operation;
    this.errno = errno;
    this.code = code;
  }
}

/** Some operations of an IPVS batch failed; the others were applied (netlink has no transactions). */
export class IpvsApplyError extends Error {
  override readonly name = 'IpvsApplyError';
  readonly failures: readonly NetlinkError[];

  constructor(what: string, failures: readonly NetlinkError[]) {
    const shown = failures
      .slice(0, 5)
      .map((f) => f.message)
      .join('; ');
    super(`${what}: ${failures.length} operation(s) failed: ${shown}${failures.length > 5 ? '; …' : ''}`);
    this.failures = failures;
  }
}

/** `ipset restore` rejected its input, or `ipset save` could not be read or parsed. */
export class IpsetError extends Error {
  override readonly name = 'IpsetError';
  readonly stderr: string;

  constructor(message: string, options: { stderr?: string; cause?: unknown } = {}) {
    super(options.stderr ? `${message}: ${options.stderr.trim()}` : message, { cause: options.cause });
    this.stderr = options.stderr ?? '';
  }
}
