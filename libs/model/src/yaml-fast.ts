// A fast reader for the block YAML that tools write (kubectl get -o yaml, js-yaml's dump, helm template):
// mappings and sequences by indentation, plain and quoted one-line scalars, `---` between documents. It gives
// exactly what js-yaml's loadAll (core schema) gives, or gives up (undefined) on anything else — flow
// collections but `[]` and `{}`, block scalars, anchors, aliases, tags, multi-line scalars, duplicate keys,
// tabs, CR, directives, empty documents — and the caller parses the text with js-yaml. Plain scalars are
// resolved by js-yaml's own core-schema types, in js-yaml's order.
//
// Why: on a 25 MB multi-document cluster js-yaml takes several times what JSON.parse does on the same objects;
// this reader, one pass over the lines, keeps a render from YAML within 1.5 times one from JSON
// (docs/benchmarks.md).
import yaml from 'js-yaml';

/** Thrown inside the reader when the text leaves the subset; never escapes it. */
class GiveUp extends Error {
  override readonly name = 'GiveUp';
}
const giveUp = (): never => {
  throw new GiveUp();
};

/** The core schema's implicit types, in the order js-yaml tries them. */
const types = (yaml as unknown as { types: Record<'null' | 'bool' | 'int' | 'float', yaml.Type> }).types; // public in js-yaml 4, not in @types/js-yaml
const implicit = [types.null, types.bool, types.int, types.float];

/** A plain scalar as js-yaml resolves it under the core schema. */
function plainValue(s: string): unknown {
  const c = s.charCodeAt(0);
  // A letter other than those null/bool start with: a string, no resolver matches.
  if (
    (c >= 97 && c <= 122 && c !== 110 && c !== 116 && c !== 102) ||
    (c >= 65 && c <= 90 && c !== 78 && c !== 84 && c !== 70)
  )
    return s;
  // A small decimal integer (ports, counts): what js-yaml's int type gives, without its regexes.
  if (s.length < 10 && DECIMAL.test(s)) return Number(s);
  // Two dots (an IPv4 address, a CIDR, a DNS name): no null, bool, int or float has more than one.
  const dot = s.indexOf('.');
  if (dot >= 0 && s.indexOf('.', dot + 1) >= 0) return s;
  for (const t of implicit) if (t.resolve(s)) return t.construct(s) as unknown;
  return s;
}

const DECIMAL = /^(?:0|[1-9][0-9]*)$/;

/** Characters a plain scalar may not start with (YAML indicators), but '-', '?' and ':' followed by a non-space. */
const INDICATOR = new Uint8Array(128);
for (const c of '[]{},#&*!|>\'"%@`') INDICATOR[c.charCodeAt(0)] = 1;
const startsWithIndicator = (s: string): boolean => INDICATOR[s.charCodeAt(0)] === 1;

/**
 * A one-line scalar value (`text` trimmed at the start): quoted, plain, or the empty flow collections. Gives up
 * on anything else.
 */
function scalar(text: string): unknown {
  const c = text[0];
  if (c === '"') return doubleQuoted(text);
  if (c === "'") return singleQuoted(text);
  if (text === '[]' || text.startsWith('[] #')) return [];
  if (text === '{}' || text.startsWith('{} #')) return {};
  let s = text;
  const hash = s.indexOf(' #');
  if (hash >= 0) s = s.slice(0, hash).trimEnd();
  if (s === '') return null;
  if (
    startsWithIndicator(s) ||
    c === '?' ||
    c === ':' ||
    (c === '-' && (s.length === 1 || s[1] === ' ')) ||
    s.includes(': ') ||
    s.endsWith(':') ||
    s.includes('\t')
  )
    giveUp();
  return plainValue(s);
}

/** The rest of a line after a closing quote: only spaces, or spaces and a comment. */
function checkTail(tail: string): void {
  if (tail === '') return;
  const t = tail.trimStart();
  if (t !== '' && !(t.startsWith('#') && t.length < tail.length)) giveUp();
}

