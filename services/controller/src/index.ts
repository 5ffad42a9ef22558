export { ControllerPipeline, UnpublishedError, familyOptionsFromConfig, pipelineMode } from './pipeline.js';
export type { PipelineLogger, PipelineMetrics, PipelineOptions, SyncOutcome } from './pipeline.js';
export { MemoryGenerationStore } from './ports.js';
export type {
  DeltaSink,
  GenerationAudit,
  GenerationStore,
  GenerationSummary,
  PublishedHead,
  PublishedHeads,
  PublishOutcome,
  SnapshotSink,
} from './ports.js';
export { CoalescingRunner } from './runner.js';
export type { RetryOptions } from './runner.js';
export { Outbox } from './outbox.js';
export { natsPorts } from './nats-ports.js';
export { runController } from './run.js';
export type { ControllerRunOptions, RunningController } from './run.js';
export type { NatsPorts, NatsPortsOptions } from './nats-ports.js';
export { ManifestsDirSource } from './sources/manifests-dir.js';
export type { ManifestsDirSourceOptions } from './sources/manifests-dir.js';
export { EventType, ObjectKind } from './sources/types.js';
export type { Source, SourceEvent, SourceHandler } from './sources/types.js';
export { ConvergenceTracker, MaxDriftLines } from './tracker.js';
export type { TrackerCounts, TrackerOptions } from './tracker.js';
export { insecureListenRefusal, nodeSyncImplementation, startGrpcServer } from './grpc-server.js';
export {
  IdentityKind,
  NodeSyncMethod,
  NodesGroup,
  NodeUserPrefix,
  denial,
  identityOfCertificate,
  isLoopbackHost,
} from './identity.js';
export type { PeerIdentity } from './identity.js';
export type { GrpcServerOptions, RunningGrpcServer } from './grpc-server.js';
export { DefaultSilentWatchTimeoutMs, createKubernetesSource } from './sources/kubernetes.js';
export type { KubernetesSource, KubernetesSourceOptions, SourceLogger } from './sources/kubernetes.js';
export { DefaultLeaderElectionTiming, LeaderElector, LeaseConflictError, validateTiming } from './leader-election.js';
export type {
  LeaderElectionLogger,
  LeaderElectionTiming,
  LeaderElectorOptions,
  LeaseRecord,
  LeaseStore,
  VersionedLease,
} from './leader-election.js';
export { Leadership, NotLeaderError } from './leadership.js';
export type { ControllerLeaderElection, LeaderStatus, LeadershipOptions, WritingPorts } from './leadership.js';
export { LeaderBucket, natsLeaseStore } from './lease-nats.js';
export type { NatsLeaseOptions } from './lease-nats.js';
export { kubernetesLeaseStore, leaseToRecord, recordToLease } from './lease-kubernetes.js';
export type { KubernetesLeaseOptions } from './lease-kubernetes.js';
