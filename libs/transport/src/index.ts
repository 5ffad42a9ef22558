// @kpx/transport: NATS JetStream transport of kpx deltas and snapshots, and the gRPC NodeSync client.
export {
  ControllerCallError,
  CredentialFileError,
  DecodeError,
  FencedError,
  InvalidNodeNameError,
  NatsAuthError,
  PayloadTooLargeError,
  SignatureError,
  SnapshotError,
  StoppingError,
  StreamConfigError,
} from './errors.js';
export { readCredentialFile, readTlsFiles, tlsFilesFromFlags } from './credential-files.js';
export type { ReadCredentialOptions, TlsFiles, TlsMaterial } from './credential-files.js';
export {
  AuditGenerationSubject,
  AuditStream,
  AuditSubjectPrefix,
  auditSubject,
  decodeNodeToken,
  deltaMsgId,
  DeltaStream,
  deltaSubject,
  DeltaSubjectFilter,
  DeltaSubjectPrefix,
  encodeNodeToken,
  Header,
  isValidNodeName,
  nodeOfDeltaSubject,
  SnapshotBucket,
  SnapshotFamilies,
  snapshotHeadName,
  SnapshotMeta,
  snapshotObjectName,
  StateBucket,
  GenerationKey,
  inboxPrefix,
  NatsRole,
} from './subjects.js';
export { deltaSigningInput, keyIdOf, signerFromPem, snapshotSigningInput, verifierFromPem } from './signing.js';
export type { Signer, Verifier } from './signing.js';
export { NatsAuthFlags, NatsAuthUsage, natsAuthFromFlags, natsConnectionOptions } from './nats-auth.js';
export type { NatsAuth, NatsAuthFlagValues } from './nats-auth.js';
export { natsServerAuthConfig, newNkeyUser, nkeyPublicKey, rolePermissions } from './nats-permissions.js';
export type { NatsPermissions, NatsUserSpec } from './nats-permissions.js';
export { ControllerClient } from './node-sync-client.js';
export type { CallOptions, ControllerClientOptions, FetchedSnapshot } from './node-sync-client.js';
export { connectWithRetry, followConnection } from './connect.js';
export type { ConnectRetryOptions } from './connect.js';
export { openGenerationCounter } from './generations.js';
export type { GenerationCounter } from './generations.js';
export {
  ensureDeltaStream,
  EnsureAction,
  lastDelta,
  lastDeltaSeq,
  publishDelta,
  readDeltaMessages,
  readDeltas,
  RejectReason,
} from './deltas.js';
export type {
  DeltaMessage,
  DeltaRecord,
  DeltaStreamOptions,
  EnsureStreamResult,
  PublishDeltaOptions,
  PublishedDelta,
  ReadDeltasOptions,
  RejectedMessage,
} from './deltas.js';
export { deleteSnapshots, ensureSnapshotStore, getSnapshot, listSnapshots, putSnapshot } from './snapshots.js';
export type {
  GetSnapshotOptions,
  PutSnapshotOptions,
  SnapshotInfo,
  SnapshotRef,
  SnapshotStoreOptions,
} from './snapshots.js';
export { ensureAuditStream, publishAuditRecord, readAudit } from './audit.js';
export type {
  AuditCause,
  AuditEntry,
  AuditRecord,
  AuditStreamOptions,
  GenerationRecord,
  NodeEventRecord,
  ReadAuditOptions,
} from './audit.js';