function doubleQuoted(text: string): string {
  // The closing quote: the first '"' not escaped.
  let i = 1;
  for (;;) {
    const q = text.indexOf('"', i);
    if (q < 0) return giveUp();
    let bs = 0;
    for (let j = q - 1; j > 0 && text[j] === '\\'; j--) bs++;
    if (bs % 2 === 0) {
      i = q;
      break;
    }
    i = q + 1;
  }
  const body = text.slice(1, i);
  checkTail(text.slice(i + 1));
  // JSON's escapes mean the same in YAML; YAML's others (\x, \0, \e, \N, \_, \L, \P, \ , \<tab>, \/…) do not parse as JSON.
  if (/\\[^"\\/bfnrtu]/.test(body) || /[\x00-\x1f\x7f]/.test(body)) giveUp();
  try {
    return JSON.parse(`"${body}"`) as string;
  } catch {
    return giveUp();
  }
}

function singleQuoted(text: string): string {
  let i = 1;
  for (;;) {
    const q = text.indexOf("'", i);
    if (q < 0) return giveUp();
    if (text[q + 1] === "'") {
      i = q + 2;
      continue;
    }
    i = q;
    break;
  }
  checkTail(text.slice(i + 1));
  const body = text.slice(1, i);
  if (/[\x00-\x1f\x7f]/.test(body)) giveUp();
  return body.replaceAll("''", "'");
}

/** A mapping entry's key and the text after its ':' (trimmed at the start), or undefined when `text` is not one. */
function splitEntry(text: string): { key: string; rest: string } | undefined {
  const c = text[0];
  if (c === '"' || c === "'") {
    // A quoted key: the scalar reader finds its end; what follows must be ':'.
    const end = quotedEnd(text);
    if (end < 0) return undefined;
    const after = text.slice(end + 1);
    if (!(after.startsWith(': ') || after === ':')) return undefined;
    const key = c === '"' ? doubleQuoted(text.slice(0, end + 1)) : singleQuoted(text.slice(0, end + 1));
    return { key, rest: after.slice(1).trimStart() };
  }
  let colon = text.indexOf(':');
  while (colon >= 0 && !(colon === text.length - 1 || text.charCodeAt(colon + 1) === 32))
    colon = text.indexOf(':', colon + 1);
  if (colon < 0) return undefined;
  const key = text.slice(0, colon);
  if (key.includes(' #')) return undefined;
  if (
    colon === 0 ||
    text.charCodeAt(colon - 1) === 32 ||
    startsWithIndicator(key) ||
    ((c === '-' || c === '?') && (key.length === 1 || key[1] === ' ')) ||
    key.includes('\t')
  )
    giveUp();
  const k = plainValue(key);
  // A key js-yaml would read as null, a number or a bool becomes that value's string: leave those to it.
  if (typeof k !== 'string') giveUp();
  let r = colon + 1;
  while (text.charCodeAt(r) === 32) r++;
  return { key, rest: r >= text.length ? '' : text.slice(r) };
}

function quotedEnd(text: string): number {
  const c = text[0];
  for (let i = 1; i < text.length; i++) {
    if (c === '"' && text[i] === '\\') i++;
    else if (text[i] === c) {
      if (c === "'" && text[i + 1] === "'") i++;
      else return i;
    }
  }
  return -1;
}

/** A document's significant lines: their indentation and content, side by side. */
interface Lines {
  readonly indents: number[];
  readonly texts: string[];
}

class Reader {
  private i = 0;
  private readonly indents: readonly number[];
  private readonly texts: readonly string[];
  constructor(lines: Lines) {
    this.indents = lines.indents;
    this.texts = lines.texts;
  }

  get done(): boolean {
    return this.i >= this.texts.length;
  }

  /** The next line's indentation; -1 after the last line. */
  private indent(): number {
    return this.i < this.indents.length ? (this.indents[this.i] ?? -1) : -1;
  }

  private text(): string {
    return this.texts[this.i] ?? '';
  }

  private dash(): boolean {
    const t = this.text();
    return t === '-' || t.startsWith('- ');
  }

  /** The node whose first line is the next one, at exactly `indent`. */
  node(indent: number): unknown {
    if (this.indent() !== indent) return giveUp();
    return this.dash() ? this.sequence(indent) : this.mapping(indent, undefined);
  }

  /** A value after `key:` with nothing on the line: a nested node, a sequence at the key's indent, or null. */
  private nested(indent: number): unknown {
    const next = this.indent();
    if (next < indent) return null;
    if (next > indent) return this.node(next);
    return this.dash() ? this.sequence(indent) : null;
  }

  private set(o: Record<string, unknown>, key: string, value: unknown): void {
    // A key twice (js-yaml's error), or one an object inherits (`constructor`): left to js-yaml. No value is undefined.
    if (o[key] !== undefined || key === '__proto__') giveUp();
    o[key] = value;
  }

  /** A mapping at `indent`; `first` is an entry already split off a `- ` line (compact mapping in a sequence). */
  private mapping(indent: number, first: { key: string; rest: string } | undefined): Record<string, unknown> {
    const o: Record<string, unknown> = {};
    let entry = first;
    if (entry === undefined) {
      if (this.done) return giveUp();
      entry = splitEntry(this.text()) ?? giveUp();
      this.i++;
    }
    for (;;) {
      this.set(
        o,
        entry.key,
        entry.rest === '' || entry.rest.startsWith('#') ? this.nested(indent) : this.inlineValue(entry.rest, indent),
      );
      const next = this.indent();
      if (next < indent) return o;
      if (next > indent || this.dash()) giveUp();
      entry = splitEntry(this.text()) ?? giveUp();
      this.i++;
    }
  }

  /** A value on the same line as its key or dash: a scalar; the next line must not continue it. */
  private inlineValue(text: string, indent: number): unknown {
    const v = scalar(text);
    if (this.indent() > indent) giveUp(); // a multi-line scalar, or worse
    return v;
  }

  private sequence(indent: number): unknown[] {
    const out: unknown[] = [];
    while (this.indent() === indent && this.dash()) {
      const t = this.text();
      this.i++;
      if (t === '-') {
        out.push(this.nested(indent + 1));
        continue;
      }
      const rest = t.slice(2);
      const item = rest.trimStart();
      const pad = rest.length - item.length;
      if (item === '' || item.startsWith('#')) {
        out.push(this.nested(indent + 1));
        continue;
      }
      if (item === '-' || item.startsWith('- ')) giveUp();
      const entry = item[0] === '[' || item[0] === '{' ? undefined : splitEntry(item);
      if (entry !== undefined) out.push(this.mapping(indent + 2 + pad, entry));
      else out.push(this.inlineValue(item, indent));
    }
    return out;
  }
}

/** Splits the text into documents of significant lines, or gives up. */
function documents(text: string, maxIndent: number): Lines[] {
  if (text.includes('\r') || text.charCodeAt(0) === 0xfeff) giveUp();
  const docs: Lines[] = [];
  let current: Lines = { indents: [], texts: [] };
  let started = false;
  for (let start = 0; start <= text.length; ) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    let indent = start;
    while (text.charCodeAt(indent) === 32) indent++;
    const first = text.charCodeAt(indent);
    const lineStart = start;
    start = end + 1;
    // Blank lines and comments.
    if (indent === end || first === 35) continue;
    if (indent === lineStart && (first === 45 || first === 46 || first === 37)) {
      const l = text.slice(lineStart, end);
      if (l.startsWith('---')) {
        const after = l.slice(3).trim();
        if (after !== '' && !after.startsWith('#')) giveUp();
        if (started || current.texts.length > 0) docs.push(current);
        current = { indents: [], texts: [] };
        started = true;
        continue;
      }
      if (l.startsWith('...') || first === 37) giveUp();
    }
    if (indent - lineStart > maxIndent || first === 9) giveUp();
    current.indents.push(indent - lineStart);
    let last = end;
    while (text.charCodeAt(last - 1) === 32) last--;
    current.texts.push(text.slice(indent, last));
  }
  if (started || current.texts.length > 0) docs.push(current);
  return docs;
}

/**
 * The documents of a YAML text, exactly as js-yaml's loadAll with the core schema reads them, when the text
 * is in the subset this reader knows; undefined otherwise (also when a line is indented deeper than
 * `maxIndent`, which bounds the nesting and so the reader's recursion).
 */
export function loadBlockYaml(text: string, opts: { maxIndent: number } = { maxIndent: 50 }): unknown[] | undefined {
  try {
    const out: unknown[] = [];
    for (const lines of documents(text, opts.maxIndent)) {
      // An empty document is null to js-yaml; rare: leave it to js-yaml.
      if (lines.texts.length === 0) return undefined;
      const r = new Reader(lines);
      out.push(r.node(lines.indents[0] ?? 0));
      if (!r.done) return undefined;
    }
    return out;
  } catch (err) {
    if (err instanceof GiveUp) return undefined;
    throw err;
  }
}
