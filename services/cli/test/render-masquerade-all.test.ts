// kpx render with masqueradeAll given at the top level (kpx's alias) or in the iptables section: both mark every
// packet to a cluster IP for masquerade; the top-level form used to be warned as used and then not applied.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runKpx } from './io.js';

const examples = new URL('../../../../examples', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'kpx-cli-masq-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const HEADER = 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n';
// The rule masqueradeAll adds at the top of a service chain: every packet to the cluster IP, not only off-cluster ones.
const MASQUERADE_ALL = /-d 10\.96\.0\.20 --dport 80 -j KUBE-MARK-MASQ\n/;

async function render(name: string, body: string, ...flags: string[]): Promise<{ out: string; err: string }> {
  const cfg = join(tmp, `${name}.yaml`);
  writeFileSync(cfg, HEADER + body);
  const r = await runKpx('render', '--manifests', examples, '--node', 'node-a', '--config', cfg, ...flags);
  assert.equal(r.code, 0, r.err);
  return r;
}

test('a top-level masqueradeAll: true changes the rendered rules, as iptables.masqueradeAll does', async () => {
  assert.doesNotMatch((await render('none', '')).out, MASQUERADE_ALL);
  const top = await render('top', 'masqueradeAll: true\n');
  assert.match(top.out, MASQUERADE_ALL);
  assert.match(top.err, /warning: masqueradeAll: .*used as iptables\.masqueradeAll/);
  assert.match((await render('section', 'iptables:\n  masqueradeAll: true\n')).out, MASQUERADE_ALL);
  assert.doesNotMatch(
    (await render('both', 'masqueradeAll: true\niptables:\n  masqueradeAll: false\n')).out,
    MASQUERADE_ALL,
  );
});

test('ipvs mode: a top-level masqueradeAll: true masquerades every packet to a cluster IP', async () => {
  const ipset = /--match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ/;
  assert.doesNotMatch((await render('ipvs-none', 'mode: ipvs\n', '--mode', 'ipvs')).out, ipset);
  assert.match((await render('ipvs-top', 'mode: ipvs\nmasqueradeAll: true\n', '--mode', 'ipvs')).out, ipset);
});
