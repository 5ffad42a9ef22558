import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runKpx } from './io.js';

const examples = new URL('../../../../examples', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'kpx-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('render prints filter and nat tables for a node', async () => {
  const r = await runKpx('render', '--manifests', examples, '--node', 'node-a');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^\*filter\n/);
  assert.match(r.out, /\*nat\n[\s\S]*-A KUBE-SERVICES [^\n]*shop\/web:http cluster IP[\s\S]*\nCOMMIT\n$/);
  assert.equal(r.err, '');
});

test('--format chains leaves builtin chains and jumps out', async () => {
  const r = await runKpx('render', '--manifests', examples, '--node', 'node-a', '--format', 'chains');
  assert.equal(r.code, 0);
  assert.doesNotMatch(r.out, /^:INPUT|^-A (INPUT|PREROUTING|OUTPUT|FORWARD|POSTROUTING) /m);
  assert.match(r.out, /^:KUBE-SERVICES - \[0:0\]$/m);
});

test('an invalid service is reported by name and field; the rest still renders', async () => {
  const dir = join(tmp, 'bad');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir);
  writeFileSync(
    join(dir, 'all.yaml'),
    `apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}]}
---
apiVersion: v1
kind: Service
metadata: {name: broken, namespace: app}
spec: {clusterIP: 10.96.0.5, ports: [{name: a, port: 80}, {port: 81}]}
---
apiVersion: v1
kind: Service
metadata: {name: fine, namespace: app}
spec: {clusterIP: 10.96.0.6, ports: [{port: 80}]}
`,
  );
  const r = await runKpx('render', '--manifests', dir, '--node', 'n1');
  assert.equal(r.code, 0);
  assert.match(r.err, /error: Service app\/broken \(.*all\.yaml#2\) spec\.ports\[1\]\.name: is required/);
  assert.match(r.out, /app\/fine has no endpoints/);
  assert.doesNotMatch(r.out, /app\/broken/);
});

test('nothing to render: unknown node, unreadable directory, bad config -> exit 1 with the reason', async () => {
  const unknown = await runKpx('render', '--manifests', examples, '--node', 'nope');
  assert.equal(unknown.code, 1);
  assert.match(unknown.err, /node "nope" not found; known nodes: node-a, node-b, node-c/);
  const nodir = await runKpx('render', '--manifests', join(tmp, 'missing'), '--node', 'n1');
  assert.equal(nodir.code, 1);
  assert.match(nodir.err, /cannot read manifest directory/);
  const cfg = join(tmp, 'bad-config.yaml');
  writeFileSync(
    cfg,
    'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\niptables:\n  masqueradeBit: 40\n',
  );
  const bad = await runKpx('render', '--manifests', examples, '--node', 'node-a', '--config', cfg);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /iptables\.masqueradeBit/);
  assert.equal(bad.out, '');
});

test('config: clusterCIDR adds off-cluster masquerade; unknown fields warn', async () => {
  const cfg = join(tmp, 'config.yaml');
  writeFileSync(
    cfg,
    'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nclusterCIDR: 10.244.0.0/16\nbogus: 1\n',
  );
  const r = await runKpx('render', '--manifests', examples, '--node', 'node-a', '--config', cfg);
  assert.equal(r.code, 0);
  assert.match(r.out, /-d 10\.96\.0\.20 --dport 80 ! -s 10\.244\.0\.0\/16 -j KUBE-MARK-MASQ/);
  assert.match(r.err, /warning: .*bogus/);
});

test('usage errors exit 2; other modes are not implemented yet', async () => {
  assert.equal((await runKpx('render', '--node', 'n1')).code, 2);
  assert.equal((await runKpx('render', '--manifests', examples, '--node', 'node-a', '--ip-family', 'ipv5')).code, 2);
  assert.equal((await runKpx('frobnicate')).code, 2);
  const nft = await runKpx('render', '--manifests', examples, '--node', 'node-a', '--mode', 'nftables');
  assert.equal(nft.code, 1);
  assert.match(nft.err, /only iptables and ipvs/);
});
