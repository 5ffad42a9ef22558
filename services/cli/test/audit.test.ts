// kpx audit against a running controller and a real nats-server: rules, explain, a past generation, the log.
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type RunningController } from '@kpx/controller';
import { type NatsServer } from '@kpx/testing';
import { startExamplesController, waitFor } from './examples-controller.js';
import { runKpx } from './io.js';

let nats: NatsServer;
let dir: string;
let controller: RunningController;

before(async () => {
  ({ nats, dir, controller } = await startExamplesController('kpx-audit-'));
  const web = join(dir, 'web.yaml');
  await writeFile(web, (await readFile(web, 'utf8')).replace('10.244.1.10]', '10.244.1.20]'));
  await waitFor(() => controller.pipeline.generation === 2);
  await controller.pipeline.settle();
});
after(async () => {
  await controller.stop();
  await nats.stop();
  await rm(dir, { recursive: true, force: true });
});

test('--rules prints the desired rules; --explain names the service, the generation and its causes', async () => {
  const rules = await runKpx('audit', '--controller', controller.grpcAddress, '--node', 'node-a', '--rules');
  assert.equal(rules.code, 0, rules.err);
  assert.match(rules.out, /^# node node-a IPv4 generation 2 digest [0-9a-f]{64}\n/);
  const svc = /-A KUBE-SERVICES .*shop\/web:http cluster IP.* -j (KUBE-SVC-[A-Z0-9]+)/.exec(rules.out)?.[1];
  assert.ok(svc, 'the web service chain is in the rules');

  const byIp = await runKpx(
    'audit',
    '--controller',
    controller.grpcAddress,
    '--nats',
    nats.url,
    '--node',
    'node-a',
    '--explain',
    '10.96.0.20:80',
    '-o',
    'json',
  );
  assert.equal(byIp.code, 0, byIp.err);
  const j = JSON.parse(byIp.out) as {
    objects: {
      key: string;
      owner: string;
      generation: number;
      snapshot: boolean;
      causes: { kind: string; name: string }[];
    }[];
  };
  const fragment = j.objects.find((o) => o.key === 'nat/KUBE-SERVICES/shop/web:http/TCP');
  assert.ok(fragment, byIp.out);
  assert.equal(fragment.owner, 'shop/web:http/TCP');
  assert.equal(fragment.generation, 1, 'the fragment was written by the initial state and not changed since');
  assert.equal(fragment.snapshot, true);

  const byChain = await runKpx(
    'audit',
    '--controller',
    controller.grpcAddress,
    '--nats',
    nats.url,
    '--node',
    'node-a',
    '--explain',
    svc,
    '-o',
    'json',
  );
  const chain = (
    JSON.parse(byChain.out) as {
      objects: {
        key: string;
        owner: string;
        generation: number;
        causes: { kind: string; namespace: string; name: string; resourceVersion: string }[];
      }[];
    }
  ).objects;
  assert.deepEqual(
    chain.map((o) => [o.key, o.generation]),
    [[`nat/${svc}`, 2]],
    'the endpoint change rewrote the service chain in generation 2',
  );
  assert.equal(
    chain[0]?.owner,
    'shop/web:http/TCP',
    'the chain belongs to the port whose KUBE-SERVICES fragment (key) jumps into it',
  );
  assert.deepEqual(
    chain[0]?.causes.map((c) => `${c.kind} ${c.namespace}/${c.name}`),
    ['EndpointSlice shop/web-abc12'],
  );

  const none = await runKpx(
    'audit',
    '--controller',
    controller.grpcAddress,
    '--nats',
    nats.url,
    '--node',
    'node-a',
    '--explain',
    '10.1.2.3:9',
  );
  assert.equal(none.code, 1);
  assert.match(none.err, /nothing in node node-a's IPv4 rules \(generation 2\) matches "10\.1\.2\.3:9"/);
});

test('--generation rebuilds a past digest from JetStream; the log lists generations with causes and filters', async () => {
  const g1 = await runKpx('audit', '--nats', nats.url, '--node', 'node-a', '--generation', '1', '-o', 'json');
  assert.equal(g1.code, 0, g1.err);
  const snap1 = JSON.parse(g1.out) as { generation: number; digest: string };
  assert.equal(snap1.generation, 1);
  assert.notEqual(
    snap1.digest,
    (await controller.pipeline.snapshot('node-a', 'IPv4'))?.digest,
    'generation 2 changed node-a',
  );

  const log = await runKpx('audit', 'log', '--nats', nats.url, '--service', 'shop/web', '-o', 'json');
  assert.equal(log.code, 0, log.err);
  const records = (
    JSON.parse(log.out) as {
      records: {
        type: string;
        generation: number;
        causes: { name: string }[];
        nodes: { node: string }[];
        bytes: number;
      }[];
    }
  ).records;
  const g2 = records.find((r) => r.generation === 2);
  assert.ok(g2, log.out);
  assert.deepEqual(
    g2.causes.map((c) => c.name),
    ['web-abc12'],
  );
  assert.deepEqual(g2.nodes.map((n) => n.node).sort(), ['node-a', 'node-b', 'node-c']);
  assert.ok(g2.bytes > 0);
  const other = await runKpx('audit', 'log', '--nats', nats.url, '--service', 'kube-system/kube-dns', '-o', 'json');
  assert.ok(!(JSON.parse(other.out) as { records: { generation: number }[] }).records.some((r) => r.generation === 2));
  const text = await runKpx('audit', 'log', '--nats', nats.url, '--since', '1h');
  assert.match(text.out, /generation 2 +\d+ B +causes: EndpointSlice shop\/web-abc12/);
});
