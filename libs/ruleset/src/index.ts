export { Digest, digestOf, formatDigest, objectHash } from './digest.js';
export { RuleSetError } from './errors.js';
export { RuleState, diffStates, hashed, objectIdOf } from './state.js';
export type { HashedObject, ObjectChanges } from './state.js';
export { fromWire, toWire } from './wire.js';
export { FamilyStates, iptablesModeCompiler, ipvsModeCompiler, modeCompiler } from './node-states.js';
export type { FamilyStatesOptions, Layer, ModeCompiler, NodeChange, NodeContext, SyncInput, UnitClaim } from './node-states.js';
