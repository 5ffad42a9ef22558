// kpx render in IPVS mode: `ipvsadm -Sn`, `ipset save` and iptables-restore sections, and the ipset and iptables
// text loaded by the real tools into a network namespace of the test's own.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { makeRunPrefix, run as exec, sweepNamespaces } from '@kpx/testing';
import { runKpx } from './io.js';

const examples = new URL('../../../../examples', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'kpx-cli-ipvs-'));
const prefix = makeRunPrefix();
after(async () => {
  rmSync(tmp, { recursive: true, force: true });
  await sweepNamespaces(prefix);
});

function render(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  return runKpx('render', '--manifests', examples, ...argv);
}

/** The sections of the output, by their `# tool` heading. */
function sections(out: string): Map<string, string> {
  const parts = out.split(/^# (.+)\n/m);
  const map = new Map<string, string>();
  for (let i = 1; i < parts.length; i += 2) map.set(parts[i] ?? '', parts[i + 1] ?? '');
  return map;
}

test('--mode ipvs prints virtual servers, ipsets and companion iptables rules, in that order', async () => {
  const r = await render('--node', 'node-a', '--mode', 'ipvs');
  assert.equal(r.code, 0, r.err);
  assert.deepEqual([...sections(r.out).keys()], ['ipvsadm -Sn', 'ipset save', 'iptables-save']);
  const s = sections(r.out);
  const ipvsadm = s.get('ipvsadm -Sn') ?? '';
  assert.match(ipvsadm, /^-A -u 10\.96\.0\.10:53 -s rr\n-a -u 10\.96\.0\.10:53 -r 10\.244\.1\.2:53 -m -w 1$/m);
  assert.match(ipvsadm, /^-A -t 10\.96\.0\.30:443 -s rr -p 600$/m, 'ClientIP affinity with its timeout');
  assert.match(ipvsadm, /^-A -t 10\.0\.0\.11:30080 -s rr$/m, 'NodePort on the node address');
  assert.match(ipvsadm, /^-A -t 10\.96\.0\.40:9000 -s rr\n-A/m, 'a service without endpoints has no real server');
  const ipset = s.get('ipset save') ?? '';
  assert.match(
    ipset,
    /^create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536\n(add KUBE-CLUSTER-IP .*\n)*add KUBE-CLUSTER-IP 10\.96\.0\.10,tcp:53\n/m,
  );
  assert.match(ipset, /^add KUBE-LOOP-BACK 10\.244\.1\.2,udp:53,10\.244\.1\.2$/m);
  assert.match(ipset, /^create KUBE-NODE-PORT-TCP bitmap:port range 0-65535\nadd KUBE-NODE-PORT-TCP 30080\n/m);
  const ipt = s.get('iptables-save') ?? '';
  assert.match(
    ipt,
    /^\*filter\n[\s\S]*^-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT$[\s\S]*^\*nat\n/m,
  );
  assert.match(
    ipt,
    /^-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ$/m,
  );
  // node-b hosts no kube-dns pod; its virtual server has only the zone-1 endpoint on node-a (topology hints).
  const b = sections((await render('--node', 'node-b', '--mode', 'ipvs')).out);
  assert.match(
    b.get('ipvsadm -Sn') ?? '',
    /^-A -u 10\.96\.0\.10:53 -s rr\n-a -u 10\.96\.0\.10:53 -r 10\.244\.1\.2:53 -m -w 1$/m,
  );
  assert.doesNotMatch(b.get('ipset save') ?? '', /KUBE-LOOP-BACK 10\.244\.1\.2/);
});

test('the config picks ipvs mode and its scheduler; IPv6 uses KUBE-6- sets and bracketed addresses', async () => {
  const cfg = join(tmp, 'ipvs.yaml');
  writeFileSync(
    cfg,
    'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\nclusterCIDR: 10.244.0.0/16\nipvs:\n  scheduler: wlc\n',
  );
  const r = await render('--node', 'node-a', '--config', cfg);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^-A -t 10\.96\.0\.20:80 -s wlc$/m);
  assert.match(r.out, /--match-set KUBE-CLUSTER-IP dst,dst ! -s 10\.244\.0\.0\/16 -j KUBE-MARK-MASQ$/m);
  const v6 = await render('--node', 'node-a', '--mode', 'ipvs', '--ip-family', 'ipv6');
  assert.equal(v6.code, 0, v6.err);
  assert.match(
    v6.out,
    /^-A -t \[fd00:10:96::20\]:80 -s rr\n-a -t \[fd00:10:96::20\]:80 -r \[fd00:10:244:1::10\]:8080 -m -w 1$/m,
  );
  assert.match(
    v6.out,
    /^create KUBE-6-CLUSTER-IP hash:ip,port family inet6 hashsize 1024 maxelem 65536\nadd KUBE-6-CLUSTER-IP fd00:10:96::20,tcp:80$/m,
  );
  assert.match(v6.out, /^# ip6tables-save\n/m);
});

/** A namespace of the test's own, or the reason there is none. */
async function namespace(name: string): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'not root';
  try {
    await exec('ip', ['netns', 'add', name]);
    return undefined;
  } catch (err) {
    return `cannot create a network namespace: ${(err as Error).message}`;
  }
}

for (const family of ['ipv4', 'ipv6'] as const) {
  test(`${family}: the real ipset and iptables-restore load the rendered text in a fresh namespace`, async (t) => {
    const ns = `${prefix}r${family.slice(-1)}`;
    const why = await namespace(ns);
    if (why) {
      t.skip(why);
      return;
    }
    try {
      const r = await render('--node', 'node-a', '--mode', 'ipvs', '--ip-family', family);
      assert.equal(r.code, 0, r.err);
      const s = sections(r.out);
      const ipsetText = s.get('ipset save') ?? '';
      try {
        await exec('ip', ['netns', 'exec', ns, 'ipset', 'restore'], { input: ipsetText });
      } catch (err) {
        if (/Kernel error|kernel module|Protocol not supported/i.test((err as Error).message)) {
          t.skip(`the kernel has no ip_set: ${(err as Error).message}`);
          return;
        }
        throw err;
      }
      // What the kernel holds is what was rendered: same sets, same members.
      const saved = (await exec('ip', ['netns', 'exec', ns, 'ipset', 'save'])).stdout;
      const normalize = (text: string): string[] =>
        text
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => l.replace(/ bucketsize \d+| initval 0x[0-9a-f]+/g, ''))
          .sort();
      assert.deepEqual(normalize(saved), normalize(ipsetText));
      const iptables = family === 'ipv4' ? 'iptables-restore' : 'ip6tables-restore';
      await exec('ip', ['netns', 'exec', ns, iptables], {
        input: s.get(family === 'ipv4' ? 'iptables-save' : 'ip6tables-save') ?? '',
      });
      const nat = (
        await exec('ip', [
          'netns',
          'exec',
          ns,
          family === 'ipv4' ? 'iptables' : 'ip6tables',
          '-t',
          'nat',
          '-S',
          'KUBE-SERVICES',
        ])
      ).stdout;
      assert.match(nat, /-m set --match-set KUBE-(6-)?CLUSTER-IP dst,dst -j ACCEPT/);
    } finally {
      await exec('ip', ['netns', 'del', ns]);
    }
  });
}
