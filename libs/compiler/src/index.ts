export { NodeNotFoundError } from './errors.js';
export {
  healthCheckClaims,
  healthCheckObjects,
  healthCheckVariantKeyFn,
  mergeHealthCheckClaims,
  servesHealthCheck,
} from './healthcheck.js';
export type { HealthCheckClaim } from './healthcheck.js';
export {
  IptablesMode,
  compileIptables,
  compileNodeBase,
  compileServicePort,
  portOwner,
  portVariantKey,
  portVariantKeyFn,
  probability,
  totalEndpoints,
} from './iptables/compile.js';
export type { CompileIptablesInput } from './iptables/compile.js';
export { LargeClusterEndpointsThreshold, makeContext, masqueradeMark } from './iptables/context.js';
export type { CompileContext } from './iptables/context.js';
export { Chain, ChainPrefix, endpointChainName, hash16, isServiceChain, serviceChainNames } from './iptables/names.js';
export type { ServiceChainNames } from './iptables/names.js';
export { defaultIptablesOptions, iptablesOptionsFromConfig } from './iptables/options.js';
export type { IptablesOptions } from './iptables/options.js';
export { RestoreFormat, chainRules, renderRestore, renderRestoreBytes, writeRestore } from './iptables/render.js';
export {
  IpvsMode,
  addressOwner,
  compileIpvs,
  compileIpvsAddress,
  compileIpvsNodeBase,
  compileIpvsServicePort,
  ipvsAddressClaims,
  ipvsAddressVariantKeyFn,
  ipvsServiceKey,
  ipvsServicePortParts,
  makeIpvsContext,
  mergeAddressClaims,
} from './ipvs/compile.js';
export type { CompileIpvsInput, IpvsAddressClaim, IpvsContext, IpvsPortPart } from './ipvs/compile.js';
export { DummyInterface, IPSETS, IpsetName, IpsetType, IpvsChain, IpvsFlag, ipsetName } from './ipvs/names.js';
export type { IpsetInfo } from './ipvs/names.js';
export { defaultIpvsOptions, ipvsOptionsFromConfig } from './ipvs/options.js';
export type { IpvsOptions } from './ipvs/options.js';
export {
  ipsetCreateLine,
  ipsetMembers,
  ipvsadmLines,
  renderIpsetRestore,
  renderIpvsRuleSet,
  renderIpvsadm,
} from './ipvs/render.js';
export type { AnyModeCompiler, ModeCompiler, NodeContext, PortPart, UnitClaim, UnitCompiler } from './mode.js';
export { modeCompiler } from './modes.js';
export type { ModeOptions } from './modes.js';
export { RuleKind, Table, objectId, sortObjects } from './ruleset.js';
export type {
  ConntrackPortObject,
  HealthCheckServiceObject,
  IpsetEntriesObject,
  IpsetSetObject,
  IptablesChainObject,
  IptablesJumpObject,
  IptablesObject,
  IptablesRulesObject,
  IpvsAddressObject,
  IpvsRealServer,
  IpvsServiceObject,
  NodeRuleSet,
  RuleObject,
} from './ruleset.js';
export { sameWire, toWire } from './wire.js';
