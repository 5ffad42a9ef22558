// `kpx executor --cleanup --netns NS` in a network namespace of the test's own: kpx-rendered rules of both families
// (plus, where the tools exist, a KUBE-* ipset, kube-ipvs0 and an `ip kube-proxy` nft table) go; a foreign rule, a
// foreign chain (even one jumping into KUBE-*), kubelet's canary, a foreign ipset and a foreign nft table stay.
// A second run finds nothing and succeeds. IPVS virtual services are not exercised: this kernel has no ip_vs (the
// step reports "skipped").
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test, type TestContext } from 'node:test';
import { makeRunPrefix } from '@kpx/testing';
import { RepoRoot } from './cluster.js';
import { KpxBin } from './system.js';

interface Run {
  readonly code: number | null;
  readonly out: string;
  readonly err: string;
}

function run(file: string, args: readonly string[], input = ''): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

async function must(file: string, args: readonly string[], input = ''): Promise<string> {
  const r = await run(file, args, input);
  assert.equal(r.code, 0, `${file} ${args.join(' ')} failed: ${r.err}`);
  return r.out;
}

const inNs = (ns: string, file: string, args: readonly string[], input = ''): Promise<string> =>
  must('ip', ['netns', 'exec', ns, file, ...args], input);

/** A namespace `<run prefix>cl`, deleted when the test ends, also when it fails. */
async function makeNamespace(t: TestContext): Promise<string> {
  const ns = `${makeRunPrefix()}cl`;
  await must('ip', ['netns', 'add', ns]);
  t.after(() => run('ip', ['netns', 'del', ns]));
  return ns;
}

const render = (family: string): Promise<string> =>
  must(process.execPath, [
    KpxBin,
    'render',
    '--manifests',
    `${RepoRoot}examples`,
    '--node',
    'node-a',
    '--ip-family',
    family,
  ]);

async function hasTool(name: string): Promise<boolean> {
  return (await run('sh', ['-c', `command -v ${name}`])).code === 0;
}

