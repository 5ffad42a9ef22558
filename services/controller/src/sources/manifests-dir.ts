// Cluster objects from a directory of manifests (the embedded default): every *.yaml, *.yml and *.json file
// directly in the directory, watched for changes. Files are listed, read and checked by @kpx/model's loader,
// the one `kpx render` uses: symlinks followed (a ConfigMap volume's `name -> ..data/name`; hidden entries are
// not read), and the same objects accepted with the same diagnostics. An invalid object is reported (naming
// file, object and field) and not delivered; a file over a limit or with a self-referencing alias is reported
// and the other files are delivered as usual.
//
// Changes are found by fs.watch (debounced) and, because fs.watch can miss events (editors that write a temporary
// file and rename it, network file systems), by a periodic rescan as well. A rescan stats every manifest file and
// re-reads only those whose size or mtime changed, so an idle directory costs one readdir and a stat per file.
// A file that cannot be read or parsed is reported and keeps its previous objects: a half-written file never
// deletes what was already applied. A removed file removes its objects.
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import {
  Severity,
  checkObject,
  formatDiagnostic,
  listManifestFiles,
  readManifestFile,
  type KubeObject,
  type ManifestObject,
} from '@kpx/model';
import { EventType, ObjectKind, type Source, type SourceHandler } from './types.js';

export interface ManifestsDirSourceOptions {
  readonly dir: string;
  /** Quiet time after a file system event before the directory is rescanned (default 100 ms). */
  readonly debounceMs?: number;
  /** Rescan period, a safety net for missed fs events (default 2 s; 0 disables). */
  readonly rescanMs?: number;
}

const KINDS = new Set<string>(Object.values(ObjectKind));

interface FileState {
  readonly realPath: string;
  readonly size: number;
  readonly mtimeMs: number;
  /** The file's valid objects of the kinds kpx reads. */
  readonly objects: readonly ManifestObject[];
}

interface Held {
  readonly kind: ObjectKind;
  readonly object: KubeObject;
  readonly json: string;
  readonly source: string;
}

const objectKey = (o: KubeObject): string =>
  `${o.kind ?? ''}/${o.kind === ObjectKind.Node ? '' : o.metadata?.namespace || 'default'}/${o.metadata?.name ?? ''}`;

export class ManifestsDirSource implements Source {
  private readonly files = new Map<string, FileState>();
  private held = new Map<string, Held>();
  /** Objects defined in more than one place, already reported. */
  private duplicates = new Set<string>();
  /** Problems of the directory listing (a symlink loop, a dangling symlink) already reported. */
  private listingProblems = new Set<string>();
  private handler: SourceHandler | undefined;
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private rescanTimer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private readonly debounceMs: number;
  private readonly rescanMs: number;

  constructor(private readonly opts: ManifestsDirSourceOptions) {
    this.debounceMs = opts.debounceMs ?? 100;
    this.rescanMs = opts.rescanMs ?? 2000;
  }

  async start(handler: SourceHandler): Promise<void> {
    this.handler = handler;
    // The directory must exist at start: a typo in --manifests is an error, not an empty cluster.
    const st = await stat(this.opts.dir);
    if (!st.isDirectory()) throw new Error(`--manifests ${this.opts.dir}: not a directory`);
    await this.scan();
    handler.onSynced();
    try {
      this.watcher = watch(this.opts.dir, { persistent: false }, () => this.schedule());
      this.watcher.on('error', (err) =>
        handler.onWarning?.(`watching ${this.opts.dir} failed; relying on the periodic rescan`, err),
      );
    } catch (err) {
      handler.onWarning?.(`cannot watch ${this.opts.dir}; relying on the periodic rescan`, err);
    }
    if (this.rescanMs > 0) this.rescanTimer = setInterval(() => this.schedule(0), this.rescanMs).unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    if (this.debounce) clearTimeout(this.debounce);
    if (this.rescanTimer) clearInterval(this.rescanTimer);
    await this.scanning;
  }

  /** Rescans the directory now (tests; a SIGHUP handler). Resolves when the rescan's events are delivered. */
  async rescan(): Promise<void> {
    await this.scanning;
    await this.runScan();
  }

