// The IPVS applier against the real kernel (run inside tools/ipvs-vm: `npm run test:ipvs`): services and real
// servers over netlink, VIPs on kube-ipvs0, KUBE-* ipsets, read-back, drift made behind its back, graceful removal.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { compileIpvs, defaultIpvsOptions, toWire } from '@kpx/compiler';
import { createIpvsApplier, diffObjects, type IpvsApplier } from '@kpx/kernel';
import { loadClusterState, readManifestDir } from '@kpx/model';
import { isDuty, type RuleObject } from '@kpx/proto';
import { digestOf } from '@kpx/ruleset';
import { run } from '@kpx/testing';
import { ipset, members, svc, vip } from './helpers.js';

const NS = `kpxipvs${process.pid % 10000}`;
const inNs = async (cmd: string, ...args: string[]): Promise<string> =>
  (await run('ip', ['netns', 'exec', NS, cmd, ...args])).stdout;
let applier: IpvsApplier;

before(async () => {
  await run('ip', ['netns', 'add', NS]);
  await inNs('ip', 'link', 'set', 'lo', 'up');
  applier = createIpvsApplier({ family: 'IPv4', netns: NS, drainIntervalMs: 0, excludeCidrs: ['192.168.77.0/24'] });
});
after(async () => {
  await applier?.close();
  await run('ip', ['netns', 'del', NS]).catch(() => undefined);
});

const base = (): RuleObject[] => [
  svc('TCP', '10.96.0.10', 80, [
    ['10.244.1.2', 8080],
    ['10.244.1.3', 8080],
  ]),
  svc('UDP', '10.96.0.10', 53, [['10.244.1.2', 53]]),
  svc('TCP', '10.96.0.11', 443, [['10.244.1.4', 8443]], { flags: 1, timeoutSeconds: 10800, scheduler: 'wrr' }),
  vip('10.96.0.10'),
  vip('10.96.0.11'),
  ipset('KUBE-CLUSTER-IP', 'hash:ip,port'),
  members('KUBE-CLUSTER-IP', 'default/a:http/TCP', ['10.96.0.10,tcp:80']),
  members('KUBE-CLUSTER-IP', 'default/a:dns/UDP', ['10.96.0.10,udp:53']),
  {
    kind: 'iptables.chain',
    key: 'nat/KUBE-SERVICES',
    payload: {
      $case: 'iptablesChain',
      value: { table: 'nat', name: 'KUBE-SERVICES', rules: ['-m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT'] },
    },
  },
];

test('full restore programs services, VIPs, sets and companion rules, and reads them back exactly', async () => {
  // Something stale of kpx's, and something foreign (in an excluded CIDR) and a foreign set.
  await inNs('ipvsadm', '-A', '-t', '10.96.9.9:80', '-s', 'rr');
  await inNs('ipvsadm', '-A', '-t', '192.168.77.1:80', '-s', 'rr');
  await inNs('ipset', 'create', 'OTHER-SET', 'hash:ip');
  await inNs('ipset', 'create', 'KUBE-STALE', 'hash:ip');
  const objects = base();
  await applier.fullRestore(objects);
  const list = await inNs('ipvsadm', '-Ln');
  assert.match(list, /TCP {2}10\.96\.0\.10:80 rr\n {2}-> 10\.244\.1\.2:8080 +Masq +1/);
  assert.match(list, /UDP {2}10\.96\.0\.10:53 rr/);
  assert.match(list, /TCP {2}10\.96\.0\.11:443 wrr persistent 10800/);
  assert.match(list, /192\.168\.77\.1:80/, 'a service in an excluded CIDR is left alone');
  assert.doesNotMatch(list, /10\.96\.9\.9/, 'a stale service of kpx is deleted');
  assert.match(await inNs('ip', '-4', 'addr', 'show', 'kube-ipvs0'), /10\.96\.0\.10\/32[\s\S]*10\.96\.0\.11\/32/);
  const sets = await inNs('ipset', 'save');
  assert.match(sets, /add KUBE-CLUSTER-IP 10\.96\.0\.10,tcp:80/);
  assert.match(sets, /create OTHER-SET/);
  assert.doesNotMatch(sets, /KUBE-STALE/);
  assert.match(
    await inNs('iptables-save', '-t', 'nat'),
    /-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT/,
  );
  const rb = await applier.readBack();
  assert.deepEqual(diffObjects(objects, rb.objects), []);
  assert.equal(rb.digest, digestOf(objects));
});

