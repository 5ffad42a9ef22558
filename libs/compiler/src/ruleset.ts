// The rule model: a node's rules as a set of keyed objects. Backends produce them; deltas, digests,
// audit and replay work on them without knowing the backend. The kinds are the wire's (@kpx/proto).
import { RuleKind } from '@kpx/proto';

export { RuleKind };

export const Table = { Filter: 'filter', Nat: 'nat' } as const;
export type Table = (typeof Table)[keyof typeof Table];

export interface IptablesChainObject {
  readonly kind: typeof RuleKind.IptablesChain;
  readonly key: string;
  readonly table: Table;
  readonly chain: string;
  /** Rule specifications without the leading `-A CHAIN`, in iptables-restore syntax. */
  readonly rules: readonly string[];
}

export interface IptablesJumpObject {
  readonly kind: typeof RuleKind.IptablesJump;
  readonly key: string;
  readonly table: Table;
  /** The builtin chain holding the jump (INPUT, FORWARD, OUTPUT, PREROUTING, POSTROUTING). */
  readonly chain: string;
  readonly target: string;
  /** The whole rule specification, ending in `-j TARGET`. */
  readonly rule: string;
  /** Position among the jumps of its builtin chain (0 first). */
  readonly position: number;
}

export interface IptablesRulesObject {
  readonly kind: typeof RuleKind.IptablesRules;
  readonly key: string;
  readonly table: Table;
  readonly chain: string;
  readonly rules: readonly string[];
  /** 0: among the service ports' rules (ordered by key); 1: after them (KUBE-SERVICES' NodePort tail call). */
  readonly position: number;
}

export interface IpvsRealServer {
  readonly address: string;
  readonly port: number;
  /** 1; 0 for a server being drained. */
  readonly weight: number;
}

export interface IpvsServiceObject {
  readonly kind: typeof RuleKind.IpvsService;
  readonly key: string;
  /** TCP, UDP or SCTP. */
  readonly protocol: string;
  readonly address: string;
  readonly port: number;
  readonly scheduler: string;
  /** IPVS flags bitmask (0x1 persistent, 0x2 hashed, 0x10 source hash), as the wire contract documents. */
  readonly flags: number;
  /** Persistence timeout in seconds; 0 when not persistent. */
  readonly timeoutSeconds: number;
  /** Sorted by (address, port). */
  readonly realServers: readonly IpvsRealServer[];
}

export interface IpvsAddressObject {
  readonly kind: typeof RuleKind.IpvsAddress;
  readonly key: string;
  readonly interface: string;
  readonly address: string;
}

export interface IpsetSetObject {
  readonly kind: typeof RuleKind.IpsetSet;
  readonly key: string;
  readonly name: string;
  /** e.g. `hash:ip,port`. */
  readonly type: string;
  /** `inet` or `inet6`; "" for bitmap types. */
  readonly family: string;
  readonly comment: string;
  /** 0: the ipset default. */
  readonly hashSize: number;
  /** 0: the ipset default. */
  readonly maxElem: number;
  /** For bitmap:port, e.g. `0-65535`; "" otherwise. */
  readonly portRange: string;
  /** Entries in `ipset add` syntax, sorted. */
  readonly entries: readonly string[];
}

export interface IpsetEntriesObject {
  readonly kind: typeof RuleKind.IpsetEntries;
  readonly key: string;
  readonly set: string;
  /** Entries in `ipset add` syntax, sorted. */
  readonly entries: readonly string[];
}

export interface HealthCheckServiceObject {
  readonly kind: typeof RuleKind.HealthCheckService;
  readonly key: string;
  readonly namespace: string;
  readonly name: string;
  readonly port: number;
  /** Ready endpoints of the service on this node. */
  readonly localEndpoints: number;
}

/** A UDP service port whose stale conntrack entries the node deletes (see proto ConntrackPort). */
export interface ConntrackPortObject {
  readonly kind: typeof RuleKind.ConntrackPort;
  readonly key: string;
  readonly protocol: string;
  readonly port: number;
  /** Cluster IP, external IPs and load-balancer IPs, sorted. */
  readonly ips: readonly string[];
  /** 0: none. */
  readonly nodePort: number;
  /** Distinct serving endpoint IPs, sorted, never empty. */
  readonly endpoints: readonly string[];
}

