// The IPVS applier's applied state after a failed delta, with a fake kernel, ipset and iptables (the real kernel is
// exercised by test/ipvs inside tools/ipvs-vm): the state must be exactly the one before the delta, so the next
// delta or full restore starts from what kpx last applied.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RuleObject } from '@kpx/proto';
import { IpvsApplier, NetlinkError, type IpvsOp, type IpvsKernel, type IptablesApplier } from '../src/index.js';

const svc = (address: string, port: number, servers: string[]): RuleObject => ({
  kind: 'ipvs.service',
  key: `TCP/${address}:${port}`,
  payload: {
    $case: 'ipvsService',
    value: {
      protocol: 'TCP',
      address,
      port,
      scheduler: 'rr',
      flags: 0,
      timeoutSeconds: 0,
      realServers: servers.map((a) => ({ address: a, port: 8080, weight: 1 })),
    },
  },
});
const vip = (address: string): RuleObject => ({
  kind: 'ipvs.address',
  key: `kube-ipvs0/${address}`,
  payload: { $case: 'ipvsAddress', value: { interface: 'kube-ipvs0', address } },
});
const setOf = (name: string): RuleObject => ({
  kind: 'ipset.set',
  key: name,
  payload: {
    $case: 'ipsetSet',
    value: {
      name,
      type: 'hash:ip,port',
      family: 'inet',
      comment: '',
      hashSize: 0,
      maxElem: 0,
      portRange: '',
      entries: [],
    },
  },
});
const set = setOf('KUBE-CLUSTER-IP');
const members = (owner: string, entries: string[]): RuleObject => ({
  kind: 'ipset.entries',
  key: `KUBE-CLUSTER-IP/${owner}`,
  payload: { $case: 'ipsetEntries', value: { set: 'KUBE-CLUSTER-IP', entries } },
});
const chain: RuleObject = {
  kind: 'iptables.chain',
  key: 'nat/KUBE-SERVICES',
  payload: { $case: 'iptablesChain', value: { table: 'nat', name: 'KUBE-SERVICES', rules: ['-j RETURN'] } },
};

/** A kernel that accepts everything until `failing` is set; then every IPVS operation fails. */
class FakeKernel implements IpvsKernel {
  failing = false;
  readonly applied: IpvsOp[] = [];
  listServices = () => Promise.resolve([]);
  listDestinations = () => Promise.resolve([]);
  apply(ops: readonly IpvsOp[]): Promise<NetlinkError[]> {
    if (this.failing) return Promise.resolve(ops.map((o) => new NetlinkError(o.op, 1, 'EPERM')));
    this.applied.push(...ops);
    return Promise.resolve([]);
  }
  ensureDummy = () => Promise.resolve();
  linkAddresses = () => Promise.resolve([]);
  changeAddresses = () => Promise.resolve([]);
  deleteLink = () => Promise.resolve();
  flush = () => Promise.resolve();
  close = () => Promise.resolve();
}

function applier(): { applier: IpvsApplier; kernel: FakeKernel } {
  const kernel = new FakeKernel();
  const runner = { netns: undefined, run: () => Promise.resolve({ stdout: '', stderr: '' }) };
  const iptables = {
    fullRestore: () => Promise.resolve(),
    applyDelta: () => Promise.resolve(),
    readBack: () => Promise.resolve({ objects: [], digest: '' }),
  } as unknown as IptablesApplier;
  return {
    applier: new IpvsApplier({ family: 'IPv4', kernel, runner, iptables, sysctls: false, drainIntervalMs: 0 }),
    kernel,
  };
}

/** Everything the applied state holds, in a comparable form. */
function snapshot(a: IpvsApplier): unknown {
  const s = a.state;
  return {
    objects: new Map(s.objects),
    services: new Map(s.services),
    addresses: new Map(s.addresses),
    sets: new Map(s.sets),
    fragments: new Map(s.fragments),
    members: [...s.members('KUBE-CLUSTER-IP')].sort(),
  };
}

test('a delta the kernel refuses, or with an object that fails validation half way, leaves the applied state as it was', async () => {
  const { applier: a, kernel } = applier();
  await a.fullRestore([
    svc('10.96.0.10', 80, ['10.244.1.2']),
    vip('10.96.0.10'),
    vip('10.96.0.11'),
    set,
    members('a', ['10.96.0.10,tcp:80']),
    chain,
  ]);
  const before = snapshot(a);
  const change = {
    upserts: [
      svc('10.96.0.10', 80, ['10.244.1.3']),
      svc('10.96.0.12', 80, ['10.244.1.4']),
      members('a', ['10.96.0.12,tcp:80']),
      members('b', ['10.96.0.10,tcp:80']),
      {
        ...chain,
        payload: { $case: 'iptablesChain' as const, value: { table: 'nat', name: 'KUBE-SERVICES', rules: [] } },
      },
    ],
    deletes: [
      { kind: 'ipvs.address', key: 'kube-ipvs0/10.96.0.11' },
      { kind: 'ipvs.service', key: 'TCP/10.96.0.99:80' },
    ],
  };
  kernel.failing = true;
  await assert.rejects(a.applyDelta(change), /delta: \d+ operation\(s\) failed/);
  assert.deepEqual(snapshot(a), before, 'the kernel refused the delta: the state is the one before it');
  kernel.failing = false;
  const bad = svc('10.96.0.13', 80, ['10.244.1.9']);
  const invalid = {
    ...bad,
    payload: {
      $case: 'ipvsService' as const,
      value: { ...(bad.payload as { value: object }).value, scheduler: 'no such' },
    },
  } as RuleObject;
  await assert.rejects(
    a.applyDelta({ upserts: [...change.upserts, invalid], deletes: change.deletes }),
    /scheduler "no such"/,
  );
  assert.deepEqual(snapshot(a), before, 'an invalid object after valid ones: the state is the one before the delta');
  await assert.rejects(
    a.applyDelta({
      upserts: [members('c', ['10.96.0.14,tcp:80']), setOf('KUBE-OTHER')],
      deletes: [{ kind: 'ipset.set', key: 'KUBE-CLUSTER-IP' }],
    }),
    /set KUBE-CLUSTER-IP is not declared/,
  );
  assert.deepEqual(snapshot(a), before, 'fragments of a deleted set: the state is the one before the delta');
  // The same delta applies once the kernel takes it.
  await a.applyDelta(change);
  assert.deepEqual([...a.state.services.keys()].sort(), ['TCP/10.96.0.10:80', 'TCP/10.96.0.12:80']);
  assert.deepEqual([...a.state.addresses.keys()], ['kube-ipvs0/10.96.0.10']);
  assert.deepEqual([...a.state.members('KUBE-CLUSTER-IP')].sort(), ['10.96.0.10,tcp:80', '10.96.0.12,tcp:80']);
  const op = (o: IpvsOp): string => `${o.op} ${o.service.address}${'dest' in o ? ` ${o.dest.address}` : ''}`;
  assert.deepEqual(
    kernel.applied.map(op),
    [
      'addService 10.96.0.10',
      'addDest 10.96.0.10 10.244.1.2',
      'addDest 10.96.0.10 10.244.1.3',
      'addService 10.96.0.12',
      'addDest 10.96.0.12 10.244.1.4',
    ],
    'only the delta after the full restore, once',
  );
  await a.close();
});