test('changes made behind its back show as drift and a full restore repairs them', async () => {
  const objects = base();
  await inNs('ipvsadm', '-e', '-t', '10.96.0.10:80', '-r', '10.244.1.2:8080', '-m', '-w', '5');
  await inNs('ipvsadm', '-d', '-u', '10.96.0.10:53', '-r', '10.244.1.2:53');
  await inNs('ipvsadm', '-A', '-u', '10.96.0.99:53', '-s', 'rr');
  await inNs('ipset', 'add', 'KUBE-CLUSTER-IP', '10.96.0.77,tcp:80');
  await inNs('ip', 'addr', 'del', '10.96.0.11/32', 'dev', 'kube-ipvs0');
  const rb = await applier.readBack();
  assert.notEqual(rb.digest, digestOf(objects));
  assert.deepEqual(diffObjects(objects, rb.objects), [
    'ipset.set KUBE-CLUSTER-IP: differs',
    'ipvs.address kube-ipvs0/10.96.0.11: missing',
    'ipvs.service TCP/10.96.0.10:80: differs (real server 10.244.1.2:8080 weight 5 instead of 1)',
    'ipvs.service UDP/10.96.0.10:53: differs (real server 10.244.1.2:53 missing)',
    'ipvs.service UDP/10.96.0.99:53: not wanted',
  ]);
  await applier.fullRestore(objects);
  assert.equal((await applier.readBack()).digest, digestOf(objects));
});

test('a delta diffs real servers: TCP ones drain at weight 0, UDP ones go at once, sets and VIPs follow', async () => {
  const next = base();
  next[0] = svc('TCP', '10.96.0.10', 80, [
    ['10.244.1.3', 8080],
    ['10.244.1.5', 8080],
  ]);
  next[1] = svc('UDP', '10.96.0.10', 53, [['10.244.1.5', 53]]);
  next[4] = vip('10.96.0.12');
  next[7] = members('KUBE-CLUSTER-IP', 'default/a:dns/UDP', ['10.96.0.12,udp:53']);
  const res = await applier.applyDelta({
    upserts: [next[0], next[1], next[4], next[7]],
    deletes: [{ kind: 'ipvs.address', key: 'kube-ipvs0/10.96.0.11' }],
  });
  assert.ok(res.netlinkOps <= 8, `a small delta sends few netlink operations (${res.netlinkOps})`);
  const list = await inNs('ipvsadm', '-Ln');
  assert.match(list, /-> 10\.244\.1\.2:8080 +Masq +0 /, 'the removed TCP real server stays, at weight 0');
  assert.match(list, /-> 10\.244\.1\.5:8080 +Masq +1 /);
  assert.doesNotMatch(list, /10\.244\.1\.2:53/, 'the removed UDP real server is gone');
  assert.deepEqual(applier.drainingServers(), ['TCP/10.96.0.10:80|10.244.1.2:8080']);
  const addrs = await inNs('ip', '-4', 'addr', 'show', 'kube-ipvs0');
  assert.match(addrs, /10\.96\.0\.12\/32/);
  assert.doesNotMatch(addrs, /10\.96\.0\.11\//);
  const sets = await inNs('ipset', 'save');
  assert.match(sets, /add KUBE-CLUSTER-IP 10\.96\.0\.12,udp:53/);
  assert.doesNotMatch(sets, /10\.96\.0\.10,udp:53/);
  const desired = next.filter((o) => o.key !== 'kube-ipvs0/10.96.0.11');
  const rb = await applier.readBack();
  assert.deepEqual(diffObjects(desired, rb.objects), [], 'the draining server is not drift');
  assert.equal(rb.digest, digestOf(desired));
  // It never had a connection: the next drain check deletes it.
  assert.equal(await applier.drain(), 0);
  assert.doesNotMatch(await inNs('ipvsadm', '-Ln'), /10\.244\.1\.2:8080/);
  // A bad object is refused with its name and field; the state and kernel stay as they were.
  const bad = svc('TCP', '10.96.0.13', 80, [['10.244.1.9', 0]]);
  await assert.rejects(
    applier.applyDelta({ upserts: [bad], deletes: [] }),
    /ipvs\.service "TCP\/10\.96\.0\.13:80": real server port 0/,
  );
  assert.equal((await applier.readBack()).digest, digestOf(desired));
});

test('the IPVS compiler output of the e2e cluster applies and reads back with the same digest', async () => {
  const manifests = await readManifestDir(new URL('../../e2e/fixtures/cluster', import.meta.url).pathname);
  const { state } = loadClusterState(manifests);
  const rs = compileIpvs({ state, nodeName: 'n1', options: defaultIpvsOptions('IPv4') });
  const objects = rs.objects.map(toWire).filter((o) => !isDuty(o));
  assert.ok(
    objects.filter((o) => o.kind === 'ipvs.service').length >= 10,
    'the fixture cluster gives many virtual servers',
  );
  await applier.fullRestore(objects);
  const rb = await applier.readBack();
  assert.deepEqual(diffObjects(objects, rb.objects), []);
  assert.equal(rb.digest, digestOf(objects));
  assert.equal((await applier.fullRestore(objects)).netlinkOps, 0, 'a second full restore finds nothing to do');
});