export type IptablesObject = IptablesChainObject | IptablesJumpObject | IptablesRulesObject;
export type RuleObject =
  | IptablesObject
  | IpvsServiceObject
  | IpvsAddressObject
  | IpsetSetObject
  | IpsetEntriesObject
  | HealthCheckServiceObject
  | ConntrackPortObject;

export interface NodeRuleSet {
  readonly node: string;
  readonly mode: string;
  readonly family: string;
  /** Objects sorted by (kind, key): the canonical order. */
  readonly objects: readonly RuleObject[];
}

export function objectId(o: { kind: string; key: string }): string {
  return `${o.kind}:${o.key}`;
}

const compareStrings = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);

/**
 * The order of {@link objectId}, without building ids: same kind, by key; kinds of which neither is a prefix
 * of the other (every RuleKind), by kind; otherwise (never for RuleKinds) by the ids themselves.
 */
function compareObjects(a: { kind: string; key: string }, b: { kind: string; key: string }): number {
  if (a.kind === b.kind) return compareStrings(a.key, b.key);
  if (!a.kind.startsWith(b.kind) && !b.kind.startsWith(a.kind)) return compareStrings(a.kind, b.kind);
  return compareStrings(objectId(a), objectId(b));
}

/** Segments of at most this many keys are finished by insertion sort. */
const RADIX_CUTOFF = 32;

/**
 * Scratch of {@link sortIndexes}, kept between sorts: a large node's ~120,000 keys need half a megabyte each,
 * and memory the process has not touched yet is slow to get (a page fault per 4 KiB).
 */
let spare: Int32Array = new Int32Array(0);
let codes: Int32Array = new Int32Array(0);
let kindScratch: Int32Array = new Int32Array(0);
let orderScratch: Int32Array = new Int32Array(0);

/** An Int32Array of at least `n` elements: `a` itself when large enough. */
const atLeast = (a: Int32Array, n: number): Int32Array =>
  a.length >= n ? a : new Int32Array(Math.max(n, a.length * 2));

/**
 * Sorts `order[lo, hi)` (indexes into `keys`) stably by key, in UTF-16 code units (the order of `<`): an MSD
 * radix sort, one character position at a time, with no comparison callback (a rule set's ~100,000 chain keys,
 * which share long prefixes, sort about twice as fast). A segment with a character beyond ASCII is finished by a
 * comparison sort.
 */
function sortIndexes(keys: readonly string[], order: Int32Array, lo0: number, hi0: number): void {
  spare = atLeast(spare, hi0);
  codes = atLeast(codes, hi0);
  /** Per position of `order`: 0 when the key has ended at the current depth, else its character code + 1. */
  const code = codes;
  const starts = new Int32Array(130);
  const stack: number[] = [lo0, hi0, 0];
  const keyAt = (i: number): string => keys[order[i] ?? 0] ?? '';
  while (stack.length > 0) {
    const depth = stack.pop() ?? 0;
    const hi = stack.pop() ?? 0;
    const lo = stack.pop() ?? 0;
    if (hi - lo <= RADIX_CUTOFF) {
      // Insertion sort: moves only past strictly greater keys, so equal keys keep their order.
      for (let i = lo + 1; i < hi; i++) {
        const x = order[i] ?? 0;
        const k = keys[x] ?? '';
        let j = i - 1;
        for (; j >= lo && keyAt(j) > k; j--) order[j + 1] = order[j] ?? 0;
        order[j + 1] = x;
      }
      continue;
    }
    let ascii = true;
    let same = true;
    const first = depth < keyAt(lo).length ? keyAt(lo).charCodeAt(depth) + 1 : 0;
    for (let i = lo; i < hi; i++) {
      const k = keyAt(i);
      const c = depth < k.length ? k.charCodeAt(depth) + 1 : 0;
      if (c > 128) {
        ascii = false;
        break;
      }
      code[i] = c;
      if (c !== first) same = false;
    }
    if (!ascii) {
      const segment = Array.from(order.subarray(lo, hi)).sort(
        (x, y) => compareStrings(keys[x] ?? '', keys[y] ?? '') || x - y,
      );
      order.set(segment, lo);
      continue;
    }
    if (same) {
      // One character for all: go deeper, unless every key has ended (all equal: already in order). Past the
      // whole prefix the keys share (`nat/KUBE-SEP-`), found in one more pass: each key read once, not once per
      // character of the prefix.
      if (first === 0) continue;
      const k0 = keyAt(lo);
      let shared = k0.length;
      for (let i = lo + 1; i < hi && shared > depth + 1; i++) {
        const k = keyAt(i);
        const end = Math.min(shared, k.length);
        let d = depth + 1;
        while (d < end && k.charCodeAt(d) === k0.charCodeAt(d)) d++;
        shared = d;
      }
      stack.push(lo, hi, shared);
      continue;
    }
    starts.fill(0);
    for (let i = lo; i < hi; i++) {
      const next = (code[i] ?? 0) + 1;
      starts[next] = (starts[next] ?? 0) + 1;
    }
    for (let c = 1; c < 130; c++) starts[c] = (starts[c] ?? 0) + (starts[c - 1] ?? 0);
    // Sub-segments (code 0: keys that ended, all equal, stay as they are).
    for (let c = 1; c < 129; c++) {
      const from = lo + (starts[c] ?? 0);
      const to = lo + (starts[c + 1] ?? 0);
      if (to - from > 1) stack.push(from, to, depth + 1);
    }
    for (let i = lo; i < hi; i++) {
      const c = code[i] ?? 0;
      spare[lo + (starts[c] ?? 0)] = order[i] ?? 0;
      starts[c] = (starts[c] ?? 0) + 1;
    }
    order.set(spare.subarray(lo, hi), lo);
  }
}

