// What a standby controller keeps of its source: the newest version of every object, nothing else (bounded by the
// cluster's size, not by how long it stands by). Nothing is compiled; on taking over, the objects go to the
// pipeline in one go, as a source's initial list would, and the first sync compiles them.
import { EventType, type ObjectKind, type SourceEvent } from './sources/types.js';

export class StandbyBuffer {
  private readonly objects = new Map<string, SourceEvent>();

  /** The newest event of each object; a delete forgets it (the pipeline never saw it). */
  add(e: SourceEvent): void {
    const key = StandbyBuffer.key(e.kind, e.object.metadata?.namespace ?? '', e.object.metadata?.name ?? '');
    if (e.type === EventType.Delete) this.objects.delete(key);
    else this.objects.set(key, e);
  }

  get size(): number {
    return this.objects.size;
  }

  /** Hands every object over, oldest change first, and empties the buffer. */
  drain(onEvent: (e: SourceEvent) => void): void {
    const events = [...this.objects.values()].sort((a, b) => a.observedAt - b.observedAt);
    this.objects.clear();
    for (const e of events) onEvent(e);
  }

  private static key(kind: ObjectKind, namespace: string, name: string): string {
    return `${kind}/${namespace}/${name}`;
  }
}
