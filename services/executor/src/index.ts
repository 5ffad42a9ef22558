// @kpx/executor: applies a node's deltas to the kernel, resyncs, repairs drift, acks to the controller.
export { MemoryBackend, readBackDigest } from './backend.js';
export type { AppliedChange, Backend, ReadBack } from './backend.js';
export { Executor, IptablesMode, MaxAckDriftLines } from './executor.js';
export { SnapshotDigestError } from './errors.js';
export type { ExecutorOptions, FamilyStatus } from './executor.js';
export { runExecutor } from './run.js';
export type { ExecutorRunOptions, RunningExecutor } from './run.js';
export { IptablesBackend, driftLines } from './iptables-backend.js';
export type { IptablesBackendOptions } from './iptables-backend.js';
export { IpvsBackend } from './ipvs-backend.js';
export type { IpvsBackendOptions } from './ipvs-backend.js';
export {
  StaleFlows,
  createConntrackCleaner,
  deletionsForChange,
  deletionsForRestore,
  deriveConntrackDeletions,
} from './conntrack.js';
export type { ConntrackCleaner, ConntrackDeletion, UdpFrontend } from './conntrack.js';
export {
  ChildScript as HealthCheckChildScript,
  LocalHealthCheckServers,
  NetnsHealthCheckServers,
  createHealthCheckServers,
  healthCheckResponse,
  healthChecksOf,
  listenAddresses,
} from './health-check.js';
export type {
  HealthCheckFailure,
  HealthCheckResponse,
  HealthCheckServers,
  HealthCheckServersOptions,
  HealthCheckService,
  HealthCheckSyncResult,
} from './health-check.js';
