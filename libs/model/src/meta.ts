// What every object kpx reads must satisfy before its spec is looked at: a JSON object with a well-formed
// name, namespace and labels, as the API server validates ObjectMeta. Shared by the Service, EndpointSlice and
// Node conversions, so that every loader rejects the same objects with the same diagnostics.
import type { DiagnosticSink, ObjectRef } from './diagnostics.js';
import { canonicalIP, isSloppyIPv4 } from './ip.js';
import { checkDNS1123Label, checkLabelValue, checkQualifiedName, isPlainObject, refName, show } from './validation.js';

/** The reference a diagnostic names an object by, printable whatever the object holds. */
export function objectRefOf(kind: string, obj: unknown, namespaced: boolean): ObjectRef {
  const meta = isPlainObject(obj) && isPlainObject(obj.metadata) ? obj.metadata : {};
  const name = refName(meta.name);
  if (!namespaced) return { kind, name };
  const ns =
    meta.namespace === undefined || meta.namespace === null || meta.namespace === ''
      ? 'default'
      : refName(meta.namespace);
  return { kind, namespace: ns, name };
}

export interface MetaOptions {
  /** The check of metadata.name for this kind (DNS-1035 label for Services, DNS-1123 subdomain otherwise). */
  readonly checkName: (v: unknown) => string | undefined;
  readonly namespaced: boolean;
}

/**
 * Checks the object's shape and metadata; errors go to `sink`. Returns the object's name and namespace when they
 * are usable ('default' for a namespaced object without one), undefined when the object cannot be read at all.
 */
export function checkObjectMeta(
  sink: DiagnosticSink,
  obj: unknown,
  opts: MetaOptions,
): { name: string; namespace: string } | undefined {
  if (!isPlainObject(obj)) {
    sink.error('', `must be an object, not ${show(obj)}`);
    return undefined;
  }
  const meta = obj.metadata;
  if (!isPlainObject(meta)) {
    sink.error(
      'metadata',
      meta === undefined || meta === null ? 'is required' : `must be an object, not ${show(meta)}`,
    );
    return undefined;
  }
  let ok = true;
  if (meta.name === undefined || meta.name === null || meta.name === '') {
    sink.error('metadata.name', 'is required');
    ok = false;
  } else {
    const bad = opts.checkName(meta.name);
    if (bad !== undefined) {
      sink.error('metadata.name', bad);
      ok = false;
    }
  }
  let namespace = 'default';
  if (opts.namespaced && meta.namespace !== undefined && meta.namespace !== null && meta.namespace !== '') {
    const bad = checkDNS1123Label(meta.namespace);
    if (bad !== undefined) {
      sink.error('metadata.namespace', bad);
      ok = false;
    } else namespace = meta.namespace as string;
  }
  if (meta.resourceVersion !== undefined && typeof meta.resourceVersion !== 'string')
    sink.error('metadata.resourceVersion', `must be a string, not ${show(meta.resourceVersion)}`);
  checkStringMap(sink, 'metadata.labels', meta.labels, true);
  checkStringMap(sink, 'metadata.annotations', meta.annotations, false);
  return ok ? { name: meta.name as string, namespace } : undefined;
}

function checkStringMap(sink: DiagnosticSink, field: string, v: unknown, labels: boolean): void {
  if (v === undefined || v === null) return;
  if (!isPlainObject(v)) {
    sink.error(field, `must be a map of strings, not ${show(v)}`);
    return;
  }
  for (const [k, val] of Object.entries(v)) {
    const f = `${field}[${show(k)}]`;
    const badKey = checkQualifiedName(k);
    if (badKey !== undefined) sink.error(f, `key ${badKey}`);
    else if (labels) {
      const bad = checkLabelValue(val);
      if (bad !== undefined) sink.error(f, bad);
    } else if (typeof val !== 'string') sink.error(f, `must be a string, not ${show(val)}`);
  }
}

/**
 * An IP address field: the canonical address, or undefined with an error. A dotted quad with leading zeros is
 * read as kube-proxy reads it (decimal), with a warning naming the address that is programmed.
 */
export function checkIP(sink: DiagnosticSink, field: string, raw: unknown): string | undefined {
  const ip = typeof raw === 'string' && raw.trim() === raw ? canonicalIP(raw) : undefined;
  if (ip === undefined) {
    sink.error(field, `${show(raw)} is not a valid IP address`);
    return undefined;
  }
  if (isSloppyIPv4(raw as string))
    sink.warn(
      field,
      `${show(raw)} has leading zeros: read as decimal, as kube-proxy's ParseIPSloppy does, and programmed as ${ip}`,
    );
  return ip;
}
