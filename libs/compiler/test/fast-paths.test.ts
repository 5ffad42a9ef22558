// The compiler's fast paths (chain-name hashing, object sorting, rendering) against straightforward reference
// implementations.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { loadClusterState } from '@kpx/model';
import {
  RuleKind,
  compileIptables,
  defaultIptablesOptions,
  hash16,
  objectId,
  renderRestore,
  renderRestoreBytes,
  sortObjects,
  writeRestore,
  type NodeRuleSet,
  type RuleObject,
} from '../src/index.js';
import { scaleCluster } from './scale-fixture.js';

/** RFC 4648 base32 of sha256, bit by bit, first 16 characters. */
function referenceHash16(text: string): string {
  const bits = [...createHash('sha256').update(text).digest()].map((b) => b.toString(2).padStart(8, '0')).join('');
  let out = '';
  for (let i = 0; i < 16; i++) out += 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'[parseInt(bits.slice(i * 5, i * 5 + 5), 2)];
  return out;
}

test('hash16 is the first 16 base32 characters of sha256', () => {
  const inputs = [
    '',
    'a',
    'ns1/svc:p80tcp',
    'ns1/svc:p80tcp10.244.1.2:8080',
    'ns/s:dnsudp[fd00::1]:53',
    'é😀\u0000',
    'x'.repeat(1000),
  ];
  // Every length around the 64-byte blocks (padding into a second block from 56 bytes on); text that turns out
  // not to be ASCII after a block or more of it.
  for (let n = 0; n <= 200; n++) inputs.push('k'.repeat(n));
  inputs.push(`${'a'.repeat(70)}é`, `${'a'.repeat(55)}\u0080`);
  for (let i = 0; i < 300; i++)
    inputs.push(`ns${i % 7}/svc-${i}:${i % 3 ? 'http' : ''}tcp10.${i >> 8}.${i & 255}.${(i * 7) & 255}:${8000 + i}`);
  for (const s of inputs) assert.equal(hash16(s), referenceHash16(s), JSON.stringify(s.slice(0, 40)));
});

/** mulberry32 */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const byId = (a: { kind: string; key: string }, b: { kind: string; key: string }): number =>
  objectId(a) < objectId(b) ? -1 : objectId(a) > objectId(b) ? 1 : 0;

test('sortObjects on large arrays: the order of objectId, stable, whatever the keys', () => {
  const r = random(7);
  const alphabets = ['ab', 'abcdefghij/-:', 'AZaz09/-', 'aé😀\u0000z', '\u007f\u0080a'];
  for (let trial = 0; trial < 40; trial++) {
    const alphabet = [...(alphabets[trial % alphabets.length] ?? 'ab')];
    const kinds =
      trial % 4 === 3
        ? ['iptables', 'iptables.chain', 'iptables.c']
        : ['iptables.chain', 'iptables.jump', 'iptables.rules'];
    const prefix = trial % 2 ? 'nat/KUBE-SEP-' : '';
    const n = 60 + Math.floor(r() * 3000);
    const objects = Array.from({ length: n }, (_, i) => {
      const len = Math.floor(r() * (trial % 3 === 0 ? 3 : 12));
      const key =
        prefix + Array.from({ length: len }, () => alphabet[Math.floor(r() * alphabet.length)] ?? '').join('');
      return { kind: kinds[Math.floor(r() * kinds.length)] ?? '', key, i };
    });
    const reference = [...objects].sort(byId);
    assert.deepEqual(
      sortObjects([...objects]).map((o) => o.i),
      reference.map((o) => o.i),
      `trial ${trial}`,
    );
  }
});

test('sortObjects orders by objectId, stably, also for kinds that are prefixes of one another', () => {
  const kinds = ['iptables.chain', 'iptables.jump', 'iptables.rules', 'iptables', 'iptables.c', 'a', ''];
  const keys = [
    'nat/KUBE-SVC-X',
    'nat/KUBE-SEP-A',
    'filter/KUBE-SERVICES/ns/a:p/TCP',
    '',
    ':',
    'nat/KUBE-SEP-A',
    'z',
    ':x',
    'chain:zz',
  ];
  const objects: { kind: string; key: string; n: number }[] = [];
  let n = 0;
  for (const kind of kinds) for (const key of keys) objects.push({ kind, key, n: n++ });
  const shuffled = objects
    .map((o, i) => ({ o, k: (i * 7919) % objects.length }))
    .sort((a, b) => a.k - b.k)
    .map((x) => x.o);
  const reference = [...shuffled].sort((a, b) => (objectId(a) < objectId(b) ? -1 : objectId(a) > objectId(b) ? 1 : 0));
  assert.deepEqual(sortObjects([...shuffled]), reference);
});

