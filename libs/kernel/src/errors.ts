// Typed errors of @kpx/kernel. Every error that comes from a command carries the command's stderr.

/** A command could not be started, was killed (timeout) or exited with a non-zero status. */
export class CommandError extends Error {
  override readonly name = 'CommandError';
  /** The command line as run, e.g. `ip netns exec ns1 iptables-restore -w 5 --noflush`. */
  readonly command: string;
  /** The exit status; undefined when the command did not exit by itself (not started, or killed). */
  readonly exitCode: number | undefined;
  /** The signal that ended it, e.g. "SIGKILL" after a timeout. */
  readonly signal: string | undefined;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;

  constructor(options: {
    command: string;
    exitCode?: number | undefined;
    signal?: string | undefined;
    stdout?: string;
    stderr?: string;
    timedOut?: boolean;
    cause?: unknown;
  }) {
    const how = options.timedOut
      ? 'timed out'
      : options.exitCode !== undefined
        ? `exited with status ${options.exitCode}`
        : options.signal !== undefined
          ? `was killed by ${options.signal}`
          : 'could not be run';
    const stderr = (options.stderr ?? '').trim();
    super(`${options.command} ${how}${stderr ? `: ${stderr}` : ''}`, { cause: options.cause });
    this.command = options.command;
    this.exitCode = options.exitCode;
    this.signal = options.signal;
    this.stdout = options.stdout ?? '';
    this.stderr = options.stderr ?? '';
    this.timedOut = options.timedOut ?? false;
  }
}

/**
 * iptables-restore rejected a transaction. Nothing of it was committed: the kernel keeps the rules it had.
 * The applier's state is left as it was; the caller should fall back to a full restore (kube-proxy's
 * needFullSync).
 */
export class IptablesRestoreError extends Error {
  override readonly name = 'IptablesRestoreError';
  readonly stderr: string;
  /** The line of the transaction iptables-restore complained about (1-based), when it said so. */
  readonly line: number | undefined;
  /** The text of that line. */
  readonly lineText: string | undefined;
  /** The whole transaction that was rejected. */
  readonly input: string;

  constructor(options: { command: string; input: string; stderr: string; cause?: unknown }) {
    const line = lineNumberOf(options.stderr);
    const lineText = line === undefined ? undefined : options.input.split('\n')[line - 1];
    const where = lineText === undefined ? '' : ` (line ${line}: ${lineText})`;
    super(`${options.command} rejected the transaction${where}: ${options.stderr.trim()}`, { cause: options.cause });
    this.stderr = options.stderr;
    this.line = line;
    this.lineText = lineText;
    this.input = options.input;
  }
}

/** nft: "Error occurred at line: 7"; legacy: "iptables-restore: line 7 failed". */
function lineNumberOf(stderr: string): number | undefined {
  const m = /line:? (\d+)/i.exec(stderr);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

/** iptables-save or `iptables -S` failed: the kernel's rules could not be read. */
export class IptablesReadError extends Error {
  override readonly name = 'IptablesReadError';
  readonly stderr: string;

  constructor(message: string, options: { stderr: string; cause?: unknown }) {
    super(`${message}: ${options.stderr.trim()}`, { cause: options.cause });
    this.stderr = options.stderr;
  }
}

/** A line of iptables-save (or `iptables -S`) output that kpx does not understand. */
export class IptablesParseError extends Error {
  override readonly name = 'IptablesParseError';
  /** 1-based line number in the parsed text. */
  readonly line: number;
  readonly text: string;

  constructor(line: number, text: string, why: string) {
    super(`iptables-save output line ${line}: ${why}: ${JSON.stringify(text)}`);
    this.line = line;
    this.text = text;
  }
}

/** A rule object kpx cannot apply: wrong kind or payload, key and payload disagree, bad table or chain name. */
export class InvalidRuleObjectError extends Error {
  override readonly name = 'InvalidRuleObjectError';
  readonly kind: string;
  readonly key: string;

  constructor(kind: string, key: string, why: string) {
    super(`rule object ${kind} ${JSON.stringify(key)}: ${why}`);
    this.kind = kind;
    this.key = key;
  }
}

/**
 * Rules could not be brought into the kernel's own spelling (see RuleCanonicalizer): the scratch
 * iptables-restore rejected them, or its iptables-save did not give them back one for one.
 */
export class RuleCanonicalizeError extends Error {
  override readonly name = 'RuleCanonicalizeError';
  readonly stderr: string;

  constructor(message: string, options: { stderr?: string; cause?: unknown } = {}) {
    super(options.stderr ? `${message}: ${options.stderr.trim()}` : message, { cause: options.cause });
    this.stderr = options.stderr ?? '';
  }
}
