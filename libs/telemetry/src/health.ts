// Health as kube-proxy reports it (pkg/proxy/healthcheck/proxy_health.go): /healthz fails while a queued update is
// older than the health timeout or while the node is being deleted; /livez only looks at the updates.

import type { IpFamilyLabel } from './metrics.js';

/** What a health check tells the HTTP server. */
export interface HealthReport {
  /** Whether the proxy is healthy (kube-proxy: no update queued longer than the health timeout). */
  readonly ok: boolean;
  /** Last successful update of the rules; omitted before the first one. */
  readonly lastUpdated?: Date | undefined;
  /** False while the node is deleted or tainted ToBeDeletedByClusterAutoscaler; only /healthz looks at it. Default true. */
  readonly nodeEligible?: boolean | undefined;
  /** Anything else worth showing; served under `details`. */
  readonly details?: Readonly<Record<string, unknown>> | undefined;
}

export type HealthCheck = () => HealthReport | Promise<HealthReport>;

/** Body of /healthz (kube-proxy's keys, ISO 8601 times instead of Go's time.Time strings). */
export interface HealthzBody {
  readonly lastUpdated: string;
  readonly currentTime: string;
  readonly nodeEligible: boolean;
  readonly details?: Readonly<Record<string, unknown>>;
}

/** Body of /livez. */
export interface LivezBody {
  readonly lastUpdated: string;
  readonly currentTime: string;
  readonly details?: Readonly<Record<string, unknown>>;
}

/** Go's zero time.Time, which kube-proxy reports as lastUpdated before the first update. */
const zeroTime = new Date('0001-01-01T00:00:00Z');

export type ProbeKind = 'healthz' | 'livez';

/**
 * Status and body of a probe. As kube-proxy: when healthy, lastUpdated is reported as the current time (the older
 * semantics of "the sync loop ran recently"); when not, the last real update.
 */
export function renderProbe(
  kind: ProbeKind,
  report: HealthReport,
  now: Date,
): { status: 200 | 503; body: HealthzBody | LivezBody } {
  const nodeEligible = report.nodeEligible ?? true;
  const healthy = kind === 'healthz' ? report.ok && nodeEligible : report.ok;
  const lastUpdated = (healthy ? now : (report.lastUpdated ?? zeroTime)).toISOString();
  const currentTime = now.toISOString();
  const details = report.details === undefined ? {} : { details: report.details };
  const body =
    kind === 'healthz'
      ? { lastUpdated, currentTime, nodeEligible, ...details }
      : { lastUpdated, currentTime, ...details };
  return { status: healthy ? 200 : 503, body };
}

/** Taint the cluster autoscaler puts on a node it is about to delete. */
export const ToBeDeletedTaint = 'ToBeDeletedByClusterAutoscaler';

/** The parts of a Kubernetes Node that decide whether it is eligible. */
export interface NodeEligibilityInput {
  readonly metadata?: { readonly deletionTimestamp?: string | undefined } | undefined;
  readonly spec?: { readonly taints?: readonly { readonly key: string }[] | undefined } | undefined;
}

export interface HealthTrackerOptions {
  /** How long a queued update may wait for its sync before the proxy is unhealthy (kube-proxy: 2 × syncPeriod, 60 s). */
  readonly healthTimeoutMs: number;
  /**
   * How long the source of updates (the executor's NATS connection) may be lost before the proxy is unhealthy:
   * the rules it holds may be stale by then, as kube-proxy's when it cannot reach the API server (default: the
   * health timeout).
   */
  readonly sourceGraceMs?: number | undefined;
  /** Clock, for tests. */
  readonly now?: (() => Date) | undefined;
}

/** kube-proxy's ProxyHealthServer state, without the server. Its report() is a HealthCheck. */
export interface HealthTracker {
  /** The rules of `family` were successfully updated and reflect everything queued so far. */
  updated(family: IpFamilyLabel): void;
  /** A change for `family` arrived and awaits a sync; the oldest pending one counts. */
  queuedUpdate(family: IpFamilyLabel): void;
  /** Node is eligible unless deleted or tainted ToBeDeletedByClusterAutoscaler. */
  syncNode(node: NodeEligibilityInput): void;
  /** The source of updates is unreachable (from now on, unless it already was); see sourceGraceMs. */
  sourceLost(): void;
  /** The source of updates is reachable again. */
  sourceRestored(): void;
  readonly nodeEligible: boolean;
  report(): HealthReport;
}

export function createHealthTracker(options: HealthTrackerOptions): HealthTracker {
  const now = options.now ?? (() => new Date());
  const lastUpdated = new Map<IpFamilyLabel, Date>();
  const oldestPending = new Map<IpFamilyLabel, Date>();
  let nodeEligible = true; // eligible while starting up, until a node event says otherwise
  let sourceLostAt: Date | undefined;
  const sourceGraceMs = options.sourceGraceMs ?? options.healthTimeoutMs;

  const isHealthy = (): { ok: boolean; lastUpdated: Date | undefined } => {
    const current = now().getTime();
    let latest: Date | undefined;
    for (const [family, updated] of lastUpdated) {
      if (latest === undefined || updated > latest) latest = updated;
      const pending = oldestPending.get(family);
      if (pending === undefined) continue; // starting up, or fully synced
      if (current - pending.getTime() < options.healthTimeoutMs) continue; // queued, not late yet
      return { ok: false, lastUpdated: updated };
    }
    const sourceLate = sourceLostAt !== undefined && current - sourceLostAt.getTime() >= sourceGraceMs;
    return { ok: !sourceLate, lastUpdated: latest };
  };

  return {
    updated(family) {
      oldestPending.delete(family);
      lastUpdated.set(family, now());
    },
    queuedUpdate(family) {
      if (!oldestPending.has(family)) oldestPending.set(family, now());
    },
    syncNode(node) {
      const deleting = (node.metadata?.deletionTimestamp ?? '') !== '';
      const tainted = (node.spec?.taints ?? []).some((t) => t.key === ToBeDeletedTaint);
      nodeEligible = !deleting && !tainted;
    },
    sourceLost() {
      sourceLostAt ??= now();
    },
    sourceRestored() {
      sourceLostAt = undefined;
    },
    get nodeEligible() {
      return nodeEligible;
    },
    report() {
      const { ok, lastUpdated: last } = isHealthy();
      return { ok, lastUpdated: last, nodeEligible };
    },
  };
}
