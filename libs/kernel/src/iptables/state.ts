// The iptables objects of one rule set (one node, one IP family), indexed so that a change can be planned in
// O(size of the change): chains by name, the fragments of each shared chain in chain order, jumps by builtin
// chain, and who references each chain.
import type { IptablesChain, IptablesJump, IptablesRules, ObjectRef, RuleObject } from '@kpx/proto';
import { RuleKind } from '@kpx/proto';
import { objectIdOf, undoChange, type KeyedObjects } from '@kpx/ruleset';
import { InvalidRuleObjectError } from '../errors.js';
import { BUILTIN_CHAINS } from './commands.js';
import { chainRef, ruleTarget, type ChainRef } from './rule-text.js';

/** A change of iptables objects: a Delta's upserts and deletes, or ruleset's ObjectChanges mapped to wire objects. */
export interface IptablesChange {
  readonly upserts: readonly RuleObject[];
  readonly deletes: readonly ObjectRef[];
}

/** One fragment of a shared chain, as held in the chain's ordered list. */
export interface Fragment {
  readonly key: string;
  readonly position: number;
  readonly rules: readonly string[];
}

/** What one {@link IptablesState.apply} changed. */
export interface Transition {
  /** Chains whose own rules or fragments changed and that exist afterwards (including new chains). */
  readonly rewritten: ReadonlySet<ChainRef>;
  /** Chains that existed before and do not afterwards. */
  readonly deleted: ReadonlySet<ChainRef>;
  /** Builtin chains (`table/BUILTIN`) whose jump objects changed. */
  readonly builtins: ReadonlySet<ChainRef>;
  /** The jumps of those builtin chains as they were before. */
  readonly jumpsBefore: ReadonlyMap<ChainRef, readonly IptablesJump[]>;
  /** Puts the state back as it was before the apply. */
  undo(): void;
}

