// Prometheus metrics: one Registry per process (never prom-client's global one), and typed factories of the metrics
// kpx exports. Where a metric means what a kube-proxy metric means it has kube-proxy's name, help, labels and buckets
// (pkg/proxy/metrics/metrics.go), so existing dashboards and alerts keep working.

import {
  Counter,
  Gauge,
  Histogram,
  Registry,
  collectDefaultMetrics,
  exponentialBuckets,
  linearBuckets,
} from 'prom-client';
import type { Metric } from 'prom-client';
import { MetricRegistrationError } from './errors.js';

export type { Registry } from 'prom-client';

/** Metric names, for dashboards and tests. */
export const MetricName = {
  SyncProxyRulesDuration: 'kubeproxy_sync_proxy_rules_duration_seconds',
  SyncFullProxyRulesDuration: 'kubeproxy_sync_full_proxy_rules_duration_seconds',
  SyncPartialProxyRulesDuration: 'kubeproxy_sync_partial_proxy_rules_duration_seconds',
  SyncProxyRulesLastTimestamp: 'kubeproxy_sync_proxy_rules_last_timestamp_seconds',
  NetworkProgrammingDuration: 'kubeproxy_network_programming_duration_seconds',
  IptablesRestoreFailures: 'kubeproxy_sync_proxy_rules_iptables_restore_failures_total',
  NftablesSyncFailures: 'kubeproxy_sync_proxy_rules_nftables_sync_failures_total',
  ProxyHealthz: 'kubeproxy_proxy_healthz_total',
  ProxyLivez: 'kubeproxy_proxy_livez_total',
  ControllerGeneration: 'kpx_controller_generation',
  ControllerDeltasPublished: 'kpx_controller_deltas_published_total',
  ControllerDeltaBytes: 'kpx_controller_delta_bytes',
  ControllerChangeToAck: 'kpx_controller_change_to_ack_seconds',
  ControllerNodes: 'kpx_controller_nodes',
  ControllerNodesInSync: 'kpx_controller_nodes_in_sync',
  ControllerNodesPending: 'kpx_controller_nodes_pending',
  ControllerNodesStale: 'kpx_controller_nodes_stale',
  ControllerPendingGenerations: 'kpx_controller_pending_generations',
  ControllerSyncFailures: 'kpx_controller_sync_failures_total',
  ControllerPublishFailures: 'kpx_controller_publish_failures_total',
  ControllerNatsConnected: 'kpx_controller_nats_connected',
  ControllerUnpublishedSeconds: 'kpx_controller_unpublished_seconds',
  ControllerLeader: 'kpx_controller_leader',
  ControllerDeniedRequests: 'kpx_controller_denied_requests_total',
  ExecutorAppliedGeneration: 'kpx_executor_applied_generation',
  ExecutorDriftRepairs: 'kpx_executor_drift_repairs_total',
  ExecutorConntrackEntriesDeleted: 'kpx_executor_conntrack_entries_deleted_total',
  ExecutorConntrackFailures: 'kpx_executor_conntrack_failures_total',
  ExecutorHealthCheckServers: 'kpx_executor_healthcheck_servers',
  ExecutorHealthCheckListenFailures: 'kpx_executor_healthcheck_listen_failures_total',
  ExecutorRejectedDeltas: 'kpx_executor_rejected_deltas_total',
} as const;
export type MetricName = (typeof MetricName)[keyof typeof MetricName];

/** kube-proxy's sync durations: 1 ms doubling to ~16 s (ExponentialBuckets(0.001, 2, 15)). */
export const SyncDurationBuckets: readonly number[] = Object.freeze(exponentialBuckets(0.001, 2, 15));

/**
 * kube-proxy's network programming buckets: 0, 0.25 s, 0.5 s, 1..59 s, 60..115 s by 5, 120..300 s by 30 (its
 * MergeBuckets starts the list with a 0 bucket).
 */
export const NetworkProgrammingBuckets: readonly number[] = Object.freeze([
  0,
  ...linearBuckets(0.25, 0.25, 2),
  ...linearBuckets(1, 1, 59),
  ...linearBuckets(60, 5, 12),
  ...linearBuckets(120, 30, 7),
]);

/** Delta sizes: 64 B quadrupling to 16 MiB (NATS' default max payload is 1 MiB). */
export const DeltaBytesBuckets: readonly number[] = Object.freeze(exponentialBuckets(64, 4, 10));

