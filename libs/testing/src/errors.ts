// Typed errors of the netns test harness.

/** A command (ip, iptables-restore, node …) exited with a failure or could not be started. */
export class CommandError extends Error {
  override readonly name = 'CommandError';
  readonly command: string;
  readonly exitCode: number | undefined;
  readonly stderr: string;

  constructor(options: { command: string; exitCode: number | undefined; stderr: string; cause?: unknown }) {
    super(`${options.command} failed (exit ${String(options.exitCode)}): ${options.stderr.trim()}`, {
      cause: options.cause,
    });
    this.command = options.command;
    this.exitCode = options.exitCode;
    this.stderr = options.stderr;
  }
}

/** The topology could not be built (namespaces, links, addresses, routes) or is used wrongly. */
export class TopologyError extends Error {
  override readonly name = 'TopologyError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** iptables-restore / ip6tables-restore rejected the rules given to loadRules(). */
export class RulesLoadError extends Error {
  override readonly name = 'RulesLoadError';
  readonly node: string;
  readonly stderr: string;

  constructor(options: { node: string; family: string; stderr: string; cause?: unknown }) {
    super(`loading ${options.family} rules into node ${options.node} failed: ${options.stderr.trim()}`, {
      cause: options.cause,
    });
    this.node = options.node;
    this.stderr = options.stderr;
  }
}

/** A pod server did not start or did not report READY in time. */
export class ServerStartError extends Error {
  override readonly name = 'ServerStartError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
