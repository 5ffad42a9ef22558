// Reading Kubernetes manifests: YAML (multi-document) or JSON files, `kind: List` expanded. The one loader of
// kpx: `kpx render`, the controller's manifests-directory source and the Kubernetes source's object conversion
// all go through it, so they accept the same objects and report the same diagnostics.
//
// Nothing in a file takes the others down: a file that cannot be read or parsed, a document nested too deep, a
// self-referencing alias or an alias bomb is skipped with a diagnostic naming the file (and document), and every
// other file still loads. Files are read the way Kubernetes mounts a ConfigMap: the entries directly in the
// directory, symlinks followed (a loop is a diagnostic), hidden entries (`..data`, `..2026_…`) not read.
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { ManifestError } from './errors.js';
import { FileKind, Severity, type Diagnostic } from './diagnostics.js';
import { ClusterState } from './cluster.js';
import { Kind, type KubeObject } from './k8s.js';
import { objectRefOf } from './meta.js';
import { convertEndpointSlice } from './endpoints.js';
import { convertNode } from './node.js';
import { convertService } from './service.js';
import { isPlainObject, show } from './validation.js';
import { loadBlockYaml } from './yaml-fast.js';

export interface ManifestObject {
  readonly object: KubeObject;
  /** `file` or `file#N` for the N-th document / list item. */
  readonly source: string;
}

export interface ParsedManifests {
  readonly objects: ManifestObject[];
  /** Problems of the file or of whole documents (an object's own problems come from {@link checkObject}). */
  readonly diagnostics: Diagnostic[];
}

export interface ManifestLimits {
  /** A larger file is not read (default 256 MiB). */
  readonly maxFileBytes: number;
  /** Deepest nesting of arrays and maps in a document (default 100; kube objects need about 15). */
  readonly maxDepth: number;
  /**
   * Values a file may expand to, aliases expanded, beyond one per character of its text (default 100,000):
   * a file without aliases never comes near it, an alias bomb (billion laughs) does at once.
   */
  readonly maxAliasExpansion: number;
}

export const DefaultManifestLimits: ManifestLimits = Object.freeze({
  maxFileBytes: 256 * 1024 * 1024,
  maxDepth: 100,
  maxAliasExpansion: 100_000,
});

function fileDiagnostic(source: string, message: string, severity: Severity = Severity.Error): Diagnostic {
  return { severity, object: { kind: FileKind, name: source }, field: '', message, source };
}

function expand(value: unknown, source: string, out: ManifestObject[]): void {
  if (!isPlainObject(value)) return;
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
 * JSON.parse is much faster than a YAML parser on a large `kind: List` file, and on every text it accepts it
 * agrees with the YAML parser but for duplicate keys: JSON.parse keeps the last one where the YAML parser
 * reports an error. So the members written in the text are counted (every ':' outside strings; inside strings a
 * ':' stays a ':' once decoded, unless written as a \u003a escape, in which case the count is not trusted) and
 * compared with the keys parsed: a text with fewer keys than members goes to the YAML parser, which gives the
 * same error as before. The same walk measures the nesting depth.
 */
function parseJsonExactly(text: string): { value: unknown; depth: number } | undefined {
  if (!/^[ \t\r\n]*[[{]/.test(text) || /\\u003a/i.test(text)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  let keys = 0;
  let colonsInStrings = 0;
  let depth = 0;
  const stack: unknown[] = [value];
  const depths: number[] = [0];
  while (stack.length > 0) {
    const v = stack.pop();
    const d = depths.pop() ?? 0;
    if (typeof v === 'string') colonsInStrings = colonsIn(v, colonsInStrings);
    else if (Array.isArray(v)) {
      if (d + 1 > depth) depth = d + 1;
      for (const item of v) {
        stack.push(item);
        depths.push(d + 1);
      }
    } else if (typeof v === 'object' && v !== null) {
      if (d + 1 > depth) depth = d + 1;
      const o = v as Record<string, unknown>;
      for (const k of Object.keys(o)) {
        keys++;
        colonsInStrings = colonsIn(k, colonsInStrings);
        stack.push(o[k]);
        depths.push(d + 1);
      }
    }
  }
  return colonsIn(text, 0) - colonsInStrings === keys ? { value, depth } : undefined;
}

/** What is wrong with a parsed YAML document as a whole: a cycle, too deep, too many values; undefined when fine. */
interface WalkBudget {
  nodes: number;
}

function checkYamlDocument(
  doc: unknown,
  limits: ManifestLimits,
  budget: WalkBudget,
  mergeKeys: string[],
): string | undefined {
  // Iterative depth-first walk: `path` holds the containers from the root to the current one (a cycle is a
  // container that is its own ancestor: a self-referencing alias). Shared containers (aliases) are walked once
  // per reference, which is what their expansion costs any consumer: that is what the budget counts.
  const path = new Set<object>();
  const stack: { v: unknown; depth: number; exit?: object; at: string }[] = [{ v: doc, depth: 0, at: '' }];
  while (stack.length > 0) {
    const top = stack.pop();
    if (top === undefined) break;
    if (top.exit !== undefined) {
      path.delete(top.exit);
      continue;
    }
    const { v, depth, at } = top;
    if (--budget.nodes < 0)
      return `aliases expand to more values than the limit (${limits.maxAliasExpansion} beyond the file's size): an alias bomb?`;
    if (typeof v !== 'object' || v === null) continue;
    if (path.has(v)) return `${at || 'the document'} refers to itself (a self-referencing alias)`;
    if (depth + 1 > limits.maxDepth) return `nested deeper than ${limits.maxDepth} levels at ${at || 'the top'}`;
    path.add(v);
    stack.push({ v: undefined, depth, exit: v, at });
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ v: v[i] as unknown, depth: depth + 1, at: `${at}[${i}]` });
    } else {
      const o = v as Record<string, unknown>;
      const keys = Object.keys(o);
      for (let i = keys.length - 1; i >= 0; i--) {
        const k = keys[i] ?? '';
        const f = at ? `${at}.${k}` : k;
        if (k === '<<' && mergeKeys.length < 10) mergeKeys.push(f);
        stack.push({ v: o[k], depth: depth + 1, at: f });
      }
    }
  }
  return undefined;
}

/** A parser's error as one printable line (its message may quote the text it choked on). */
function yamlError(err: unknown): string {
  let m: string;
  if (err instanceof yaml.YAMLException) m = err.message.split('\n')[0] ?? err.message;
  else if (err instanceof RangeError) m = `too deeply nested to parse (${err.message})`;
  else m = err instanceof Error ? err.message : String(err);
  return m.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).slice(0, 300);
}

