// Pure parts of the IPVS side of @kpx/kernel (the kernel itself is exercised by test/ipvs inside tools/ipvs-vm).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RuleObject } from '@kpx/proto';
import {
  IpvsState,
  addressBytes,
  addressText,
  diffObjects,
  entryKey,
  isOwnedSet,
  parseIpsetSave,
  serviceKey,
} from '../src/index.js';

const service = (key: string, value: object): RuleObject => ({
  kind: 'ipvs.service',
  key,
  payload: {
    $case: 'ipvsService',
    value: {
      protocol: 'TCP',
      address: '10.96.0.10',
      port: 80,
      scheduler: 'rr',
      flags: 0,
      timeoutSeconds: 0,
      realServers: [],
      ...value,
    },
  },
});

test('addresses round-trip between text and bytes, IPv6 canonical as @kpx/model prints it', () => {
  assert.deepEqual([...addressBytes('10.96.0.10')], [10, 96, 0, 10]);
  for (const [text, canon] of [
    ['fd00::a', 'fd00::a'],
    ['FD00:0:0:0:0:0:0:A', 'fd00::a'],
    ['::1', '::1'],
    ['fd00:10:244:1::10', 'fd00:10:244:1::10'],
    ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'],
    ['::ffff:10.0.0.1', '10.0.0.1'], // IPv4-mapped prints as IPv4, as @kpx/model (and Go) print it
  ])
    assert.equal(addressText(addressBytes(text!), 10), canon, text);
  assert.equal(serviceKey({ protocol: 'UDP', address: 'fd00::a', port: 53 }), 'UDP/[fd00::a]:53');
});

test('ipset save parses into sets with canonical entries; kpx owns KUBE-* sets of its family only', () => {
  const sets = parseIpsetSave(
    [
      'create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1',
      'add KUBE-CLUSTER-IP 10.96.0.10,tcp:80',
      'create KUBE-NODE-PORT-TCP bitmap:port range 0-65535',
      'add KUBE-NODE-PORT-TCP 30080',
      'create KUBE-LOAD-BALANCER-SOURCE-CIDR hash:ip,port,net family inet hashsize 1024 maxelem 65536',
      'add KUBE-LOAD-BALANCER-SOURCE-CIDR 192.0.2.1,tcp:80,10.0.0.0/24 comment "x"',
    ].join('\n'),
  );
  assert.deepEqual([...sets.keys()], ['KUBE-CLUSTER-IP', 'KUBE-NODE-PORT-TCP', 'KUBE-LOAD-BALANCER-SOURCE-CIDR']);
  assert.equal(sets.get('KUBE-CLUSTER-IP')?.maxElem, 65536);
  assert.equal(sets.get('KUBE-NODE-PORT-TCP')?.portRange, '0-65535');
  assert.deepEqual([...sets.get('KUBE-LOAD-BALANCER-SOURCE-CIDR')!.entries], ['192.0.2.1,tcp:80,10.0.0.0/24']);
  assert.equal(entryKey('10.0.0.1/32'), '10.0.0.1');
  assert.equal(entryKey('10.96.0.10,TCP:80'), '10.96.0.10,tcp:80');
  assert.ok(isOwnedSet('KUBE-CLUSTER-IP', 'inet', 'IPv4'));
  assert.ok(!isOwnedSet('KUBE-CLUSTER-IP', 'inet', 'IPv6'));
  assert.ok(isOwnedSet('KUBE-6-NODE-PORT-TCP', '', 'IPv6'));
  assert.ok(!isOwnedSet('KUBE-6-NODE-PORT-TCP', '', 'IPv4'));
  assert.ok(!isOwnedSet('OTHER', 'inet', 'IPv4'));
});

test('the state validates objects naming them and counts set members across fragments', () => {
  assert.throws(
    () => IpvsState.from([service('TCP/10.96.0.10:80', { scheduler: 'no such' })]),
    /ipvs\.service "TCP\/10\.96\.0\.10:80": scheduler "no such"/,
  );
  assert.throws(() => IpvsState.from([service('TCP/10.96.0.11:80', {})]), /key does not match/);
  assert.throws(() => IpvsState.from([service('TCP/10.96.0.10:80', { port: 70000 })]), /port 70000/);
  const frag = (owner: string, entries: string[]): RuleObject => ({
    kind: 'ipset.entries',
    key: `KUBE-CLUSTER-IP/${owner}`,
    payload: { $case: 'ipsetEntries', value: { set: 'KUBE-CLUSTER-IP', entries } },
  });
  assert.throws(() => IpvsState.from([frag('a', ['10.96.0.10,tcp:80'])]), /set KUBE-CLUSTER-IP is not declared/);
  const set: RuleObject = {
    kind: 'ipset.set',
    key: 'KUBE-CLUSTER-IP',
    payload: {
      $case: 'ipsetSet',
      value: {
        name: 'KUBE-CLUSTER-IP',
        type: 'hash:ip,port',
        family: 'inet',
        comment: '',
        hashSize: 0,
        maxElem: 0,
        portRange: '',
        entries: [],
      },
    },
  };
  const s = IpvsState.from([
    set,
    frag('a', ['10.96.0.10,tcp:80']),
    frag('b', ['10.96.0.10,tcp:80', '10.96.0.11,tcp:80']),
  ]);
  assert.deepEqual([...s.members('KUBE-CLUSTER-IP')].sort(), ['10.96.0.10,tcp:80', '10.96.0.11,tcp:80']);
  s.remove({ kind: 'ipset.entries', key: 'KUBE-CLUSTER-IP/b' });
  assert.ok(s.hasMember('KUBE-CLUSTER-IP', '10.96.0.10,tcp:80'), 'still given by fragment a');
  assert.ok(!s.hasMember('KUBE-CLUSTER-IP', '10.96.0.11,tcp:80'));
});

test('diffObjects names missing, unwanted and changed objects', () => {
  const a = service('TCP/10.96.0.10:80', {});
  const b = service('TCP/10.96.0.10:80', { scheduler: 'wrr' });
  const c = service('TCP/10.96.0.12:80', { address: '10.96.0.12' });
  assert.deepEqual(diffObjects([a], [a]), []);
  assert.deepEqual(diffObjects([a], [b, c]), [
    'ipvs.service TCP/10.96.0.10:80: differs (scheduler wrr instead of rr)',
    'ipvs.service TCP/10.96.0.12:80: not wanted',
  ]);
  assert.deepEqual(diffObjects([a, c], []), [
    'ipvs.service TCP/10.96.0.10:80: missing',
    'ipvs.service TCP/10.96.0.12:80: missing',
  ]);
});
