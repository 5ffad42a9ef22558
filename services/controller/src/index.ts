export { ControllerPipeline } from './pipeline.js';
export type { PipelineLogger, PipelineMetrics, PipelineOptions } from './pipeline.js';
export { MemoryGenerationStore } from './ports.js';
export type { DeltaSink, GenerationStore, PublishedHead, PublishedHeads, SnapshotSink } from './ports.js';
export { CoalescingRunner } from './runner.js';
export { EventType, ObjectKind } from './sources/types.js';
export type { Source, SourceEvent, SourceHandler } from './sources/types.js';
export { ConvergenceTracker } from './tracker.js';