/**
 * Parses one manifest file's text. Never throws: a text that is not YAML/JSON, or a document over a limit, is a
 * diagnostic naming the file (and the document); every other document's objects are returned.
 */
export function parseManifestText(
  text: string,
  source: string,
  limits: ManifestLimits = DefaultManifestLimits,
): ParsedManifests {
  const objects: ManifestObject[] = [];
  const diagnostics: Diagnostic[] = [];
  if (text.length > limits.maxFileBytes) {
    diagnostics.push(
      fileDiagnostic(source, `${text.length} bytes: larger than the limit of ${limits.maxFileBytes}; file skipped`),
    );
    return { objects, diagnostics };
  }
  const json = parseJsonExactly(text);
  if (json !== undefined) {
    if (json.depth > limits.maxDepth)
      diagnostics.push(
        fileDiagnostic(
          source,
          `nested ${json.depth} levels deep, deeper than the limit of ${limits.maxDepth}; file skipped`,
        ),
      );
    else expand(json.value, source, objects);
    return { objects, diagnostics };
  }
  // Block YAML as tools write it: the fast reader (what js-yaml would give, or undefined); anything else: js-yaml.
  // Nesting stays within maxDepth: each level of the fast reader's input is indented by at least one more space.
  let docs: unknown[] | undefined = loadBlockYaml(text, { maxIndent: Math.floor(limits.maxDepth / 2) });
  if (docs === undefined) {
    try {
      // The core schema: YAML 1.2 scalars, what the API server's YAML reader gives for a manifest (no
      // timestamps, no binary, no merge keys: a `<<` key is reported below).
      docs = yaml.loadAll(text, undefined, { schema: yaml.CORE_SCHEMA, maxDepth: limits.maxDepth } as yaml.LoadOptions);
    } catch (err) {
      diagnostics.push(fileDiagnostic(source, `not valid YAML or JSON: ${yamlError(err)}; file skipped`));
      return { objects, diagnostics };
    }
  }
  const budget: WalkBudget = { nodes: text.length + limits.maxAliasExpansion };
  // Without an anchor there is no alias (so no cycle, no expansion beyond the text, and js-yaml's maxDepth
  // bounded the nesting), and without '<<' no merge key: the walk is needed only when the text holds one.
  const walk = text.includes('&') || text.includes('<<');
  docs.forEach((doc, i) => {
    const where = docs.length > 1 ? `${source}#${i + 1}` : source;
    const mergeKeys: string[] = [];
    const bad = walk ? checkYamlDocument(doc, limits, budget, mergeKeys) : undefined;
    if (bad !== undefined) {
      diagnostics.push(fileDiagnostic(where, `${bad}; document skipped`));
      return;
    }
    if (mergeKeys.length > 0) {
      diagnostics.push(
        fileDiagnostic(
          where,
          `YAML merge keys (<<) are not supported (at ${mergeKeys.join(', ')}): write the fields out; document skipped`,
        ),
      );
      return;
    }
    expand(doc, where, objects);
  });
  return { objects, diagnostics };
}