/** kube-proxy's `ip_family` label values. */
export type IpFamilyLabel = 'IPv4' | 'IPv6';

export interface MetricsOptions {
  /** Also collect prom-client's process_* and nodejs_* metrics into the registry. Default false. */
  readonly processMetrics?: boolean | undefined;
  /** Labels added to every sample. */
  readonly defaultLabels?: Readonly<Record<string, string>> | undefined;
}

/** A fresh registry (no process-wide state): serve it with startHttpServer, fill it with the factories below. */
export function createMetrics(options: MetricsOptions = {}): Registry {
  const registry = new Registry();
  if (options.defaultLabels !== undefined) registry.setDefaultLabels({ ...options.defaultLabels });
  if (options.processMetrics === true) collectDefaultMetrics({ register: registry });
  return registry;
}

/** The data-plane metrics kube-proxy exports, labelled by `ip_family` as upstream does. */
export interface KubeProxyMetrics {
  /** One sync (full resync or delta apply) of a node's rules. */
  readonly syncProxyRulesDuration: Histogram<'ip_family'>;
  readonly syncFullProxyRulesDuration: Histogram<'ip_family'>;
  readonly syncPartialProxyRulesDuration: Histogram<'ip_family'>;
  /** Unix seconds of the last successful sync. */
  readonly syncProxyRulesLastTimestamp: Gauge<'ip_family'>;
  /** From the API change (trigger time) to the rules being in the kernel. */
  readonly networkProgrammingDuration: Histogram<'ip_family'>;
  readonly iptablesRestoreFailures: Counter<'ip_family'>;
  readonly nftablesSyncFailures: Counter<'ip_family'>;
  /** Answers of /healthz and /livez by HTTP code; give these to startHttpServer as probeCounters. */
  readonly proxyHealthz: Counter<'code'>;
  readonly proxyLivez: Counter<'code'>;
}

export function kubeProxyMetrics(registry: Registry): KubeProxyMetrics {
  const family = ['ip_family'] as const;
  return {
    syncProxyRulesDuration: register(
      registry,
      new Histogram({
        name: MetricName.SyncProxyRulesDuration,
        help: 'SyncProxyRules latency in seconds',
        labelNames: family,
        buckets: [...SyncDurationBuckets],
        registers: [],
      }),
    ),
    syncFullProxyRulesDuration: register(
      registry,
      new Histogram({
        name: MetricName.SyncFullProxyRulesDuration,
        help: 'SyncProxyRules latency in seconds for full resyncs',
        labelNames: family,
        buckets: [...SyncDurationBuckets],
        registers: [],
      }),
    ),
    syncPartialProxyRulesDuration: register(
      registry,
      new Histogram({
        name: MetricName.SyncPartialProxyRulesDuration,
        help: 'SyncProxyRules latency in seconds for partial resyncs',
        labelNames: family,
        buckets: [...SyncDurationBuckets],
        registers: [],
      }),
    ),
    syncProxyRulesLastTimestamp: register(
      registry,
      new Gauge({
        name: MetricName.SyncProxyRulesLastTimestamp,
        help: 'The last time proxy rules were successfully synced',
        labelNames: family,
        registers: [],
      }),
    ),
    networkProgrammingDuration: register(
      registry,
      new Histogram({
        name: MetricName.NetworkProgrammingDuration,
        help: 'In Cluster Network Programming Latency in seconds',
        labelNames: family,
        buckets: [...NetworkProgrammingBuckets],
        registers: [],
      }),
    ),
    iptablesRestoreFailures: register(
      registry,
      new Counter({
        name: MetricName.IptablesRestoreFailures,
        help: 'Cumulative proxy iptables restore failures',
        labelNames: family,
        registers: [],
      }),
    ),
    nftablesSyncFailures: register(
      registry,
      new Counter({
        name: MetricName.NftablesSyncFailures,
        help: 'Cumulative proxy nftables sync failures',
        labelNames: family,
        registers: [],
      }),
    ),
    proxyHealthz: register(
      registry,
      new Counter({
        name: MetricName.ProxyHealthz,
        help: 'Cumulative proxy healthz HTTP status',
        labelNames: ['code'] as const,
        registers: [],
      }),
    ),
    proxyLivez: register(
      registry,
      new Counter({
        name: MetricName.ProxyLivez,
        help: 'Cumulative proxy livez HTTP status',
        labelNames: ['code'] as const,
        registers: [],
      }),
    ),
  };
}

