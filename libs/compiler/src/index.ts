export { NodeNotFoundError } from './errors.js';
export { IptablesMode, compileIptables, compileNodeBase, compileServicePort, portOwner, portVariantKey, portVariantKeyFn, probability, totalEndpoints } from './iptables/compile.js';
export type { CompileIptablesInput } from './iptables/compile.js';
export { LargeClusterEndpointsThreshold, makeContext, masqueradeMark } from './iptables/context.js';
export type { CompileContext } from './iptables/context.js';
export { Chain, ChainPrefix, endpointChainName, hash16, isServiceChain, serviceChainNames } from './iptables/names.js';
export type { ServiceChainNames } from './iptables/names.js';
export { defaultIptablesOptions, iptablesOptionsFromConfig } from './iptables/options.js';
export type { IptablesOptions } from './iptables/options.js';
export { RestoreFormat, chainRules, orderedChains, renderRestore } from './iptables/render.js';
export { RuleKind, Table, objectId, sortObjects } from './ruleset.js';
export type {
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