/** Parses one manifest file's text; throws ManifestError on the first problem (tests, tools that want all or nothing). */
export function parseManifests(
  text: string,
  source: string,
  limits: ManifestLimits = DefaultManifestLimits,
): ManifestObject[] {
  const { objects, diagnostics } = parseManifestText(text, source, limits);
  const err = diagnostics.find((d) => d.severity === Severity.Error);
  if (err !== undefined) throw new ManifestError(`${err.source ?? source}: ${err.message}`);
  return objects;
}

const MANIFEST_FILE = /\.(ya?ml|json)$/i;

export interface ManifestFile {
  /** The name in the directory. */
  readonly name: string;
  /** `dir/name`: what diagnostics call the file. */
  readonly path: string;
  /** The file it names, symlinks resolved. */
  readonly realPath: string;
  readonly size: number;
  readonly mtimeMs: number;
}

export interface ManifestFileList {
  readonly files: ManifestFile[];
  readonly diagnostics: Diagnostic[];
}

/**
 * The manifest files directly in `dir`, in name order: regular files and symlinks to regular files whose name
 * ends in .yaml, .yml or .json. Hidden entries are skipped: a ConfigMap volume holds its files in a hidden
 * timestamped directory (`..2026_…`) behind a `..data` symlink, and shows each as a symlink `name -> ..data/name`,
 * so each file is read once, by its own name. Two names for one file (same real path) are read once. A broken
 * symlink or a symlink loop is a diagnostic. Throws ManifestError when the directory cannot be read.
 */
export async function listManifestFiles(dir: string): Promise<ManifestFileList> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (cause) {
    throw new ManifestError(`cannot read manifest directory ${dir}: ${(cause as Error).message}`, { cause });
  }
  const files: ManifestFile[] = [];
  const diagnostics: Diagnostic[] = [];
  const seen = new Map<string, string>();
  const names = entries
    .filter((d) => !d.name.startsWith('.') && MANIFEST_FILE.test(d.name) && (d.isFile() || d.isSymbolicLink()))
    .map((d) => d.name);
  for (const name of names.sort()) {
    const path = join(dir, name);
    let st;
    let real;
    try {
      // stat follows symlinks, and fails with ELOOP on a loop: the kernel's own loop guard.
      st = await stat(path);
      real = await realpath(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT')
        diagnostics.push(fileDiagnostic(path, 'a symlink to nothing (dangling); skipped', Severity.Warning));
      else
        diagnostics.push(
          fileDiagnostic(
            path,
            `cannot be read: ${code === 'ELOOP' ? 'a symlink loop' : (err as Error).message}; skipped`,
          ),
        );
      continue;
    }
    if (!st.isFile()) continue;
    const first = seen.get(real);
    if (first !== undefined) {
      diagnostics.push(fileDiagnostic(path, `is the same file as ${first}; read once`, Severity.Warning));
      continue;
    }
    seen.set(real, path);
    files.push({ name, path, realPath: real, size: st.size, mtimeMs: st.mtimeMs });
  }
  return { files, diagnostics };
}

/** Reads and parses one manifest file; never throws (an unreadable file is a diagnostic). */
export async function readManifestFile(
  path: string,
  limits: ManifestLimits = DefaultManifestLimits,
): Promise<ParsedManifests> {
  try {
    const st = await stat(path);
    if (st.size > limits.maxFileBytes)
      return {
        objects: [],
        diagnostics: [
          fileDiagnostic(path, `${st.size} bytes: larger than the limit of ${limits.maxFileBytes}; file skipped`),
        ],
      };
    return parseManifestText(await readFile(path, 'utf8'), path, limits);
  } catch (err) {
    return { objects: [], diagnostics: [fileDiagnostic(path, `cannot be read: ${(err as Error).message}; skipped`)] };
  }
}

/**
 * Reads every manifest file of `dir` ({@link listManifestFiles}). A file that cannot be read or parsed is a
 * diagnostic; the others' objects are returned. Throws ManifestError only when the directory cannot be read.
 */
export async function readManifests(
  dir: string,
  limits: ManifestLimits = DefaultManifestLimits,
): Promise<ParsedManifests> {
  const { files, diagnostics } = await listManifestFiles(dir);
  const objects: ManifestObject[] = [];
  for (const f of files) {
    const parsed = await readManifestFile(f.path, limits);
    for (const o of parsed.objects) objects.push(o);
    diagnostics.push(...parsed.diagnostics);
  }
  return { objects, diagnostics };
}

