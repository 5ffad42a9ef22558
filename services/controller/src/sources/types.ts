// What a source of cluster objects delivers to the controller: the Kubernetes API (informers) or a
// directory of manifests. Objects are in their JSON wire form (camelCase), as @kpx/model reads them.
import type { KubeObject } from '@kpx/model';

export const ObjectKind = { Service: 'Service', EndpointSlice: 'EndpointSlice', Node: 'Node' } as const;
export type ObjectKind = (typeof ObjectKind)[keyof typeof ObjectKind];

export const EventType = { Upsert: 'upsert', Delete: 'delete' } as const;
export type EventType = (typeof EventType)[keyof typeof EventType];

export interface SourceEvent {
  readonly kind: ObjectKind;
  readonly type: EventType;
  /** The object (for a delete: its last known state). */
  readonly object: KubeObject;
  /** When the source saw the change (ms since the epoch): the trigger time of whatever it causes. */
  readonly observedAt: number;
  /** Where the object came from (a file, `file#N`), for diagnostics; absent for API objects. */
  readonly source?: string;
}

export interface SourceHandler {
  onEvent(event: SourceEvent): void;
  /** Called once the initial state of every kind has been delivered (informers synced, files read). */
  onSynced(): void;
  /** A problem the source recovers from by itself (watch restarted, relist, unreadable file). */
  onWarning?(message: string, err?: unknown): void;
}

export interface Source {
  /** Starts delivering events; resolves once started (not once synced). */
  start(handler: SourceHandler): Promise<void>;
  stop(): Promise<void>;
}
