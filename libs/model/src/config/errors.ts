/**
 * Errors raised while loading a kube-proxy configuration file (KubeProxyConfiguration).
 */

/** One thing wrong with a configuration, named by its field path as written in the file. */
export interface KubeProxyConfigProblem {
  /**
   * camelCase path of the offending field as it appears in the file, e.g. `iptables.masqueradeBit`,
   * `ipvs.excludeCIDRs[1]`; `''` for problems with the document as a whole (syntax, not a mapping).
   */
  readonly field: string;
  /** What is wrong, including the offending value. */
  readonly message: string;
}

export interface KubeProxyConfigErrorOptions {
  /** Where the configuration came from (a file path), used in the message. */
  readonly source?: string | undefined;
  /** The underlying error (a YAML parse error, a file system error). */
  readonly cause?: unknown;
}

/** A configuration that kpx refuses. Every problem found is listed, not only the first. */
export class KubeProxyConfigError extends Error {
  override readonly name = 'KubeProxyConfigError';
  readonly problems: readonly KubeProxyConfigProblem[];
  readonly source: string | undefined;

  constructor(problems: readonly KubeProxyConfigProblem[], options: KubeProxyConfigErrorOptions = {}) {
    super(formatMessage(problems, options.source), options.cause === undefined ? undefined : { cause: options.cause });
    this.problems = problems;
    this.source = options.source;
  }
}

function formatMessage(problems: readonly KubeProxyConfigProblem[], source: string | undefined): string {
  const where = source === undefined ? 'kube-proxy configuration' : `kube-proxy configuration ${source}`;
  const lines = problems.map((p) => (p.field === '' ? `  - ${p.message}` : `  - ${p.field}: ${p.message}`));
  const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
  return `invalid ${where} (${count}):\n${lines.join('\n')}`;
}