/** The controller's metrics. None is labelled by node: there are thousands. */
export interface ControllerMetrics {
  /** The newest cluster-wide generation compiled and published. */
  readonly generation: Gauge;
  readonly deltasPublished: Counter;
  /** Encoded size of each published delta. */
  readonly deltaBytes: Histogram;
  /** From an API change (trigger time) to a node's ack of the generation that contains it, over all nodes. */
  readonly changeToAck: Histogram;
  /** Nodes the controller compiles for. */
  readonly nodes: Gauge;
  /** Node and family pairs in sync: acked the desired state, nothing pending, not stale. */
  readonly nodesInSync: Gauge;
  /** Node and family pairs with compiled changes JetStream has not acknowledged. */
  readonly nodesPending: Gauge;
  /** Node and family pairs whose executor has not acked for longer than the staleness bound. */
  readonly nodesStale: Gauge;
  /** Generations built whose deltas are not all in JetStream yet, plus one while changes wait for a generation. */
  readonly pendingGenerations: Gauge;
  /** Syncs that failed (each is retried with backoff). */
  readonly syncFailures: Counter;
  /** Delta publishes JetStream did not acknowledge (each is retried). */
  readonly publishFailures: Counter;
  /** 1 while the controller's NATS connection is up. */
  readonly natsConnected: Gauge;
  /** Age of the oldest change not yet in JetStream, seconds (0 when everything is published). */
  readonly unpublishedSeconds: Gauge;
  /** 1 while this controller leads (or runs without leader election), 0 as a standby. */
  readonly leader: Gauge;
  /** gRPC calls refused (PERMISSION_DENIED) by method and the caller's certificate CN (one per node and operator). */
  readonly deniedRequests: Counter<'method' | 'identity'>;
}

export function controllerMetrics(registry: Registry): ControllerMetrics {
  return {
    generation: register(
      registry,
      new Gauge({
        name: MetricName.ControllerGeneration,
        help: 'Newest cluster-wide generation the controller has published',
        registers: [],
      }),
    ),
    deltasPublished: register(
      registry,
      new Counter({
        name: MetricName.ControllerDeltasPublished,
        help: 'Cumulative node deltas published',
        registers: [],
      }),
    ),
    deltaBytes: register(
      registry,
      new Histogram({
        name: MetricName.ControllerDeltaBytes,
        help: 'Encoded size of published node deltas in bytes',
        buckets: [...DeltaBytesBuckets],
        registers: [],
      }),
    ),
    changeToAck: register(
      registry,
      new Histogram({
        name: MetricName.ControllerChangeToAck,
        help: 'From an API change to a node acknowledging the generation that contains it, in seconds',
        buckets: [...NetworkProgrammingBuckets],
        registers: [],
      }),
    ),
    nodes: register(
      registry,
      new Gauge({
        name: MetricName.ControllerNodes,
        help: 'Nodes the controller compiles rules for',
        registers: [],
      }),
    ),
    nodesInSync: register(
      registry,
      new Gauge({
        name: MetricName.ControllerNodesInSync,
        help: 'Node and family pairs that acknowledged their desired state, with nothing pending and a recent ack',
        registers: [],
      }),
    ),
    nodesPending: register(
      registry,
      new Gauge({
        name: MetricName.ControllerNodesPending,
        help: 'Node and family pairs with compiled changes JetStream has not acknowledged yet',
        registers: [],
      }),
    ),
    nodesStale: register(
      registry,
      new Gauge({
        name: MetricName.ControllerNodesStale,
        help: 'Node and family pairs whose executor has not acked for longer than the staleness bound',
        registers: [],
      }),
    ),
    pendingGenerations: register(
      registry,
      new Gauge({
        name: MetricName.ControllerPendingGenerations,
        help: 'Generations whose deltas are not all in JetStream yet (plus one while compiled changes wait for a generation)',
        registers: [],
      }),
    ),
    syncFailures: register(
      registry,
      new Counter({
        name: MetricName.ControllerSyncFailures,
        help: 'Syncs that failed; each is retried with backoff',
        registers: [],
      }),
    ),
    publishFailures: register(
      registry,
      new Counter({
        name: MetricName.ControllerPublishFailures,
        help: 'Delta publishes JetStream did not acknowledge; each is retried',
        registers: [],
      }),
    ),
    natsConnected: register(
      registry,
      new Gauge({
        name: MetricName.ControllerNatsConnected,
        help: '1 while the controller is connected to NATS',
        registers: [],
      }),
    ),
    leader: register(
      registry,
      new Gauge({
        name: MetricName.ControllerLeader,
        help: '1 while this controller is the leader (or runs without leader election), 0 while it is a standby',
        registers: [],
      }),
    ),
    unpublishedSeconds: register(
      registry,
      new Gauge({
        name: MetricName.ControllerUnpublishedSeconds,
        help: 'Age of the oldest compiled change not yet in JetStream, in seconds (0 when everything is published)',
        registers: [],
      }),
    ),
    deniedRequests: register(
      registry,
      new Counter({
        name: MetricName.ControllerDeniedRequests,
        help: 'gRPC NodeSync calls refused with PERMISSION_DENIED (a node asking for another node, a node asking for status), by method and certificate identity',
        labelNames: ['method', 'identity'] as const,
        registers: [],
      }),
    ),
  };
}

