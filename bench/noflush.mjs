// How iptables-restore's cost grows with the number of chains, with and without --noflush (issue #4's full resync).
//
//   sudo node bench/noflush.mjs                          # 5,000 10,000 20,000 40,000 chains
//   sudo node bench/noflush.mjs --chains 5000,10000 --reps 3 --batch 5000
//
// kpx's executor, like kube-proxy, restores with --noflush (it must not flush other components' rules), and a
// full resync of a 10,000-service node (124,000 chains) took minutes where the same rules loaded as a whole table
// into an empty namespace took about one. This measures that difference on synthetic input shaped like kpx's
// endpoint chains: N chains of two rules each (one jumping to another chain, one DNAT), in the nat table, loaded
//   table:    as a whole table (`iptables-restore`, no --noflush), into an empty namespace;
//   noflush:  with --noflush, into an empty namespace (kpx's chains format);
//   again:    with --noflush, into a namespace that already holds the same chains (a resync of a converged node);
//   batches:  with --noflush, into an empty namespace, as restores of --batch chains each (jumps within a batch).
// Every restore runs in a network namespace created for it and deleted afterwards. Interleaved per repetition;
// medians. Needs root and iptables (iptables-nft here).
import { spawnSync } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const OUT = join(dirname(fileURLToPath(import.meta.url)), 'out');
const { values } = parseArgs({
  options: {
    chains: { type: 'string', default: '5000,10000,20000,40000' },
    reps: { type: 'string', default: '3' },
    batch: { type: 'string', default: '5000' },
    help: { type: 'boolean' },
  },
});
if (values.help) {
  process.stdout.write('usage: sudo node bench/noflush.mjs [--chains N,N,...] [--reps R] [--batch B]\n');
  process.exit(0);
}
const sizes = values.chains.split(',').map(Number);
const reps = Number(values.reps);
const batch = Number(values.batch);
if (
  sizes.some((n) => !Number.isInteger(n) || n < 2) ||
  !Number.isInteger(reps) ||
  reps < 1 ||
  !Number.isInteger(batch) ||
  batch < 2
) {
  throw new Error('--chains takes integers of at least 2, --reps a positive integer, --batch an integer of at least 2');
}

function run(args, input) {
  const r = spawnSync(args[0], args.slice(1), { encoding: 'utf8', ...(input !== undefined ? { input } : {}) });
  if (r.status !== 0) throw new Error(`${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** Chains `from` to `to` - 1 like kpx's endpoint chains, in iptables-restore syntax (each jumps to the next of them). */
function restoreText(from, to) {
  const name = (i) => `KUBE-SEP-${String(i).padStart(16, '0')}`;
  const lines = ['*nat'];
  for (let i = from; i < to; i++) lines.push(`:${name(i)} - [0:0]`);
  for (let i = from; i < to; i++) {
    lines.push(`-A ${name(i)} -s 10.244.${(i >> 8) & 255}.${i & 255}/32 -j ${name(i + 1 < to ? i + 1 : from)}`);
    lines.push(`-A ${name(i)} -p tcp -m tcp -j DNAT --to-destination 10.244.${(i >> 8) & 255}.${i & 255}:8080`);
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}

const ns = `kpx-bench-noflush-${process.pid}`;
const inNs = (...args) => ['ip', 'netns', 'exec', ns, ...args];
const freshNs = () => {
  spawnSync('ip', ['netns', 'del', ns]);
  run(['ip', 'netns', 'add', ns]);
};
process.on('exit', () => spawnSync('ip', ['netns', 'del', ns]));

function timed(args, input) {
  const t = performance.now();
  run(args, input);
  return performance.now() - t;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const version = run(['iptables-restore', '--version']).trim();
const results = [];
for (const n of sizes) {
  const text = restoreText(0, n);
  const batches = [];
  for (let f = 0; f < n; f += batch) batches.push(restoreText(f, Math.min(n, f + batch)));
  const t = { table: [], noflush: [], again: [], batches: [] };
  for (let r = 0; r < reps; r++) {
    freshNs();
    t.table.push(timed(inNs('iptables-restore'), text));
    freshNs();
    t.noflush.push(timed(inNs('iptables-restore', '--noflush'), text));
    t.again.push(timed(inNs('iptables-restore', '--noflush'), text));
    freshNs();
    t.batches.push(batches.reduce((ms, b) => ms + timed(inNs('iptables-restore', '--noflush'), b), 0));
    process.stderr.write(
      `  ${n} chains, rep ${r + 1}: table ${t.table[r].toFixed(0)} ms, noflush ${t.noflush[r].toFixed(0)} ms, again ${t.again[r].toFixed(0)} ms, batches ${t.batches[r].toFixed(0)} ms\n`,
    );
  }
  results.push({
    chains: n,
    rules: 2 * n,
    table: median(t.table),
    noflush: median(t.noflush),
    again: median(t.again),
    batches: median(t.batches),
    samples: t,
  });
}
spawnSync('ip', ['netns', 'del', ns]);

process.stdout.write(`\niptables-restore, N chains of 2 rules in nat; ${version}; medians of ${reps}\n\n`);
process.stdout.write(
  `chains    whole table   --noflush (empty)   --noflush (same chains there)   noflush / table   --noflush, batches of ${batch}\n`,
);
for (const r of results) {
  process.stdout.write(
    `${String(r.chains).padStart(6)}  ${r.table.toFixed(0).padStart(10)} ms  ${r.noflush.toFixed(0).padStart(14)} ms  ${r.again.toFixed(0).padStart(26)} ms  ${(r.noflush / r.table).toFixed(1).padStart(14)}x  ${r.batches.toFixed(0).padStart(20)} ms\n`,
  );
}
for (let i = 1; i < results.length; i++) {
  const a = results[i - 1];
  const b = results[i];
  process.stdout.write(
    `${a.chains} -> ${b.chains} chains (x${(b.chains / a.chains).toFixed(1)}): whole table x${(b.table / a.table).toFixed(1)}, --noflush x${(b.noflush / a.noflush).toFixed(1)}\n`,
  );
}
mkdirSync(OUT, { recursive: true });
writeFileSync(
  join(OUT, 'noflush-latest.json'),
  JSON.stringify({ at: new Date().toISOString(), version, reps, batch, results }, null, 2),
);
