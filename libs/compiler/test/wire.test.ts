// Compiler objects on the wire: every kind keeps its fields, jumps their position; sameWire and sameIpvsWire tell
// equal objects from different ones.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RuleKind, sameWire, toWire, type RuleObject } from '../src/index.js';
import { sameIpvsWire } from '../src/ipvs/mode.js';

const objects: RuleObject[] = [
  { kind: RuleKind.IptablesChain, key: 'nat/KUBE-SVC-X', table: 'nat', chain: 'KUBE-SVC-X', rules: ['-j KUBE-SEP-Y'] },
  {
    kind: RuleKind.IptablesRules,
    key: 'nat/KUBE-SERVICES/ns/a:p/TCP',
    table: 'nat',
    chain: 'KUBE-SERVICES',
    rules: ['-d 10.0.0.1 -j KUBE-SVC-X'],
    position: 1,
  },
  {
    kind: RuleKind.IptablesJump,
    key: 'nat/PREROUTING/KUBE-SERVICES',
    table: 'nat',
    chain: 'PREROUTING',
    target: 'KUBE-SERVICES',
    rule: '-j KUBE-SERVICES',
    position: 2,
  },
  {
    kind: RuleKind.IpvsService,
    key: 'TCP/10.96.0.10:53',
    protocol: 'TCP',
    address: '10.96.0.10',
    port: 53,
    scheduler: 'rr',
    flags: 3,
    timeoutSeconds: 10800,
    realServers: [{ address: '10.244.1.2', port: 5353, weight: 1 }],
  },
  { kind: RuleKind.IpvsAddress, key: 'kube-ipvs0/10.96.0.10', interface: 'kube-ipvs0', address: '10.96.0.10' },
  {
    kind: RuleKind.IpsetSet,
    key: 'KUBE-CLUSTER-IP',
    name: 'KUBE-CLUSTER-IP',
    type: 'hash:ip,port',
    family: 'inet',
    comment: 'c',
    hashSize: 1024,
    maxElem: 65536,
    portRange: '',
    entries: ['x'],
  },
  {
    kind: RuleKind.IpsetEntries,
    key: 'KUBE-CLUSTER-IP/ns/a:p/TCP',
    set: 'KUBE-CLUSTER-IP',
    entries: ['10.96.0.10,tcp:53'],
  },
  { kind: RuleKind.HealthCheckService, key: '30123', namespace: 'ns', name: 'a', port: 30123, localEndpoints: 2 },
];

test('toWire: every field of every kind in its payload, a jump prepended at its position', () => {
  for (const o of objects) {
    const w = toWire(o);
    assert.equal(w.kind, o.kind);
    assert.equal(w.key, o.key);
    const { kind: _kind, key: _key, ...fields } = o;
    const value = w.payload?.value as unknown as Record<string, unknown>;
    for (const [name, v] of Object.entries(fields)) {
      // The chain object names its chain `name` on the wire.
      const wireName = o.kind === RuleKind.IptablesChain && name === 'chain' ? 'name' : name;
      assert.deepEqual(value[wireName], v, `${o.kind} ${name}`);
    }
  }
  assert.deepEqual(toWire(objects[2]!).payload, {
    $case: 'iptablesJump',
    value: {
      table: 'nat',
      chain: 'PREROUTING',
      target: 'KUBE-SERVICES',
      rule: '-j KUBE-SERVICES',
      prepend: true,
      position: 2,
    },
  });
});

test('sameWire: equal iptables, ipset entries and health check objects; a changed field, another kind or IPVS kinds are not', () => {
  for (const o of objects) {
    const compared = o.kind !== RuleKind.IpvsService && o.kind !== RuleKind.IpvsAddress && o.kind !== RuleKind.IpsetSet;
    assert.equal(sameWire(toWire(o), toWire(o)), compared, o.kind);
    assert.equal(
      sameIpvsWire(toWire(o), toWire(o)),
      o.kind === RuleKind.IpvsService || o.kind === RuleKind.IpvsAddress,
      o.kind,
    );
  }
  const jump = objects[2] as Extract<RuleObject, { kind: 'iptables.jump' }>;
  assert.equal(sameWire(toWire(jump), toWire({ ...jump, position: 0 })), false, 'the position counts');
  assert.equal(sameWire(toWire(jump), toWire({ ...jump, rule: '-j X' })), false);
  const svc = objects[3] as Extract<RuleObject, { kind: 'ipvs.service' }>;
  assert.equal(
    sameIpvsWire(toWire(svc), toWire({ ...svc, realServers: [{ address: '10.244.1.2', port: 5353, weight: 0 }] })),
    false,
    'a drained server counts',
  );
  assert.equal(sameWire(toWire(objects[0]!), toWire(objects[1]!)), false);
});
