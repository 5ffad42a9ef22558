export { Digest, digestOf, formatDigest, objectHash } from './digest.js';
export { RuleSetError } from './errors.js';
export { RuleState, diffStates, hashed, objectIdOf } from './state.js';
export type { HashedObject, ObjectChanges } from './state.js';
