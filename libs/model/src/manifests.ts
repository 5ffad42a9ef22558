// Reading Kubernetes manifests: YAML (multi-document) or JSON files, `kind: List` expanded.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ManifestError } from './errors.js';
import type { Diagnostic } from './diagnostics.js';
import { ClusterState } from './cluster.js';
import type { KubeObject } from './k8s.js';

export interface ManifestObject {
  readonly object: KubeObject;
  /** `file` or `file#N` for the N-th document / list item. */
  readonly source: string;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function expand(value: unknown, source: string, out: ManifestObject[]): void {
  if (!isObject(value)) return;
  if (typeof value.kind === 'string' && value.kind.endsWith('List') && Array.isArray(value.items)) {
    value.items.forEach((item, i) => expand(item, `${source}#items[${i}]`, out));
    return;
  }
  out.push({ object: value, source });
}

/** Adds the number of ':' characters in `s` to `n`. */
function colonsIn(s: string, n: number): number {
  for (let i = s.indexOf(':'); i >= 0; i = s.indexOf(':', i + 1)) n++;
  return n;
}

/**
 * The value of a JSON text, when JSON.parse gives exactly what the YAML parser would; undefined otherwise.
 *
 * JSON.parse is some 70 times faster than the YAML parser on a large `kind: List` file, and on every text it
 * accepts it agrees with the YAML parser but for duplicate keys: JSON.parse keeps the last one where the YAML
 * parser reports an error. So the members written in the text are counted (every ':' outside strings; inside
 * strings a ':' stays a ':' once decoded, unless written as a \u003a escape, in which case the count is not
 * trusted) and compared with the keys parsed: a text with fewer keys than members goes to the YAML parser,
 * which gives the same error as before.
 */
function parseJsonExactly(text: string): { value: unknown } | undefined {
  if (!/^[ \t\r\n]*[[{]/.test(text) || /\\u003a/i.test(text)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  let keys = 0;
  let colonsInStrings = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') colonsInStrings = colonsIn(v, colonsInStrings);
    else if (Array.isArray(v)) for (const item of v) stack.push(item);
    else if (typeof v === 'object' && v !== null) {
      const o = v as Record<string, unknown>;
      for (const k of Object.keys(o)) {
        keys++;
        colonsInStrings = colonsIn(k, colonsInStrings);
        stack.push(o[k]);
      }
    }
  }
  return colonsIn(text, 0) - colonsInStrings === keys ? { value } : undefined;
}

/** Parses one manifest file's text. Throws ManifestError (with line information) when it is not YAML/JSON. */
export function parseManifests(text: string, source: string): ManifestObject[] {
  const out: ManifestObject[] = [];
  const json = parseJsonExactly(text);
  if (json !== undefined) {
    expand(json.value, source, out);
    return out;
  }
  const docs = parseAllDocuments(text, { prettyErrors: true });
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    const err = doc.errors[0];
    if (err) throw new ManifestError(`${source}: document ${i + 1}: ${err.message}`, { cause: err });
    expand(doc.toJS(), list.length > 1 ? `${source}#${i + 1}` : source, out);
  });
  return out;
}

const MANIFEST_FILE = /\.(ya?ml|json)$/i;

/** Reads every *.yaml, *.yml and *.json file directly in `dir`, in name order. */
export async function readManifestDir(dir: string): Promise<ManifestObject[]> {
  let names: string[];
  try {
    names = (await readdir(dir, { withFileTypes: true })).filter((d) => d.isFile() && MANIFEST_FILE.test(d.name)).map((d) => d.name);
  } catch (cause) {
    throw new ManifestError(`cannot read manifest directory ${dir}: ${(cause as Error).message}`, { cause });
  }
  const out: ManifestObject[] = [];
  for (const name of names.sort()) {
    const path = join(dir, name);
    out.push(...parseManifests(await readFile(path, 'utf8'), path));
  }
  return out;
}

const EXPECTED_API: Record<string, string> = { Service: 'v1', Node: 'v1', EndpointSlice: 'discovery.k8s.io/v1' };

/**
 * Loads manifest objects into a ClusterState. Kinds kpx does not read are ignored (v1 Endpoints with a
 * warning: kube-proxy reads EndpointSlices only). Returns the diagnostics of the objects read.
 */
export function loadClusterState(objects: readonly ManifestObject[], state = new ClusterState()): { state: ClusterState; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const seen = new Map<string, string>();
  for (const { object, source } of objects) {
    const kind = object.kind ?? '';
    const expected = EXPECTED_API[kind];
    const ref = { kind: kind || '<no kind>', name: object.metadata?.name ?? '<unnamed>', ...(object.metadata?.namespace ? { namespace: object.metadata.namespace } : {}) };
    if (kind === 'Endpoints') {
      diagnostics.push({ severity: 'warning', object: ref, field: 'kind', message: 'v1 Endpoints are ignored: kube-proxy (and kpx) read discovery.k8s.io/v1 EndpointSlices', source });
      continue;
    }
    if (expected === undefined) continue;
    if (object.apiVersion !== expected) {
      diagnostics.push({ severity: 'error', object: ref, field: 'apiVersion', message: `${JSON.stringify(object.apiVersion)} is not supported for ${kind}: use ${expected}`, source });
      continue;
    }
    const id = `${kind}/${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
    const earlier = seen.get(id);
    if (earlier !== undefined) {
      diagnostics.push({ severity: 'warning', object: ref, field: 'metadata.name', message: `also defined in ${earlier}; this later definition wins`, source });
    }
    seen.set(id, source);
    if (kind === 'Service') diagnostics.push(...state.upsertService(object, { source }));
    else if (kind === 'EndpointSlice') diagnostics.push(...state.upsertEndpointSlice(object, { source }));
    else diagnostics.push(...state.upsertNode(object, { source }));
  }
  return { state, diagnostics };
}
