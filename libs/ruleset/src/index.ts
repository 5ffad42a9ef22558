export { Digest, digestOf, formatDigest, objectHash } from './digest.js';
export { DigestMismatchError, RuleSetError } from './errors.js';
export { RuleState, applyChange, diffStates, hashed, objectIdOf, refOfId, undoChange } from './state.js';
export type { HashedObject, KeyedObjects, ObjectChanges, StateDelta, UndoToken } from './state.js';
export { fromWire, toWire } from './wire.js';
export { FamilyStates, iptablesModeCompiler, ipvsModeCompiler, modeCompiler } from './node-states.js';
export type { FamilyStatesOptions, Layer, ModeCompiler, NodeChange, NodeContext, SyncInput, UnitClaim } from './node-states.js';
