import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createHash } from 'node:crypto';
import { RuleKind, RuleObject } from '@kpx/proto';
import {
  Digest,
  DigestMismatchError,
  RuleSetError,
  RuleState,
  diffStates,
  digestOf,
  hashed,
  objectHash,
} from '../src/index.js';

const chain = (name: string, ...rules: string[]): RuleObject => ({
  kind: 'iptables.chain',
  key: `nat/${name}`,
  payload: { $case: 'iptablesChain', value: { table: 'nat', name, rules } },
});

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
  assert.deepEqual(
    upserts.map((u) => u.id),
    ['iptables.chain:nat/B', 'iptables.chain:nat/D'],
  );
  assert.deepEqual(deletes, [{ kind: 'iptables.chain', key: 'nat/C' }]);
  const delta = { generation: 9, prevGeneration: 4, upserts: upserts.map((u) => u.wire), deletes, digest: next.digest };
  assert.throws(() => prev.apply({ ...delta, prevGeneration: 3 }), RuleSetError);
  const before = prev.digest;
  assert.throws(
    () => prev.apply({ ...delta, digest: 'f'.repeat(64) }),
    (err: unknown) =>
      err instanceof DigestMismatchError &&
      err.reached === next.digest &&
      /reaches digest .*; state stays at generation 4$/.test(err.message),
  );
  assert.equal(prev.digest, before, 'a refused delta leaves the state unchanged');
  assert.equal(prev.generation, 4);
  prev.apply(delta);
  assert.equal(prev.digest, next.digest);
  assert.equal(prev.generation, 9);
  assert.deepEqual(prev.sortedObjects(), next.sortedObjects());
});

test('undo puts back the objects, digest and generation an applied delta changed', () => {
  const start = [chain('A', '1'), chain('B', '2'), chain('C', '3')];
  const state = RuleState.from(start, 4);
  const before = { digest: state.digest, objects: new Map(state.objects) };
  // A delete of an object that is not there, a replaced one, a new one, a deleted one, one touched twice.
  const delta = {
    generation: 5,
    prevGeneration: 4,
    upserts: [chain('B', '2b'), chain('D', '4'), chain('A', '1b')],
    deletes: [chain('C'), chain('Z'), chain('A')],
    digest: '',
  };
  const token = state.apply(delta);
  assert.equal(state.generation, 5);
  assert.deepEqual(state.sortedObjects(), [chain('A', '1b'), chain('B', '2b'), chain('D', '4')]);
  assert.deepEqual(
    [...token.previous.keys()],
    [
      'iptables.chain:nat/C',
      'iptables.chain:nat/Z',
      'iptables.chain:nat/A',
      'iptables.chain:nat/B',
      'iptables.chain:nat/D',
    ],
  );
  assert.equal(
    token.previous.get('iptables.chain:nat/A'),
    before.objects.get('iptables.chain:nat/A'),
    'the object before the first change to it',
  );
  assert.equal(token.previous.get('iptables.chain:nat/D'), undefined);
  assert.deepEqual(
    token.upserts.map((u) => [u.id, u.hash]),
    delta.upserts.map((u) => [hashed(u).id, objectHash(u)]),
  );
  assert.equal(token.deletes, delta.deletes);
  state.undo(token);
  assert.equal(state.generation, 4);
  assert.equal(state.digest, before.digest);
  assert.deepEqual(state.objects, before.objects);
  assert.deepEqual(state.sortedObjects(), RuleState.from(start).sortedObjects());
  assert.throws(() => state.undo(token), /cannot undo delta 5: the state is at generation 4/);
  // The state moves on after an undo as if the delta had never come.
  state.apply({ ...delta, digest: digestOf([chain('A', '1b'), chain('B', '2b'), chain('D', '4')]) });
  assert.equal(state.generation, 5);
});

/** The hash as defined: SHA-256 of the object's protobuf encoding, a fresh writer and Hash each time. */
const referenceHash = (o: RuleObject): bigint =>
  BigInt(`0x${createHash('sha256').update(RuleObject.encode(o).finish()).digest('hex')}`);

const sized = (name: string, rules: number, width = 60): RuleObject =>
  chain(
    name,
    ...Array.from(
      { length: rules },
      (_, i) => `-m comment --comment "ns/${name}:${i}" -j KUBE-SEP-${'X'.repeat(width)}${i}`,
    ),
  );

test('objectHash is the SHA-256 of the encoding whatever came before (one writer reused across sizes, and after an encode that threw)', () => {
  const objects: RuleObject[] = [
    sized('KUBE-SVC-BIG', 5000, 200),
    chain('KUBE-EMPTY'),
    {
      kind: RuleKind.IptablesJump,
      key: 'nat/PREROUTING/KUBE-SERVICES',
      payload: {
        $case: 'iptablesJump',
        value: {
          table: 'nat',
          chain: 'PREROUTING',
          target: 'KUBE-SERVICES',
          rule: '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
          prepend: true,
          position: 2,
        },
      },
    },
    sized('KUBE-SVC-MID', 40),
    {
      kind: RuleKind.IptablesRules,
      key: 'nat/KUBE-SERVICES/ns/web:http',
      payload: {
        $case: 'iptablesRules',
        value: {
          table: 'nat',
          chain: 'KUBE-SERVICES',
          rules: ['-d 10.96.0.10/32 -p tcp --dport 80 -j KUBE-SVC-MID'],
          position: 1,
        },
      },
    },
    {
      kind: RuleKind.IpvsAddress,
      key: 'kube-ipvs0/10.96.0.10',
      payload: { $case: 'ipvsAddress', value: { interface: 'kube-ipvs0', address: '10.96.0.10' } },
    },
    // Non-ASCII text takes the writer's UTF-8 path instead of its ASCII fast path.
    chain('KUBE-SVC-ÜNÏCODE', '-m comment --comment "ns/café:http ✓" -j KUBE-SEP-Ω'),
    { kind: 'unknown.kind', key: 'no-payload', payload: undefined },
    sized('KUBE-SVC-SMALL', 1),
    sized('KUBE-SVC-BIG-AGAIN', 3000, 120),
    sized('KUBE-SVC-TINY', 0),
  ];
  for (const o of objects) assert.equal(objectHash(o), referenceHash(o), `hash of ${o.key}`);
  // An encode that fails half way (a position that is no uint32) must not leave its bytes in the next object's hash.
  const broken: RuleObject = {
    kind: RuleKind.IptablesRules,
    key: 'nat/KUBE-SERVICES/broken',
    payload: { $case: 'iptablesRules', value: { table: 'nat', chain: 'KUBE-SERVICES', rules: ['-j A'], position: -1 } },
  };
  assert.throws(() => objectHash(broken), /uint32/);
  for (const o of objects.slice(0, 3))
    assert.equal(objectHash(o), referenceHash(o), `hash of ${o.key} after a failed encode`);
  assert.notEqual(objectHash(sized('KUBE-SVC-A', 3)), objectHash(sized('KUBE-SVC-A', 4)));
});
