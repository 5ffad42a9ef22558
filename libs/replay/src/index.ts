// @kpx/replay: a node's rule set at any retained generation, and the steps between two, from JetStream alone.
export { OutsideRetentionError, ReplayError } from './errors.js';
export { followDeltas, replaySteps, replayTo } from './replay.js';
export type { ObjectChange, ReplayOptions, ReplayStep, ReplayedState, SkippedMessage } from './replay.js';
