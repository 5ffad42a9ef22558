// The compiler's fast paths (chain-name hashing, object sorting, rendering) against straightforward reference
// implementations.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { loadClusterState } from '@kpx/model';
import { RuleKind, compileIptables, defaultIptablesOptions, hash16, objectId, renderRestore, sortObjects, type NodeRuleSet, type RuleObject } from '../src/index.js';
import { scaleCluster } from './scale-fixture.js';

/** RFC 4648 base32 of sha256, bit by bit, first 16 characters. */
function referenceHash16(text: string): string {
  const bits = [...createHash('sha256').update(text).digest()].map((b) => b.toString(2).padStart(8, '0')).join('');
  let out = '';
  for (let i = 0; i < 16; i++) out += 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'[parseInt(bits.slice(i * 5, i * 5 + 5), 2)];
  return out;
}

test('hash16 is the first 16 base32 characters of sha256', () => {
  const inputs = ['', 'a', 'ns1/svc:p80tcp', 'ns1/svc:p80tcp10.244.1.2:8080', 'ns/s:dnsudp[fd00::1]:53', 'é😀\u0000', 'x'.repeat(1000)];
  for (let i = 0; i < 300; i++) inputs.push(`ns${i % 7}/svc-${i}:${i % 3 ? 'http' : ''}tcp10.${i >> 8}.${i & 255}.${(i * 7) & 255}:${8000 + i}`);
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

const byId = (a: { kind: string; key: string }, b: { kind: string; key: string }): number => (objectId(a) < objectId(b) ? -1 : objectId(a) > objectId(b) ? 1 : 0);

test('sortObjects on large arrays: the order of objectId, stable, whatever the keys', () => {
  const r = random(7);
  const alphabets = ['ab', 'abcdefghij/-:', 'AZaz09/-', 'aé😀\u0000z', '\u007f\u0080a'];
  for (let trial = 0; trial < 40; trial++) {
    const alphabet = [...(alphabets[trial % alphabets.length] ?? 'ab')];
    const kinds = trial % 4 === 3 ? ['iptables', 'iptables.chain', 'iptables.c'] : ['iptables.chain', 'iptables.jump', 'iptables.rules'];
    const prefix = trial % 2 ? 'nat/KUBE-SEP-' : '';
    const n = 60 + Math.floor(r() * 3000);
    const objects = Array.from({ length: n }, (_, i) => {
      const len = Math.floor(r() * (trial % 3 === 0 ? 3 : 12));
      const key = prefix + Array.from({ length: len }, () => alphabet[Math.floor(r() * alphabet.length)] ?? '').join('');
      return { kind: kinds[Math.floor(r() * kinds.length)] ?? '', key, i };
    });
    const reference = [...objects].sort(byId);
    assert.deepEqual(sortObjects([...objects]).map((o) => o.i), reference.map((o) => o.i), `trial ${trial}`);
  }
});

test('sortObjects orders by objectId, stably, also for kinds that are prefixes of one another', () => {
  const kinds = ['iptables.chain', 'iptables.jump', 'iptables.rules', 'iptables', 'iptables.c', 'a', ''];
  const keys = ['nat/KUBE-SVC-X', 'nat/KUBE-SEP-A', 'filter/KUBE-SERVICES/ns/a:p/TCP', '', ':', 'nat/KUBE-SEP-A', 'z', ':x', 'chain:zz'];
  const objects: { kind: string; key: string; n: number }[] = [];
  let n = 0;
  for (const kind of kinds) for (const key of keys) objects.push({ kind, key, n: n++ });
  const shuffled = objects.map((o, i) => ({ o, k: (i * 7919) % objects.length })).sort((a, b) => a.k - b.k).map((x) => x.o);
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
});