test('kpx executor --cleanup removes every KUBE-* chain and jump, ipset, kube-ipvs0 and nft kube-proxy table, and nothing else; twice is fine', async (t) => {
  const ns = await makeNamespace(t);
  await inNs(ns, 'iptables-restore', [], await render('ipv4'));
  await inNs(ns, 'ip6tables-restore', [], await render('ipv6'));
  // Foreign: a rule in a builtin chain, a chain of someone else's (with a jump into kpx's chains), kubelet's canary.
  await inNs(ns, 'iptables', ['-A', 'INPUT', '-s', '192.0.2.1', '-j', 'DROP']);
  await inNs(ns, 'iptables', ['-N', 'FOREIGN-CHAIN']);
  await inNs(ns, 'iptables', ['-A', 'FOREIGN-CHAIN', '-s', '192.0.2.2', '-j', 'ACCEPT']);
  await inNs(ns, 'iptables', ['-A', 'FOREIGN-CHAIN', '-j', 'KUBE-SERVICES']);
  await inNs(ns, 'iptables', ['-t', 'nat', '-N', 'KUBE-KUBELET-CANARY']);
  await inNs(ns, 'ip6tables', ['-A', 'INPUT', '-s', '2001:db8::1', '-j', 'DROP']);
  const ipset = await hasTool('ipset');
  if (ipset) {
    await inNs(ns, 'ipset', ['create', 'KUBE-CLUSTER-IP', 'hash:ip,port']);
    await inNs(ns, 'ipset', ['create', 'foreign-set', 'hash:ip']);
  }
  // kube-proxy's kube-ipvs0 is a dummy link; a kernel without the dummy module gets a veth of that name (the cleanup
  // deletes the link by name, whatever its type); with neither, that step goes untested.
  const link =
    (await run('ip', ['netns', 'exec', ns, 'ip', 'link', 'add', 'kube-ipvs0', 'type', 'dummy'])).code === 0 ||
    (
      await run('ip', [
        'netns',
        'exec',
        ns,
        'ip',
        'link',
        'add',
        'kube-ipvs0',
        'type',
        'veth',
        'peer',
        'name',
        'kpx-peer0',
      ])
    ).code === 0;
  t.diagnostic(
    `kube-ipvs0 ${link ? 'created' : 'not creatable here (no dummy or veth support): not exercised'}; ipset ${ipset ? 'exercised' : 'not found'}`,
  );
  const nft = await hasTool('nft');
  if (nft)
    await inNs(
      ns,
      'nft',
      ['-f', '-'],
      'table ip kube-proxy {\n chain c { type filter hook input priority 0; }\n}\ntable ip6 kube-proxy {}\ntable inet foreign {}\n',
    );
  const before = await inNs(ns, 'iptables-save', []);
  assert.ok((before.match(/^:KUBE-/gm) ?? []).length > 20, 'kpx rules loaded');

  const first = await run(process.execPath, [KpxBin, 'executor', '--cleanup', '--netns', ns]);
  assert.equal(first.code, 0, first.err);
  t.diagnostic(first.out.trim());
  assert.match(first.out, /^iptables \(IPv4\): removed \(\d+ chains, \d+ jumps to them\)$/m);
  assert.match(first.out, /^iptables \(IPv6\): removed /m);
  if (link) assert.match(first.out, /^kube-ipvs0 link: removed/m);
  assert.match(first.out, /^IPVS virtual services: (skipped|clean|removed) /m);
  if (ipset) assert.match(first.out, /^ipsets: removed \(1 sets\)$/m);
  if (nft) assert.match(first.out, /^nftables: removed \(ip kube-proxy, ip6 kube-proxy\)$/m);

  const v4 = await inNs(ns, 'iptables-save', []);
  const v6 = await inNs(ns, 'ip6tables-save', []);
  const kube = (dump: string): string[] =>
    dump.split('\n').filter((l) => l.includes('KUBE-') && l !== ':KUBE-KUBELET-CANARY - [0:0]');
  assert.deepEqual(kube(v4), [], `IPv4 KUBE-* left:\n${v4}`);
  assert.deepEqual(kube(v6), [], `IPv6 KUBE-* left:\n${v6}`);
  assert.match(v4, /^-A INPUT -s 192\.0\.2\.1\/32 -j DROP$/m);
  assert.match(v4, /^:FOREIGN-CHAIN - /m);
  assert.match(v4, /^-A FOREIGN-CHAIN -s 192\.0\.2\.2\/32 -j ACCEPT$/m);
  assert.match(v4, /^:KUBE-KUBELET-CANARY - /m, "kubelet's canary stays");
  assert.match(v6, /^-A INPUT -s 2001:db8::1\/128 -j DROP$/m);
  assert.doesNotMatch(await inNs(ns, 'ip', ['-o', 'link', 'show']), /kube-ipvs0/);
  if (ipset) assert.deepEqual((await inNs(ns, 'ipset', ['list', '-n'])).trim().split('\n'), ['foreign-set']);
  if (nft) {
    const tables = await inNs(ns, 'nft', ['list', 'tables']);
    assert.match(tables, /^table inet foreign$/m);
    assert.doesNotMatch(tables, /kube-proxy/);
  }

  const second = await run(process.execPath, [KpxBin, 'executor', '--cleanup', '--netns', ns]);
  assert.equal(second.code, 0, second.err);
  assert.match(second.out, /^iptables \(IPv4\): clean /m);
  assert.match(second.out, /^iptables \(IPv6\): clean /m);
  assert.match(second.out, /^kube-ipvs0 link: clean /m);
  assert.match(second.out, /^ipsets: (clean|skipped) /m);
  assert.match(second.out, /^nftables: (clean|skipped) /m);
  assert.equal(
    await inNs(ns, 'iptables-save', []).then((d) => d.replace(/^#.*\n/gm, '')),
    v4.replace(/^#.*\n/gm, ''),
    'the second run changed nothing',
  );
});

test('kpx executor --cleanup exits 1 naming what failed (a namespace that does not exist)', async () => {
  const r = await run(process.execPath, [KpxBin, 'executor', '--cleanup', '--netns', `${makeRunPrefix()}none`]);
  assert.equal(r.code, 1);
  assert.match(r.err, /^error: cleanup of iptables \(IPv4\): failed \(.*netns.*\)$/m);
});
