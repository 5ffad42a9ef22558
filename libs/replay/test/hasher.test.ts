// ObjectHasher must hash exactly as @kpx/ruleset does: the digests replay computes are compared with the
// controller's and the executors'.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RuleKind, type RuleObject } from '@kpx/proto';
import { RuleState, hashed, objectHash } from '@kpx/ruleset';
import { ObjectHasher } from '../src/hasher.js';

const chain = (name: string, rules: number, width = 60): RuleObject => ({
  kind: RuleKind.IptablesChain,
  key: `nat/${name}`,
  payload: {
    $case: 'iptablesChain',
    value: { table: 'nat', name, rules: Array.from({ length: rules }, (_, i) => `-m comment --comment "ns/${name}:${i}" -j KUBE-SEP-${'X'.repeat(width)}${i}`) },
  },
});

/** Objects of every shape replay meets, of very different sizes, in an order that shrinks and grows again. */
function objects(): RuleObject[] {
  return [
    chain('KUBE-SVC-BIG', 5000, 200),
    { kind: RuleKind.IptablesChain, key: 'nat/KUBE-EMPTY', payload: { $case: 'iptablesChain', value: { table: 'nat', name: 'KUBE-EMPTY', rules: [] } } },
    { kind: RuleKind.IptablesJump, key: 'nat/PREROUTING/KUBE-SERVICES', payload: { $case: 'iptablesJump', value: { table: 'nat', chain: 'PREROUTING', target: 'KUBE-SERVICES', rule: '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES', prepend: true, position: 0 } } },
    chain('KUBE-SVC-MID', 40),
    { kind: RuleKind.IptablesRules, key: 'nat/KUBE-SERVICES/ns/web:http', payload: { $case: 'iptablesRules', value: { table: 'nat', chain: 'KUBE-SERVICES', rules: ['-d 10.96.0.10/32 -p tcp --dport 80 -j KUBE-SVC-MID'], position: 1 } } },
    { kind: RuleKind.IpvsAddress, key: 'kube-ipvs0/10.96.0.10', payload: { $case: 'ipvsAddress', value: { interface: 'kube-ipvs0', address: '10.96.0.10' } } },
    // Non-ASCII text takes the writer's UTF-8 path instead of its ASCII fast path.
    { kind: RuleKind.IptablesChain, key: 'nat/KUBE-SVC-ÜNÏCODE', payload: { $case: 'iptablesChain', value: { table: 'nat', name: 'KUBE-SVC-ÜNÏCODE', rules: ['-m comment --comment "ns/café:http ✓" -j KUBE-SEP-Ω'] } } },
    { kind: 'unknown.kind', key: 'no-payload', payload: undefined },
    chain('KUBE-SVC-SMALL', 1),
    chain('KUBE-SVC-BIG-AGAIN', 3000, 120),
    chain('KUBE-SVC-TINY', 0),
  ];
}

describe('ObjectHasher', () => {
  it('hashes every object as objectHash does, reusing one writer across sizes', () => {
    const hasher = new ObjectHasher();
    for (const o of objects()) {
      const mine = hasher.hashed(o);
      const theirs = hashed(o);
      assert.equal(mine.id, theirs.id);
      assert.equal(mine.hash, objectHash(o), `hash of ${o.key}`);
      assert.equal(mine.wire, o);
    }
  });

  it('builds the state RuleState.from builds: same digest, generation and objects', () => {
    const list = objects();
    const mine = new ObjectHasher().stateOf(list, 42);
    const theirs = RuleState.from(list, 42);
    assert.equal(mine.digest, theirs.digest);
    assert.equal(mine.generation, 42);
    assert.deepEqual([...mine.objects.keys()].sort(), [...theirs.objects.keys()].sort());
    for (const [id, o] of theirs.objects) assert.equal(mine.objects.get(id)?.hash, o.hash, id);
  });

  it('gives different hashes to different objects', () => {
    const hasher = new ObjectHasher();
    const a = hasher.hashed(chain('KUBE-SVC-A', 3));
    const b = hasher.hashed(chain('KUBE-SVC-A', 4));
    assert.notEqual(a.hash, b.hash);
  });
});
