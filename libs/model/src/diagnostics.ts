// Diagnostics: what was wrong with an input object, named precisely enough to fix it.

export const Severity = { Error: 'error', Warning: 'warning' } as const;
export type Severity = (typeof Severity)[keyof typeof Severity];

/** The kind of the object reference of a diagnostic about a file or a document rather than an object. */
export const FileKind = 'File';

export interface ObjectRef {
  readonly kind: string;
  readonly namespace?: string;
  readonly name: string;
}

export interface Diagnostic {
  readonly severity: Severity;
  readonly object: ObjectRef;
  /** JSON path of the offending field, e.g. `spec.ports[1].port`; empty when the object as a whole is at fault. */
  readonly field: string;
  readonly message: string;
  /** Where the object came from (file name), when known. */
  readonly source?: string;
}

export function formatObjectRef(ref: ObjectRef): string {
  return ref.namespace ? `${ref.kind} ${ref.namespace}/${ref.name}` : `${ref.kind} ${ref.name}`;
}

/** Control characters and line separators (a file name may hold them) as \uXXXX: a diagnostic is one line. */
function oneLine(s: string): string {
  return s.replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function formatDiagnostic(d: Diagnostic): string {
  // A file's (or a document's) own problem: the file is the object.
  if (d.object.kind === FileKind)
    return oneLine(`${d.severity}: ${d.object.name}:${d.field ? ` ${d.field}:` : ''} ${d.message}`);
  const where = d.source ? ` (${d.source})` : '';
  const field = d.field ? ` ${d.field}:` : ':';
  return oneLine(`${d.severity}: ${formatObjectRef(d.object)}${where}${field} ${d.message}`);
}

/** Collects diagnostics for one object. */
export class DiagnosticSink {
  readonly items: Diagnostic[] = [];
  constructor(
    private readonly object: ObjectRef,
    private readonly source?: string,
  ) {}

  error(field: string, message: string): void {
    this.items.push({
      severity: Severity.Error,
      object: this.object,
      field,
      message,
      ...(this.source ? { source: this.source } : {}),
    });
  }

  warn(field: string, message: string): void {
    this.items.push({
      severity: Severity.Warning,
      object: this.object,
      field,
      message,
      ...(this.source ? { source: this.source } : {}),
    });
  }

  get hasErrors(): boolean {
    return this.items.some((d) => d.severity === Severity.Error);
  }
}