/**
 * Sorts in place by {@link objectId} (stable) and returns the array: objects grouped by kind (kinds in order),
 * each group by key. Beside the array itself, only one array of keys and one copy of the objects are allocated.
 */
export function sortObjects<T extends { kind: string; key: string }>(objects: T[]): T[] {
  const n = objects.length;
  if (n < 64) return objects.sort(compareObjects);
  // Each object's kind (as a number) and key, in one pass.
  const kindNumber = new Map<string, number>();
  const kindNames: string[] = [];
  const keys: string[] = new Array<string>(n);
  kindScratch = atLeast(kindScratch, n);
  const kindOf = kindScratch;
  for (let i = 0; i < n; i++) {
    const o = objects[i] as T;
    let k = kindNumber.get(o.kind);
    if (k === undefined) {
      k = kindNames.push(o.kind) - 1;
      kindNumber.set(o.kind, k);
    }
    kindOf[i] = k;
    keys[i] = o.key;
  }
  const kinds = [...kindNames].sort();
  // Kinds order their objects as wholes unless one kind is a prefix of another (never among RuleKinds); a string
  // between a prefix and one of its extensions has that prefix too, so checking neighbours is enough.
  for (let i = 1; i < kinds.length; i++)
    if ((kinds[i] as string).startsWith(kinds[i - 1] as string)) return objects.sort(compareObjects);
  // Group by kind, stably (a counting sort), then sort each group by key.
  const rank = new Int32Array(kindNames.length);
  kinds.forEach((kind, r) => (rank[kindNumber.get(kind) ?? 0] = r));
  const starts = new Int32Array(kinds.length + 1);
  for (let i = 0; i < n; i++) {
    const r = (rank[kindOf[i] ?? 0] ?? 0) + 1;
    starts[r] = (starts[r] ?? 0) + 1;
  }
  for (let r = 1; r <= kinds.length; r++) starts[r] = (starts[r] ?? 0) + (starts[r - 1] ?? 0);
  const bounds = starts.slice();
  orderScratch = atLeast(orderScratch, n);
  const order = orderScratch;
  for (let i = 0; i < n; i++) {
    const r = rank[kindOf[i] ?? 0] ?? 0;
    const at = starts[r] ?? 0;
    order[at] = i;
    starts[r] = at + 1;
  }
  for (let r = 0; r < kinds.length; r++) sortIndexes(keys, order, bounds[r] ?? 0, bounds[r + 1] ?? 0);
  const copy = objects.slice();
  for (let i = 0; i < n; i++) objects[i] = copy[order[i] ?? 0] as T;
  return objects;
}
