import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RuleObject } from '@kpx/proto';
import { Digest, RuleSetError, RuleState, diffStates, digestOf, objectHash } from '../src/index.js';

const chain = (name: string, ...rules: string[]): RuleObject => ({ kind: 'iptables.chain', key: `nat/${name}`, payload: { $case: 'iptablesChain', value: { table: 'nat', name, rules } } });

test('digest is order-independent, incremental, 64 hex chars', () => {
  const objs = [chain('A', '-j RETURN'), chain('B'), chain('C', '-j X', '-j Y')];
  const d1 = digestOf(objs);
  assert.equal(d1, digestOf([...objs].reverse()));
  assert.match(d1, /^[0-9a-f]{64}$/);
  const d = new Digest();
  for (const o of objs) d.add(objectHash(o));
  d.remove(objectHash(objs[1]!));
  assert.equal(d.hex(), digestOf([objs[0]!, objs[2]!]));
  assert.equal(new Digest().hex(), '0'.repeat(64));
  assert.notEqual(digestOf([chain('A', '-j RETURN')]), digestOf([chain('A', '-j ACCEPT')]), 'content counts');
  assert.notEqual(digestOf([chain('C', '-j X', '-j Y')]), digestOf([chain('C', '-j Y', '-j X')]), 'rule order counts');
});

test('diff then apply reaches the target state and digest; chain breaks and digest mismatches are refused', () => {
  const prev = RuleState.from([chain('A', '1'), chain('B', '2'), chain('C', '3')], 4);
  const next = RuleState.from([chain('A', '1'), chain('B', '2b'), chain('D', '4')]);
  const { upserts, deletes } = diffStates(prev.objects, next.objects);
  assert.deepEqual(upserts.map((u) => u.id), ['iptables.chain:nat/B', 'iptables.chain:nat/D']);
  assert.deepEqual(deletes, [{ kind: 'iptables.chain', key: 'nat/C' }]);
  const delta = { generation: 9, prevGeneration: 4, upserts: upserts.map((u) => u.wire), deletes, digest: next.digest };
  assert.throws(() => prev.applyDelta({ ...delta, prevGeneration: 3 }), RuleSetError);
  const before = prev.digest;
  assert.throws(() => prev.applyDelta({ ...delta, digest: 'f'.repeat(64) }), /digest/);
  assert.equal(prev.digest, before, 'a refused delta leaves the state unchanged');
  assert.equal(prev.generation, 4);
  prev.applyDelta(delta);
  assert.equal(prev.digest, next.digest);
  assert.equal(prev.generation, 9);
  assert.deepEqual(prev.sortedObjects(), next.sortedObjects());
});