/** An executor's metrics: kube-proxy's data-plane metrics plus kpx's own. */
export interface ExecutorMetrics extends KubeProxyMetrics {
  /** Generation of the last delta or snapshot applied to this node. */
  readonly appliedGeneration: Gauge;
  /** Drift checks that found the kernel differing from the applied state and repaired it. */
  readonly driftRepairs: Counter;
  /** Stale UDP conntrack entries the node's cleanup deleted. */
  readonly conntrackEntriesDeleted: Counter<'ip_family'>;
  /** conntrack commands of the cleanup that failed (their flows stay until they time out). */
  readonly conntrackFailures: Counter<'ip_family'>;
  /** healthCheckNodePort servers listening. */
  readonly healthCheckServers: Gauge<'ip_family'>;
  /** Failed attempts to bind a healthCheckNodePort (retried). */
  readonly healthCheckListenFailures: Counter<'ip_family'>;
  /**
   * Messages of the node's subject skipped because they could not be decoded, verified or chained, by reason
   * (decode, foreign_node, digest, gap, old, mode_family, forbidden_object: an object outside kpx's namespace).
   */
  readonly rejectedDeltas: Counter<'reason'>;
}

export function executorMetrics(registry: Registry): ExecutorMetrics {
  return {
    ...kubeProxyMetrics(registry),
    appliedGeneration: register(
      registry,
      new Gauge({
        name: MetricName.ExecutorAppliedGeneration,
        help: 'Generation of the last delta or snapshot applied to this node',
        registers: [],
      }),
    ),
    driftRepairs: register(
      registry,
      new Counter({
        name: MetricName.ExecutorDriftRepairs,
        help: 'Cumulative repairs of kernel rules that drifted from the applied state',
        registers: [],
      }),
    ),
    conntrackEntriesDeleted: register(
      registry,
      new Counter({
        name: MetricName.ExecutorConntrackEntriesDeleted,
        help: 'Cumulative stale UDP conntrack entries deleted after rule changes',
        labelNames: ['ip_family'] as const,
        registers: [],
      }),
    ),
    conntrackFailures: register(
      registry,
      new Counter({
        name: MetricName.ExecutorConntrackFailures,
        help: 'Cumulative conntrack commands of the stale UDP entry cleanup that failed',
        labelNames: ['ip_family'] as const,
        registers: [],
      }),
    ),
    healthCheckServers: register(
      registry,
      new Gauge({
        name: MetricName.ExecutorHealthCheckServers,
        help: 'healthCheckNodePort servers listening',
        labelNames: ['ip_family'] as const,
        registers: [],
      }),
    ),
    healthCheckListenFailures: register(
      registry,
      new Counter({
        name: MetricName.ExecutorHealthCheckListenFailures,
        help: 'Cumulative failed attempts to listen on a healthCheckNodePort (retried every few seconds)',
        labelNames: ['ip_family'] as const,
        registers: [],
      }),
    ),
    rejectedDeltas: register(
      registry,
      new Counter({
        name: MetricName.ExecutorRejectedDeltas,
        help: "Cumulative messages of the node subject skipped because they could not be decoded, verified or chained, or held an object that is not kpx's own (forbidden_object), by reason",
        labelNames: ['reason'] as const,
        registers: [],
      }),
    ),
  };
}

function register<M extends Metric>(registry: Registry, metric: M): M {
  try {
    registry.registerMetric(metric);
  } catch (cause) {
    throw new MetricRegistrationError(metricName(metric), { cause });
  }
  return metric;
}

function metricName(metric: Metric): string {
  const name = (metric as { name?: unknown }).name;
  return typeof name === 'string' ? name : 'metric';
}
