// A small Dockerfile reader for the lint rules in dockerfile.test.ts: instructions (continuations joined,
// comments dropped), grouped by stage, with ARG defaults resolved in FROM lines.

export interface Instruction {
  readonly keyword: string;
  readonly args: string;
  readonly line: number;
}

export interface Stage {
  readonly name: string;
  /** The FROM image after ARG substitution: another stage's name or an image reference. */
  readonly from: string;
  readonly instructions: readonly Instruction[];
}

export function parseDockerfile(text: string): { args: Map<string, string>; stages: Stage[] } {
  const instructions: Instruction[] = [];
  let current: { text: string; line: number } | undefined;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trimEnd();
    if (current === undefined && (line.trim() === '' || line.trim().startsWith('#'))) return;
    if (current !== undefined && line.trim().startsWith('#')) return;
    const piece = line.endsWith('\\') ? line.slice(0, -1) : line;
    current = current
      ? { text: `${current.text} ${piece.trim()}`, line: current.line }
      : { text: piece.trim(), line: i + 1 };
    if (!line.endsWith('\\')) {
      const [keyword = '', ...rest] = current.text.split(/\s+/);
      instructions.push({ keyword: keyword.toUpperCase(), args: rest.join(' '), line: current.line });
      current = undefined;
    }
  });
  const args = new Map<string, string>();
  const stages: { name: string; from: string; instructions: Instruction[] }[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const [image = '', as, name] = ins.args.split(/\s+/);
      const from = image.replace(/\$\{?(\w+)\}?/g, (_, v: string) => args.get(v) ?? '');
      stages.push({ name: as?.toUpperCase() === 'AS' && name ? name : String(stages.length), from, instructions: [] });
    } else if (stages.length === 0 && ins.keyword === 'ARG') {
      const [k = '', v = ''] = ins.args.split('=');
      args.set(k, v);
    } else {
      stages.at(-1)?.instructions.push(ins);
    }
  }
  return { args, stages };
}

/** The stages a stage builds on (FROM chain), itself first. */
export function lineage(stages: readonly Stage[], name: string): Stage[] {
  const out: Stage[] = [];
  for (let s = stages.find((x) => x.name === name); s; s = stages.find((x) => x.name === s.from)) out.push(s);
  return out;
}