  private schedule(delay = this.debounceMs): void {
    if (this.stopped) return;
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      void this.runScan();
    }, delay);
  }

  private runScan(): Promise<void> {
    if (this.scanning) {
      this.again = true;
      return this.scanning;
    }
    this.scanning = (async () => {
      do {
        this.again = false;
        try {
          await this.scan();
        } catch (err) {
          this.handler?.onWarning?.(`rescanning ${this.opts.dir} failed; keeping what was read before`, err);
        }
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
  }

  private warn(message: string): void {
    this.handler?.onWarning?.(message);
  }

  private async scan(): Promise<void> {
    const listing = await listManifestFiles(this.opts.dir);
    const problems = new Set(listing.diagnostics.map(formatDiagnostic));
    for (const p of problems) if (!this.listingProblems.has(p)) this.warn(p);
    this.listingProblems = problems;
    const present = new Set(listing.files.map((f) => f.name));
    let changed = false;
    for (const name of [...this.files.keys()]) {
      if (!present.has(name)) {
        this.files.delete(name);
        changed = true;
      }
    }
    for (const file of listing.files) {
      const prev = this.files.get(file.name);
      if (prev && prev.realPath === file.realPath && prev.size === file.size && prev.mtimeMs === file.mtimeMs) continue;
      const parsed = await readManifestFile(file.path);
      const fileErrors = parsed.diagnostics.filter((d) => d.severity === Severity.Error);
      for (const d of parsed.diagnostics) if (d.severity !== Severity.Error) this.warn(formatDiagnostic(d));
      if (fileErrors.length > 0 && prev !== undefined) {
        // Half-written, or broken: keep the previous objects; size and mtime are remembered so that a broken
        // file is reported once, not every scan.
        this.files.set(file.name, { ...file, objects: prev.objects });
        for (const d of fileErrors)
          this.warn(
            `keeping the previous objects of ${file.path}: ${d.source ?? file.path}: ${d.message.replace(/; (file|document) skipped$/, '')}`,
          );
        continue;
      }
      for (const d of fileErrors) this.warn(formatDiagnostic(d));
      this.files.set(file.name, {
        realPath: file.realPath,
        size: file.size,
        mtimeMs: file.mtimeMs,
        objects: this.validObjects(parsed.objects),
      });
      changed = true;
    }
    if (changed && !this.stopped) this.deliver();
  }

  /**
   * The objects kpx reads that are valid on their own (as render would load them); each invalid one's errors
   * are reported here, once per change of its file. Warnings of valid objects are the pipeline's to log.
   */
  private validObjects(objects: readonly ManifestObject[]): ManifestObject[] {
    const out: ManifestObject[] = [];
    for (const mo of objects) {
      const checked = checkObject(mo.object, mo.source);
      if (checked.ok) out.push(mo);
      else
        for (const d of checked.diagnostics)
          if (d.severity === Severity.Error || checked.kind === undefined) this.warn(formatDiagnostic(d));
    }
    return out;
  }

  /** Computes the objects the directory holds now and delivers the differences. */
  private deliver(): void {
    const next = new Map<string, Held>();
    const duplicates = new Set<string>();
    for (const name of [...this.files.keys()].sort()) {
      for (const { object, source } of this.files.get(name)?.objects ?? []) {
        const kind = object.kind ?? '';
        if (!KINDS.has(kind)) continue;
        const key = objectKey(object);
        const earlier = next.get(key);
        if (earlier) {
          const dup = `${key} ${earlier.source} ${source}`;
          duplicates.add(dup);
          if (!this.duplicates.has(dup))
            this.handler?.onWarning?.(
              `${source}: ${key} is also defined in ${earlier.source}; the later definition wins`,
            );
        }
        next.set(key, { kind: kind as ObjectKind, object, json: JSON.stringify(object), source });
      }
    }
    this.duplicates = duplicates;
    const now = Date.now();
    const handler = this.handler;
    if (!handler) return;
    // Deletes first: an object renamed within one change is a delete and an add, in that order.
    for (const [key, h] of this.held)
      if (!next.has(key))
        handler.onEvent({ kind: h.kind, type: EventType.Delete, object: h.object, observedAt: now, source: h.source });
    for (const [key, h] of next) {
      const before = this.held.get(key);
      if (before?.json === h.json) continue;
      handler.onEvent({ kind: h.kind, type: EventType.Upsert, object: h.object, observedAt: now, source: h.source });
    }
    this.held = next;
  }
}
