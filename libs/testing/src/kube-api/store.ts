// The object store behind the test API server, modelled on etcd as kube-apiserver uses it: one global,
// monotonically increasing resourceVersion (etcd's revision) stamped on every change, and a bounded window of
// past events from which a watch can resume. A watch from a resourceVersion older than that window is
// "expired" (410 Gone) and the client must list again.
import { randomUUID } from 'node:crypto';
import { KubeApiStoreError } from './errors.js';
import { resourceForKind, type ResourceDef } from './resources.js';

export interface KubeApiObjectMeta {
  name?: string;
  namespace?: string;
  resourceVersion?: string;
  uid?: string;
  creationTimestamp?: string;
  [field: string]: unknown;
}

/** A Kubernetes object in its JSON wire form. */
export interface KubeApiObject {
  apiVersion?: string;
  kind?: string;
  metadata?: KubeApiObjectMeta;
  [field: string]: unknown;
}

export const StoreEventType = { Added: 'ADDED', Modified: 'MODIFIED', Deleted: 'DELETED' } as const;
export type StoreEventType = (typeof StoreEventType)[keyof typeof StoreEventType];

export interface StoreEvent {
  readonly resourceVersion: number;
  readonly type: StoreEventType;
  readonly resource: ResourceDef;
  readonly namespace: string;
  /** The object after the change (for DELETED: its last state, with the deletion's resourceVersion). */
  readonly object: KubeApiObject;
}

/** What tests use to change the cluster. Every change gets the next global resourceVersion. */
export interface KubeApiStore {
  /** Creates or replaces an object (kind Service, Node or EndpointSlice); a no-op when nothing but metadata bookkeeping differs. */
  apply(object: KubeApiObject): KubeApiObject;
  /** Deletes an object; returns its last state, or undefined when it did not exist. */
  delete(kind: string, namespace: string | undefined, name: string): KubeApiObject | undefined;
  get(kind: string, namespace: string | undefined, name: string): KubeApiObject | undefined;
  /** Every object of a kind (in one namespace when given), as the API would list them. */
  list(kind: string, namespace?: string): KubeApiObject[];
  /** The current global resourceVersion. */
  readonly resourceVersion: string;
}

export interface ObjectStoreOptions {
  /** Number of past events kept for watches to resume from (default 1000). */
  historyLimit?: number;
  /** The resourceVersion before the first change (default 1000; never "0", which means "any" to the API). */
  initialResourceVersion?: number;
}

const clone = <T>(value: T): T => structuredClone(value);

/** Metadata the server owns: ignored when deciding whether an apply changes anything. */
const ServerOwnedMeta = ['resourceVersion', 'uid', 'creationTimestamp', 'generation', 'managedFields'];

function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function userContent(object: KubeApiObject): string {
  const meta: Record<string, unknown> = { ...object.metadata };
  for (const field of ServerOwnedMeta) delete meta[field];
  return stableJson({ ...object, metadata: meta });
}

/** Seconds precision, as the API server formats timestamps. */
const apiTimestamp = (ms: number): string => new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');

export class ObjectStore implements KubeApiStore {
  private revision: number;
  /** Watches may resume from any resourceVersion >= this (every later event is still in `history`). */
  private oldestResumable: number;
  private history: StoreEvent[] = [];
  private readonly historyLimit: number;
  private readonly objects = new Map<ResourceDef, Map<string, KubeApiObject>>();
  private readonly listeners = new Set<(event: StoreEvent) => void>();

  constructor(options: ObjectStoreOptions = {}) {
    this.revision = options.initialResourceVersion ?? 1000;
    if (!Number.isInteger(this.revision) || this.revision < 1)
      throw new KubeApiStoreError(`initialResourceVersion must be a positive integer, got ${this.revision}`);
    this.oldestResumable = this.revision;
    this.historyLimit = options.historyLimit ?? 1000;
  }

  get resourceVersion(): string {
    return String(this.revision);
  }

  /** The current resourceVersion as a number. */
  get revisionNumber(): number {
    return this.revision;
  }

  /** The oldest resourceVersion a watch may still start from. */
  get oldestResumableRevision(): number {
    return this.oldestResumable;
  }

