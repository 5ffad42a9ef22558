export { FamilyStates } from './node-states.js';
export type { FamilyStatesOptions, Layer, NodeChange, SyncInput } from './node-states.js';
