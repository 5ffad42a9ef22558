// Rule specifications as text: splitting them into arguments and finding the chain they jump to.

/**
 * Splits a rule spec into its arguments as iptables-restore does: runs of non-blank characters, where a
 * "double-quoted" part may hold blanks and \" stands for a quote.
 */
export function splitArgs(spec: string): string[] {
  const args: string[] = [];
  let cur = '';
  let inArg = false;
  let quoted = false;
  for (let i = 0; i < spec.length; i++) {
    const c = spec[i];
    if (quoted) {
      if (c === '\\' && spec[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') {
      quoted = true;
      inArg = true;
    } else if (c === ' ' || c === '\t') {
      if (inArg) args.push(cur);
      cur = '';
      inArg = false;
    } else {
      cur += c;
      inArg = true;
    }
  }
  if (inArg) args.push(cur);
  return args;
}

/** The target of a rule (`-j X`, `--jump X`, `-g X`, `--goto X`): a chain or an extension such as DNAT. */
export function ruleTarget(spec: string): string | undefined {
  const args = splitArgs(spec);
  for (let i = args.length - 2; i >= 0; i--) {
    const a = args[i];
    if (a === '-j' || a === '--jump' || a === '-g' || a === '--goto') return args[i + 1];
  }
  return undefined;
}

/** `table/CHAIN`: how kpx names a chain across tables. */
export type ChainRef = string;

export function chainRef(table: string, chain: string): ChainRef {
  return `${table}/${chain}`;
}

/** Splits `table/CHAIN` (the table never holds a slash). */
export function parseChainRef(ref: ChainRef): { table: string; chain: string } {
  const i = ref.indexOf('/');
  return { table: ref.slice(0, i), chain: ref.slice(i + 1) };
}
