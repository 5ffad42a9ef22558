// A controller source fed by the test (shared by the controller's NATS tests).
import type { KubeObject } from '@kpx/model';
import type { Source, SourceHandler } from '../src/index.js';

/** Delivers `initial` then synced on start; `upsert` delivers one more object. */
export class ScriptedSource implements Source {
  handler: SourceHandler | undefined;
  constructor(private readonly initial: KubeObject[]) {}
  start(handler: SourceHandler): Promise<void> {
    this.handler = handler;
    for (const object of this.initial)
      handler.onEvent({ kind: object.kind as 'Service', type: 'upsert', object, observedAt: Date.now() });
    handler.onSynced();
    return Promise.resolve();
  }
  upsert(object: KubeObject): void {
    this.handler?.onEvent({ kind: object.kind as 'Service', type: 'upsert', object, observedAt: Date.now() });
  }
  stop(): Promise<void> {
    return Promise.resolve();
  }
}