const JUMP_ID_PREFIX = `${RuleKind.IptablesJump}:`;
const TABLE = /^[a-z]+$/;
/** iptables chain names: at most 28 characters, no blanks, quotes or `!`, not starting with `-`. */
const CHAIN = /^[^\s"'!-][^\s"'!]{0,27}$/;

function invalid(o: { kind: string; key: string }, why: string): never {
  throw new InvalidRuleObjectError(o.kind, o.key, why);
}

function checkRules(o: RuleObject, rules: readonly string[]): void {
  for (const r of rules) if (/[\n\r]/.test(r)) invalid(o, `a rule holds a line break: ${JSON.stringify(r)}`);
}

/** Checks an object before it enters the state: kind and payload agree, key agrees with payload, names are valid. */
export function validateObject(o: RuleObject): void {
  const p = o.payload;
  if (!p) invalid(o, 'no payload');
  switch (p.$case) {
    case 'iptablesChain': {
      const { table, name } = p.value;
      if (o.kind !== RuleKind.IptablesChain) invalid(o, `kind does not match payload ${p.$case}`);
      if (!TABLE.test(table)) invalid(o, `bad table ${JSON.stringify(table)}`);
      if (!CHAIN.test(name) || BUILTIN_CHAINS.has(name)) invalid(o, `bad chain name ${JSON.stringify(name)}`);
      if (o.key !== chainRef(table, name)) invalid(o, `key is not ${chainRef(table, name)}`);
      checkRules(o, p.value.rules);
      return;
    }
    case 'iptablesRules': {
      const { table, chain } = p.value;
      if (o.kind !== RuleKind.IptablesRules) invalid(o, `kind does not match payload ${p.$case}`);
      if (!TABLE.test(table)) invalid(o, `bad table ${JSON.stringify(table)}`);
      if (!CHAIN.test(chain) || BUILTIN_CHAINS.has(chain)) invalid(o, `bad chain name ${JSON.stringify(chain)}`);
      if (!o.key.startsWith(`${chainRef(table, chain)}/`))
        invalid(o, `key does not start with ${chainRef(table, chain)}/`);
      checkRules(o, p.value.rules);
      return;
    }
    case 'iptablesJump': {
      const { table, chain, target, rule } = p.value;
      if (o.kind !== RuleKind.IptablesJump) invalid(o, `kind does not match payload ${p.$case}`);
      if (!TABLE.test(table)) invalid(o, `bad table ${JSON.stringify(table)}`);
      if (!BUILTIN_CHAINS.has(chain)) invalid(o, `${JSON.stringify(chain)} is not a builtin chain`);
      if (!CHAIN.test(target) || BUILTIN_CHAINS.has(target)) invalid(o, `bad target chain ${JSON.stringify(target)}`);
      if (o.key !== `${chainRef(table, chain)}/${target}`) invalid(o, `key is not ${chainRef(table, chain)}/${target}`);
      if (ruleTarget(rule) !== target) invalid(o, `rule ${JSON.stringify(rule)} does not jump to ${target}`);
      checkRules(o, [rule]);
      return;
    }
    default:
      invalid(o, `payload ${p.$case} is not an iptables object`);
  }
}

function sameRules(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((r, i) => r === b[i]);
}

/** True when two iptables objects have the same key and payload. */
export function sameObject(a: RuleObject, b: RuleObject): boolean {
  const x = a.payload;
  const y = b.payload;
  if (a.kind !== b.kind || a.key !== b.key || !x || !y) return false;
  if (x.$case === 'iptablesChain' && y.$case === 'iptablesChain') {
    return x.value.table === y.value.table && x.value.name === y.value.name && sameRules(x.value.rules, y.value.rules);
  }
  if (x.$case === 'iptablesRules' && y.$case === 'iptablesRules') {
    const [p, q] = [x.value, y.value];
    return p.table === q.table && p.chain === q.chain && p.position === q.position && sameRules(p.rules, q.rules);
  }
  if (x.$case === 'iptablesJump' && y.$case === 'iptablesJump') {
    const [p, q] = [x.value, y.value];
    return (
      p.table === q.table &&
      p.chain === q.chain &&
      p.target === q.target &&
      p.rule === q.rule &&
      p.prepend === q.prepend
    );
  }
  return false;
}

/** Chain order of fragments: position, then key. */
export function compareFragments(a: Fragment, b: Fragment): number {
  return a.position - b.position || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}

/** Index of `f` in the sorted list, or where it would go (binary search). */
function fragmentSlot(list: readonly Fragment[], f: Fragment): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareFragments(list[mid] as Fragment, f) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The chains (`table/NAME`) the rules of an object jump or go to. */
function targetsOf(table: string, rules: readonly string[]): ChainRef[] {
  const out = new Set<ChainRef>();
  for (const r of rules) {
    const t = ruleTarget(r);
    if (t !== undefined) out.add(chainRef(table, t));
  }
  return [...out];
}

export class IptablesState {
  private readonly byId = new Map<string, RuleObject>();
  private readonly chainsByRef = new Map<ChainRef, IptablesChain>();
  private readonly fragmentLists = new Map<ChainRef, Fragment[]>();
  private readonly jumpsByKey = new Map<string, IptablesJump>();
  private readonly jumpsByBuiltin = new Map<ChainRef, Set<string>>();
  /** Chain → ids of the objects whose rules jump to it. */
  private readonly referrers = new Map<ChainRef, Set<string>>();
  /** Object id → the chain its rules live in (own chain, shared chain, or builtin chain for a jump). */
  private readonly homeOf = new Map<string, ChainRef>();
  private readonly targets = new Map<string, ChainRef[]>();
  /**
   * Chains kpx no longer wants but has left in the kernel, flushed, because something still jumped to them
   * when they were to be deleted. A later change deletes them once nothing does.
   */
  readonly keptChains = new Set<ChainRef>();
  /** The state as ruleset's keyed store, for undoChange: every write goes through set(), which keeps the indexes. */
  private readonly keyed: KeyedObjects<RuleObject> = {
    get: (id) => this.byId.get(id),
    upsert: (o) => {
      const id = objectIdOf(o);
      this.set(id, this.byId.get(id), o);
    },
    remove: (ref) => {
      const id = objectIdOf(ref);
      this.set(id, this.byId.get(id), undefined);
    },
  };

  static from(objects: Iterable<RuleObject>): IptablesState {
    const s = new IptablesState();
    s.apply({ upserts: [...objects], deletes: [] });
    return s;
  }

  get size(): number {
    return this.byId.size;
  }

  objects(): IterableIterator<RuleObject> {
    return this.byId.values();
  }

  get(kind: string, key: string): RuleObject | undefined {
    return this.byId.get(objectIdOf({ kind, key }));
  }

  chain(ref: ChainRef): IptablesChain | undefined {
    return this.chainsByRef.get(ref);
  }

  chainRefs(): IterableIterator<ChainRef> {
    return this.chainsByRef.keys();
  }

  /** The fragments of a chain in chain order (also when the chain itself is not in the state). */
  fragments(ref: ChainRef): readonly Fragment[] {
    return this.fragmentLists.get(ref) ?? [];
  }

  /** The rules of a chain as the kernel gets them: its own, then its fragments'. undefined if not in the state. */
  chainRules(ref: ChainRef): string[] | undefined {
    const c = this.chainsByRef.get(ref);
    if (!c) return undefined;
    const rules = [...c.rules];
    for (const f of this.fragments(ref)) rules.push(...f.rules);
    return rules;
  }

  jumps(): IterableIterator<IptablesJump> {
    return this.jumpsByKey.values();
  }

  /** The jumps from one builtin chain (`table/BUILTIN`), in no particular order. */
  jumpsFrom(builtin: ChainRef): IptablesJump[] {
    return [...(this.jumpsByBuiltin.get(builtin) ?? [])]
      .map((k) => this.jumpsByKey.get(k))
      .filter((j): j is IptablesJump => j !== undefined);
  }

  /** Builtin chains (`table/BUILTIN`) that hold at least one jump. */
  builtinRefs(): ChainRef[] {
    return [...this.jumpsByBuiltin.keys()];
  }

  /** Tables of the state's chains and jumps. */
  tables(): Set<string> {
    const t = new Set<string>();
    for (const c of this.chainsByRef.values()) t.add(c.table);
    for (const j of this.jumpsByKey.values()) t.add(j.table);
    return t;
  }

  /**
   * Whether something that stays in the kernel jumps to the chain: a jump object, or a rule of a chain of the
   * state (its own rules or a fragment) other than the chain itself.
   */
  isReferenced(ref: ChainRef): boolean {
    for (const id of this.referrers.get(ref) ?? []) {
      const home = this.homeOf.get(id);
      if (home === undefined || home === ref) continue;
      // A jump lives in a builtin chain, which always exists; a rule lives on while its chain does.
      if (id.startsWith(JUMP_ID_PREFIX) || this.chainsByRef.has(home)) return true;
    }
    return false;
  }

  /**
   * Applies a change (validated first: an invalid object throws InvalidRuleObjectError and changes nothing).
   * Upserts equal to what the state holds change nothing. Deleting an absent object changes nothing.
   */
  apply(change: IptablesChange): Transition {
    for (const o of change.upserts) validateObject(o);
    /** The object of every id changed, as it was before its first change (undefined: absent). */
    const previous = new Map<string, RuleObject | undefined>();
    const rewritten = new Set<ChainRef>();
    const deleted = new Set<ChainRef>();
    const builtins = new Set<ChainRef>();
    const jumpsBefore = new Map<ChainRef, IptablesJump[]>();
    const hadChain = new Map<ChainRef, boolean>();
    const note = (o: RuleObject): void => {
      const p = o.payload;
      if (p?.$case === 'iptablesChain') {
        const ref = chainRef(p.value.table, p.value.name);
        if (!hadChain.has(ref)) hadChain.set(ref, this.chainsByRef.has(ref));
        rewritten.add(ref);
      } else if (p?.$case === 'iptablesRules') {
        rewritten.add(chainRef(p.value.table, p.value.chain));
      } else if (p?.$case === 'iptablesJump') {
        const ref = chainRef(p.value.table, p.value.chain);
        if (!jumpsBefore.has(ref)) jumpsBefore.set(ref, this.jumpsFrom(ref));
        builtins.add(ref);
      }
    };
    const put = (id: string, next: RuleObject | undefined): void => {
      const prev = this.byId.get(id);
      if (prev === next || (prev && next && sameObject(prev, next))) return;
      if (prev) note(prev);
      if (next) note(next);
      if (!previous.has(id)) previous.set(id, prev);
      this.set(id, prev, next);
    };
    for (const ref of change.deletes) put(objectIdOf(ref), undefined);
    for (const o of change.upserts) put(objectIdOf(o), o);
    for (const [ref, had] of hadChain) {
      if (had && !this.chainsByRef.has(ref)) deleted.add(ref);
    }
    for (const ref of [...rewritten]) if (!this.chainsByRef.has(ref)) rewritten.delete(ref);
    return {
      rewritten,
      deleted,
      builtins,
      jumpsBefore,
      undo: () => undoChange(this.keyed, previous),
    };
  }

  /** Replaces the object `id` (prev → next) in every index. */
  private set(id: string, prev: RuleObject | undefined, next: RuleObject | undefined): void {
    if (prev) this.unindex(id, prev);
    if (next) {
      this.byId.set(id, next);
      this.index(id, next);
    } else {
      this.byId.delete(id);
    }
  }

  private index(id: string, o: RuleObject): void {
    const p = o.payload;
    let home: ChainRef;
    let targets: ChainRef[];
    switch (p?.$case) {
      case 'iptablesChain':
        home = chainRef(p.value.table, p.value.name);
        this.chainsByRef.set(home, p.value);
        targets = targetsOf(p.value.table, p.value.rules);
        break;
      case 'iptablesRules': {
        home = chainRef(p.value.table, p.value.chain);
        let list = this.fragmentLists.get(home);
        if (!list) this.fragmentLists.set(home, (list = []));
        const f = fragmentOf(o.key, p.value);
        list.splice(fragmentSlot(list, f), 0, f);
        targets = targetsOf(p.value.table, p.value.rules);
        break;
      }
      case 'iptablesJump': {
        home = chainRef(p.value.table, p.value.chain);
        this.jumpsByKey.set(o.key, p.value);
        let set = this.jumpsByBuiltin.get(home);
        if (!set) this.jumpsByBuiltin.set(home, (set = new Set()));
        set.add(o.key);
        targets = [chainRef(p.value.table, p.value.target)];
        break;
      }
      default:
        return;
    }
    this.homeOf.set(id, home);
    this.targets.set(id, targets);
    for (const t of targets) {
      let set = this.referrers.get(t);
      if (!set) this.referrers.set(t, (set = new Set()));
      set.add(id);
    }
  }

  private unindex(id: string, o: RuleObject): void {
    const p = o.payload;
    switch (p?.$case) {
      case 'iptablesChain':
        this.chainsByRef.delete(chainRef(p.value.table, p.value.name));
        break;
      case 'iptablesRules': {
        const home = chainRef(p.value.table, p.value.chain);
        const list = this.fragmentLists.get(home);
        if (list) {
          const i = fragmentSlot(list, fragmentOf(o.key, p.value));
          if (list[i]?.key === o.key) list.splice(i, 1);
          if (list.length === 0) this.fragmentLists.delete(home);
        }
        break;
      }
      case 'iptablesJump': {
        const home = chainRef(p.value.table, p.value.chain);
        this.jumpsByKey.delete(o.key);
        const set = this.jumpsByBuiltin.get(home);
        set?.delete(o.key);
        if (set?.size === 0) this.jumpsByBuiltin.delete(home);
        break;
      }
      default:
        return;
    }
    for (const t of this.targets.get(id) ?? []) {
      const set = this.referrers.get(t);
      set?.delete(id);
      if (set?.size === 0) this.referrers.delete(t);
    }
    this.targets.delete(id);
    this.homeOf.delete(id);
  }
}

function fragmentOf(key: string, r: IptablesRules): Fragment {
  return { key, position: r.position, rules: r.rules };
}
