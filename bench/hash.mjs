// The one object hasher and the one apply (issue #14), side by side in one run:
// - ruleset's objectHash (one reused protobuf writer, one-shot hash) vs the hash as defined, computed the plain way
//   (a writer and a Hash object per object: what objectHash did before replay's faster copy became the only one);
// - RuleState.apply (keeps an undo token) vs the same upserts and digest check without one.
// CPU time (user + system) of this process, median of the rounds; the checks fail (exit 1) if the two hashes differ.
//
//   npm run build && node bench/run.mjs hash [--objects 124179] [--deltas 10000] [--rounds 7]
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { RuleObject } from '@kpx/proto';
import { RuleState, hashed, objectHash } from '@kpx/ruleset';

const { values } = parseArgs({
  options: {
    objects: { type: 'string', default: '124179' },
    deltas: { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '7' },
  },
});
const N = Number(values.objects);
const D = Number(values.deltas);
const ROUNDS = Number(values.rounds);

// A 10-endpoint service chain and its endpoint chains, as iptables mode compiles them.
const svcChain = (i, v = 0) => ({
  kind: 'iptables.chain',
  key: `nat/KUBE-SVC-${i}`,
  payload: {
    $case: 'iptablesChain',
    value: {
      table: 'nat',
      name: `KUBE-SVC-${i}`,
      rules: Array.from(
        { length: 10 },
        (_, j) =>
          `-m comment --comment "ns${i % 97}/svc${i}:http -> 10.244.${j}.${i % 250}:8080" -m statistic --mode random --probability 0.${j}0000000000 -j KUBE-SEP-${i}-${j}-${v}`,
      ),
    },
  },
});
const sepChain = (i, j) => ({
  kind: 'iptables.chain',
  key: `nat/KUBE-SEP-${i}-${j}`,
  payload: {
    $case: 'iptablesChain',
    value: {
      table: 'nat',
      name: `KUBE-SEP-${i}-${j}`,
      rules: [
        `-m comment --comment "ns${i % 97}/svc${i}:http" -s 10.244.${j}.${i % 250}/32 -j KUBE-MARK-MASQ`,
        `-m comment --comment "ns${i % 97}/svc${i}:http" -m tcp -p tcp -j DNAT --to-destination 10.244.${j}.${i % 250}:8080`,
      ],
    },
  },
});
const objects = [];
for (let i = 0; objects.length < N; i++) {
  objects.push(svcChain(i));
  for (let j = 0; j < 10 && objects.length < N; j++) objects.push(sepChain(i, j));
}

const cpu = (f) => {
  const c0 = process.cpuUsage();
  f();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
};
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const plainHash = (o) => BigInt(`0x${createHash('sha256').update(RuleObject.encode(o).finish()).digest('hex')}`);

const load0 = loadavg();
const hashTimes = { plain: [], objectHash: [] };
let failed = false;
for (let r = 0; r < ROUNDS; r++) {
  let a = 0n;
  let b = 0n;
  hashTimes.plain.push(cpu(() => objects.forEach((o) => (a += plainHash(o)))));
  hashTimes.objectHash.push(cpu(() => objects.forEach((o) => (b += objectHash(o)))));
  if (a !== b) failed = true;
}

// Deltas of three changed service chains each, chained from generation 1.
const deltas = [];
{
  const s = RuleState.from(objects, 1);
  for (let g = 2; g < D + 2; g++) {
    const i = (g * 7919) % Math.floor(N / 11);
    const upserts = [svcChain(i, g), svcChain(i + 1, g), svcChain(i + 2, g)];
    for (const u of upserts) s.upsert(hashed(u));
    deltas.push({ generation: g, prevGeneration: g - 1, upserts, deletes: [], digest: s.digest });
  }
}
const applyTimes = { bare: [], apply: [] };
for (let r = 0; r < Math.max(3, ROUNDS - 2); r++) {
  let s = RuleState.from(objects, 1);
  applyTimes.bare.push(
    cpu(() => {
      for (const d of deltas) {
        for (const w of d.upserts) s.upsert(hashed(w));
        if (s.digest !== d.digest) throw new Error(`delta ${d.generation}: digest`);
        s.generation = d.generation;
      }
    }),
  );
  s = RuleState.from(objects, 1);
  applyTimes.apply.push(cpu(() => deltas.forEach((d) => s.apply(d))));
}

const m = (t) => Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)]));
const hash = m(hashTimes);
const apply = m(applyTimes);
const results = {
  date: new Date().toISOString(),
  node: process.version,
  objects: N,
  deltas: D,
  loadavg: { start: load0, end: loadavg() },
  hashMs: hash,
  hashRatio: hash.objectHash / hash.plain,
  applyMs: apply,
  applyRatio: apply.apply / apply.bare,
  rounds: { hash: hashTimes, apply: applyTimes },
};
const fmt = (x) => `${x.toFixed(0)} ms`;
console.log(`node ${process.version}, ${N} objects, CPU time median; load ${load0.map((x) => x.toFixed(1)).join(' ')}`);
console.log(
  `  hash every object   plain ${fmt(hash.plain)}   objectHash ${fmt(hash.objectHash)}   ratio ${results.hashRatio.toFixed(2)}`,
);
console.log(
  `  ${D} 3-object deltas   without undo ${fmt(apply.bare)}   RuleState.apply ${fmt(apply.apply)}   ratio ${results.applyRatio.toFixed(2)}`,
);
if (failed) console.log('FAILED: objectHash differs from the hash as defined');
const out = join(dirname(fileURLToPath(import.meta.url)), 'out');
mkdirSync(out, { recursive: true });
writeFileSync(join(out, `hash-${results.date.replace(/[:.]/g, '-')}.json`), `${JSON.stringify(results, null, 2)}\n`);
process.exitCode = failed ? 1 : 0;
