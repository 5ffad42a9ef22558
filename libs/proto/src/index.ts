// @kpx/proto: the wire contract of kpx (proto/kpx/v1/*.proto) as generated ts-proto code.
// Each message name is both a type and a value (encode/decode/fromJSON/toJSON/create/fromPartial).
export {
  Cause,
  ConntrackPort,
  Delta,
  HealthCheckService,
  IpsetEntries,
  IpsetSet,
  IptablesChain,
  IptablesJump,
  IptablesRules,
  IpvsAddress,
  IpvsRealServer,
  IpvsService,
  NftChain,
  NftMap,
  NftSet,
  NodeRuleSet,
  ObjectRef,
  RuleObject,
} from './gen/kpx/v1/rules.js';
export type { DeepPartial, Exact, MessageFns } from './gen/kpx/v1/rules.js';
export {
  AckRequest,
  AckResponse,
  NodeStatus,
  NodeSyncClient,
  NodeSyncService,
  SnapshotChunk,
  SnapshotRequest,
  StatusRequest,
  StatusResponse,
} from './gen/kpx/v1/sync.js';
export type { NodeSyncServer } from './gen/kpx/v1/sync.js';
export { Timestamp } from './gen/google/protobuf/timestamp.js';
export { DutyKinds, IpFamily, ProxyMode, RuleKind, hasConsistentKind, isDuty, kindOfPayloadCase } from './kinds.js';
export type { RulePayload, RulePayloadCase } from './kinds.js';