/** {@link readManifests}, all or nothing: throws ManifestError on the first file that cannot be read or parsed. */
export async function readManifestDir(
  dir: string,
  limits: ManifestLimits = DefaultManifestLimits,
): Promise<ManifestObject[]> {
  const { objects, diagnostics } = await readManifests(dir, limits);
  const err = diagnostics.find((d) => d.severity === Severity.Error);
  if (err !== undefined) throw new ManifestError(`${err.source ?? dir}: ${err.message}`);
  return objects;
}

const EXPECTED_API: Record<string, string> = { Service: 'v1', Node: 'v1', EndpointSlice: 'discovery.k8s.io/v1' };

export interface AdmittedObject {
  /** The kind kpx reads, when the object is one of them with the right apiVersion; undefined otherwise. */
  readonly kind?: Kind;
  readonly diagnostics: Diagnostic[];
}

/**
 * Which of the kinds kpx reads an object is. Other kinds are ignored (v1 Endpoints with a warning: kube-proxy
 * reads EndpointSlices only); a kind kpx reads with another apiVersion is an error.
 */
export function admitObject(object: unknown, source?: string): AdmittedObject {
  const src = source !== undefined ? { source } : {};
  if (!isPlainObject(object))
    return {
      diagnostics: [
        {
          severity: Severity.Error,
          object: { kind: '<no kind>', name: '<unnamed>' },
          field: '',
          message: `must be an object, not ${show(object)}`,
          ...src,
        },
      ],
    };
  const kind = typeof object.kind === 'string' ? object.kind : '';
  const ref = objectRefOf(kind === '' ? '<no kind>' : show(kind).slice(1, -1), object, kind !== 'Node');
  if (kind === 'Endpoints') {
    return {
      diagnostics: [
        {
          severity: Severity.Warning,
          object: ref,
          field: 'kind',
          message: 'v1 Endpoints are ignored: kube-proxy (and kpx) read discovery.k8s.io/v1 EndpointSlices',
          ...src,
        },
      ],
    };
  }
  const expected = EXPECTED_API[kind];
  if (expected === undefined) return { diagnostics: [] };
  if (object.apiVersion !== expected) {
    return {
      diagnostics: [
        {
          severity: Severity.Error,
          object: ref,
          field: 'apiVersion',
          message: `${show(object.apiVersion)} is not supported for ${kind}: use ${expected}`,
          ...src,
        },
      ],
    };
  }
  return { kind: kind as Kind, diagnostics: [] };
}

export interface CheckedObject extends AdmittedObject {
  /** True when the object is one kpx reads and is valid: it goes into the cluster state. */
  readonly ok: boolean;
}

/**
 * Everything kpx checks of one object on its own, with the diagnostics a ClusterState would give it: its kind
 * and apiVersion, then the API server's validation of the fields kpx uses. (Conflicts between objects are the
 * ClusterState's to find.)
 */
export function checkObject(object: unknown, source?: string): CheckedObject {
  const admitted = admitObject(object, source);
  if (admitted.kind === undefined) return { ...admitted, ok: false };
  const opts = source !== undefined ? { source } : {};
  const o = object as KubeObject;
  const diagnostics =
    admitted.kind === Kind.Service
      ? convertService(o, opts).diagnostics
      : admitted.kind === Kind.EndpointSlice
        ? convertEndpointSlice(o, opts).diagnostics
        : convertNode(o, opts).diagnostics;
  return { kind: admitted.kind, diagnostics, ok: !diagnostics.some((d) => d.severity === Severity.Error) };
}

/**
 * Loads manifest objects into a ClusterState. Kinds kpx does not read are ignored (v1 Endpoints with a
 * warning: kube-proxy reads EndpointSlices only). Returns the diagnostics of the objects read.
 */
export function loadClusterState(
  objects: readonly ManifestObject[],
  state = new ClusterState(),
): { state: ClusterState; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const seen = new Map<string, string>();
  for (const { object, source } of objects) {
    const admitted = admitObject(object, source);
    diagnostics.push(...admitted.diagnostics);
    const kind = admitted.kind;
    if (kind === undefined) continue;
    const ref = objectRefOf(kind, object, kind !== Kind.Node);
    const id = `${kind}/${ref.namespace ?? ''}/${ref.name}`;
    const earlier = seen.get(id);
    if (earlier !== undefined) {
      diagnostics.push({
        severity: 'warning',
        object: ref,
        field: 'metadata.name',
        message: `also defined in ${earlier}; this later definition wins`,
        source,
      });
    }
    seen.set(id, source);
    if (kind === Kind.Service) state.upsertService(object, { source });
    else if (kind === Kind.EndpointSlice) state.upsertEndpointSlice(object, { source });
    else state.upsertNode(object, { source });
  }
  diagnostics.push(...state.diagnostics());
  return { state, diagnostics };
}
