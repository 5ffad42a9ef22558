export { Digest, digestOf, formatDigest, objectHash } from './digest.js';
export { DigestMismatchError, RuleSetError } from './errors.js';
export { RuleState, applyChange, diffStates, hashed, objectIdOf, refOfId, undoChange } from './state.js';
export type { HashedObject, KeyedObjects, ObjectChanges, StateDelta, UndoToken } from './state.js';
