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

/** Parses one manifest file's text. Throws ManifestError (with line information) when it is not YAML/JSON. */
export function parseManifests(text: string, source: string): ManifestObject[] {
  const out: ManifestObject[] = [];
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