test('renderRestore does not depend on the order of the objects it is given', () => {
  const { state } = loadClusterState(scaleCluster(40, 3).map((object) => ({ object, source: 'gen' })));
  const rs = compileIptables({ state, nodeName: 'n2', options: defaultIptablesOptions('IPv4') });
  const objects: RuleObject[] = [...rs.objects].reverse();
  const reversed: NodeRuleSet = { ...rs, objects };
  assert.ok(rs.objects.some((o) => o.kind === RuleKind.IptablesRules));
  assert.equal(renderRestore(reversed), renderRestore(rs));
  assert.equal(renderRestore(reversed, 'chains'), renderRestore(rs, 'chains'));
  // Shuffled: a table's chains no longer one run of objects, nor in name order.
  const next = random(7);
  const shuffled = [...rs.objects];
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [shuffled[i], shuffled[j]] = [shuffled[j] as RuleObject, shuffled[i] as RuleObject];
  }
  const mixed: NodeRuleSet = { ...rs, objects: shuffled };
  assert.equal(renderRestore(mixed), renderRestore(rs));
  assert.deepEqual(renderRestoreBytes(mixed), renderRestoreBytes(rs));
  assert.deepEqual(renderRestoreBytes(reversed, 'chains'), renderRestoreBytes(rs, 'chains'));
});

/** writeRestore's chunks, checked for size and copied out (each is valid only during its call). */
function chunksOf(rs: NodeRuleSet, format: 'full' | 'chains', chunkBytes?: number): Buffer {
  const chunks: Buffer[] = [];
  writeRestore(
    rs,
    format,
    (c) => {
      assert.ok(c.length > 0 && c.length <= (chunkBytes ?? 1 << 20), `chunk of ${c.length} bytes`);
      chunks.push(Buffer.from(c));
    },
    chunkBytes,
  );
  return Buffer.concat(chunks);
}

test('writeRestore hands out the UTF-8 of renderRestore in chunks, also for text that is not ASCII, wherever it is', () => {
  const { state } = loadClusterState(scaleCluster(40, 3).map((object) => ({ object, source: 'gen' })));
  const rs = compileIptables({ state, nodeName: 'n2', options: defaultIptablesOptions('IPv4') });
  const longest = Math.max(
    ...renderRestore(rs)
      .split('\n')
      .map((l) => l.length),
  );
  // The default chunk (the text fits in one), chunks that every line fits in, ending anywhere in a line, and
  // chunks too small for the longest lines.
  const sizes = [undefined, ...Array.from({ length: 24 }, (_, i) => longest + 6 + i), 4096, 40, 7];
  for (const format of ['full', 'chains'] as const) {
    const text = Buffer.from(renderRestore(rs, format));
    assert.deepEqual(renderRestoreBytes(rs, format), text);
    for (const size of sizes) assert.deepEqual(chunksOf(rs, format, size), text, `format ${format}, chunks of ${size}`);
  }
  // Rule text from hand-made objects (no compiler emits it): a character of 2, 3 or 4 bytes, or a lone surrogate,
  // in the first rule, in the last rule of the last chain, or in a jump.
  const chains = rs.objects.filter((o) => o.kind === RuleKind.IptablesChain);
  const lastChain = chains.at(-1);
  assert.ok(lastChain && lastChain.rules.length > 0);
  for (const odd of ['é', '€', '😀', '\ud800', 'ééééééééééééééééé', '😀'.repeat(40)]) {
    for (const where of ['first', 'last', 'jump'] as const) {
      const objects = rs.objects.map((o): RuleObject => {
        if (where === 'jump' && o.kind === RuleKind.IptablesJump && o.position === 0)
          return { ...o, rule: `${o.rule} -m comment --comment ${odd}` };
        if (o.kind !== RuleKind.IptablesChain) return o;
        if (where === 'first' && o === chains[0])
          return { ...o, rules: [`-m comment --comment ${odd} -j ACCEPT`, ...o.rules] };
        if (where === 'last' && o === lastChain) return { ...o, rules: [...o.rules, `-m comment --comment x${odd}`] };
        return o;
      });
      const odded: NodeRuleSet = { ...rs, objects };
      const text = renderRestore(odded);
      assert.ok(
        where === 'last' ? text.endsWith(`x${odd}\nCOMMIT\n`) : text.includes(odd),
        `${where} ${JSON.stringify(odd)}`,
      );
      const bytes = Buffer.from(text);
      for (const size of sizes)
        assert.deepEqual(chunksOf(odded, 'full', size), bytes, `${where} ${JSON.stringify(odd)}, chunks of ${size}`);
    }
  }
});

test('writeRestore: a character that is not ASCII, with a chunk boundary at every byte of its line', () => {
  // ASCII of every length modulo 4 before and after the characters: a cut write then ends at every alignment.
  for (const odd of ['é', '€', '😀', '\ud800', 'é'.repeat(20), '€'.repeat(20), '😀'.repeat(20)]) {
    for (const pad of ['x', 'xx', 'xxx', 'xxxx']) {
      for (const rule of [`-m comment --comment ${pad}${odd} -j ACCEPT`, `-m comment --comment ${pad}${odd}`]) {
        const rs: NodeRuleSet = {
          node: 'n',
          mode: 'iptables',
          family: 'IPv4',
          objects: [
            {
              kind: RuleKind.IptablesChain,
              key: 'nat/KUBE-SVC-X',
              table: 'nat',
              chain: 'KUBE-SVC-X',
              rules: ['-j ACCEPT', rule, '-j DROP'],
            },
          ],
        };
        const bytes = Buffer.from(renderRestore(rs, 'chains'));
        for (let size = 8; size <= bytes.length + 8; size++)
          assert.deepEqual(chunksOf(rs, 'chains', size), bytes, `${JSON.stringify(rule)}, chunks of ${size}`);
      }
    }
  }
});