  apply(object: KubeApiObject): KubeApiObject {
    const resource = this.resourceOf(object.kind);
    const name = object.metadata?.name;
    if (typeof name !== 'string' || name === '') throw new KubeApiStoreError(`${resource.kind} without metadata.name`);
    const namespace = resource.namespaced ? object.metadata?.namespace || 'default' : '';
    const objects = this.objectsOf(resource);
    const key = `${namespace}/${name}`;
    const existing = objects.get(key);
    const next: KubeApiObject = clone(object);
    next.apiVersion = resource.apiVersion;
    next.kind = resource.kind;
    const meta: KubeApiObjectMeta = { ...next.metadata, name };
    if (resource.namespaced) meta.namespace = namespace;
    else delete meta.namespace;
    next.metadata = meta;
    if (existing !== undefined && userContent(existing) === userContent(next)) return clone(existing);
    meta.uid =
      existing?.metadata?.uid ?? (typeof object.metadata?.uid === 'string' ? object.metadata.uid : randomUUID());
    meta.creationTimestamp = existing?.metadata?.creationTimestamp ?? apiTimestamp(Date.now());
    meta.resourceVersion = String(++this.revision);
    objects.set(key, next);
    this.record({ type: existing ? StoreEventType.Modified : StoreEventType.Added, resource, namespace, object: next });
    return clone(next);
  }

  delete(kind: string, namespace: string | undefined, name: string): KubeApiObject | undefined {
    const resource = this.resourceOf(kind);
    const ns = resource.namespaced ? namespace || 'default' : '';
    const objects = this.objectsOf(resource);
    const existing = objects.get(`${ns}/${name}`);
    if (existing === undefined) return undefined;
    objects.delete(`${ns}/${name}`);
    const last = clone(existing);
    last.metadata = { ...last.metadata, resourceVersion: String(++this.revision) };
    this.record({ type: StoreEventType.Deleted, resource, namespace: ns, object: last });
    return clone(last);
  }

  get(kind: string, namespace: string | undefined, name: string): KubeApiObject | undefined {
    const resource = this.resourceOf(kind);
    const ns = resource.namespaced ? namespace || 'default' : '';
    const found = this.objectsOf(resource).get(`${ns}/${name}`);
    return found === undefined ? undefined : clone(found);
  }

  list(kind: string, namespace?: string): KubeApiObject[] {
    return this.listResource(this.resourceOf(kind), namespace);
  }

  /** Objects of a resource in name order (namespace, then name), optionally in one namespace. */
  listResource(resource: ResourceDef, namespace?: string): KubeApiObject[] {
    const out: KubeApiObject[] = [];
    const keys = [...this.objectsOf(resource).keys()].sort();
    for (const key of keys) {
      const obj = this.objectsOf(resource).get(key);
      if (obj === undefined) continue;
      if (namespace !== undefined && obj.metadata?.namespace !== namespace) continue;
      out.push(clone(obj));
    }
    return out;
  }

  /** Events after `revision` (exclusive); undefined when some of them are no longer retained (410 Gone). */
  eventsSince(revision: number): StoreEvent[] | undefined {
    if (revision < this.oldestResumable) return undefined;
    return this.history.filter((e) => e.resourceVersion > revision);
  }

  /** Forgets every past event, like an etcd compaction at the current revision: older watches get 410. */
  compact(): void {
    this.history = [];
    this.oldestResumable = this.revision;
  }

  /** Calls `listener` synchronously for every change; returns the unsubscribe function. */
  subscribe(listener: (event: StoreEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private record(event: Omit<StoreEvent, 'resourceVersion'>): void {
    const stored: StoreEvent = { ...event, object: clone(event.object), resourceVersion: this.revision };
    this.history.push(stored);
    while (this.history.length > this.historyLimit) {
      const dropped = this.history.shift();
      if (dropped !== undefined) this.oldestResumable = dropped.resourceVersion;
    }
    for (const listener of [...this.listeners]) listener(stored);
  }

  private resourceOf(kind: string | undefined): ResourceDef {
    const resource = kind === undefined ? undefined : resourceForKind(kind);
    if (resource === undefined)
      throw new KubeApiStoreError(`kind ${JSON.stringify(kind)} is not served (Service, Node, EndpointSlice)`);
    return resource;
  }

  private objectsOf(resource: ResourceDef): Map<string, KubeApiObject> {
    let objects = this.objects.get(resource);
    if (objects === undefined) {
      objects = new Map();
      this.objects.set(resource, objects);
    }
    return objects;
  }
}
