// @kpx/executor: applies a node's deltas to the kernel, resyncs, repairs drift, acks to the controller.
export { MemoryBackend } from './backend.js';
export type { AppliedChange, Backend, ReadBack } from './backend.js';
export { ControllerClient } from './controller-client.js';
export type { FetchedSnapshot } from './controller-client.js';
export { Executor, IptablesMode } from './executor.js';
export type { ExecutorOptions, FamilyStatus } from './executor.js';
export { runExecutor } from './run.js';
export type { ExecutorRunOptions, RunningExecutor } from './run.js';
export { IptablesBackend, driftLines } from './iptables-backend.js';
export type { IptablesBackendOptions } from './iptables-backend.js';
export { StaleFlows, createConntrackCleaner, deletionsForChange, deletionsForRestore, deriveConntrackDeletions } from './conntrack.js';
export type { ConntrackCleaner, ConntrackDeletion, UdpFrontend } from './conntrack.js';
