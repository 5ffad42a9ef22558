// A controller configured with `mode: ipvs`, against a real nats-server: it publishes IPVS rule sets, and one
// EndpointSlice change is a small delta (the service's virtual server and its own ipset fragment, never a set).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { IPFamily, loadClusterState, loadKubeProxyConfig, readManifestDir, type KubeObject } from '@kpx/model';
import { compileIpvs, ipvsOptionsFromConfig, toWire } from '@kpx/compiler';
import { RuleState, digestOf } from '@kpx/ruleset';
import { getSnapshot, lastDelta, readDeltas } from '@kpx/transport';
import { startNatsServer, type NatsServer } from '@kpx/testing';
import { runController } from '../src/index.js';
import { ScriptedSource } from './scripted-source.js';

const examples = new URL('../../../../examples/', import.meta.url).pathname;
let nats: NatsServer;
let nc: NatsConnection;
let js: JetStreamClient;

before(async () => {
  nats = await startNatsServer({ jetstream: true });
  nc = await connect({ servers: nats.url });
  js = jetstream(nc);
});
after(async () => {
  await nc.close();
  await nats.stop();
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const { config } = loadKubeProxyConfig(
  'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\nclusterCIDR: 10.244.0.0/16\nipvs:\n  scheduler: lc\n',
);

/** jobs/batch had no endpoints; now one pod on node-b. */
const batchSlice = {
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: {
    name: 'batch-1',
    namespace: 'jobs',
    resourceVersion: '700',
    labels: { 'kubernetes.io/service-name': 'batch' },
  },
  addressType: 'IPv4',
  ports: [{ port: 9000, protocol: 'TCP' }],
  endpoints: [{ addresses: ['10.244.2.90'], nodeName: 'node-b' }],
} as KubeObject;

test('mode ipvs: IPVS snapshots per node equal to compileIpvs, then one slice change is one virtual server', async (t) => {
  const objects = (await readManifestDir(examples))
    .map((m) => m.object)
    .filter((o) => ['Service', 'EndpointSlice', 'Node'].includes(o.kind ?? ''));
  const source = new ScriptedSource(objects);
  const c = await runController({
    source,
    sourceName: 'test',
    natsUrl: nats.url,
    grpcListen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    logLevel: 'silent',
    config,
    families: [IPFamily.IPv4],
  });
  t.after(() => c.stop());
  await waitFor(() => c.pipeline.generation > 0);
  await c.pipeline.settle();
  assert.equal(c.pipeline.mode, 'ipvs');

  const options = ipvsOptionsFromConfig(config, IPFamily.IPv4);
  for (const node of ['node-a', 'node-b', 'node-c']) {
    const last = (await lastDelta(js, node))?.delta;
    assert.ok(last, node);
    assert.equal(last.mode, 'ipvs');
    assert.equal(last.snapshot, true);
    const snap = await getSnapshot(js, node, 'IPv4', { generation: last.generation });
    assert.ok(snap);
    assert.equal(snap.mode, 'ipvs');
    const want = compileIpvs({
      state: loadClusterState(await readManifestDir(examples)).state,
      nodeName: node,
      options,
    }).objects.map(toWire);
    assert.equal(
      RuleState.from(snap.objects).digest,
      digestOf(want),
      `${node}: the published state is a full compile's`,
    );
    assert.equal(last.digest, digestOf(want));
    const vs = snap.objects.find((o) => o.key === 'TCP/10.96.0.20:80');
    assert.equal(
      vs?.payload?.$case === 'ipvsService' ? vs.payload.value.scheduler : '',
      'lc',
      'the scheduler of the config',
    );
  }

  source.upsert(batchSlice);
  await waitFor(() => c.pipeline.generation === 2);
  await c.pipeline.settle();
  const refs = (d: { upserts: { kind: string; key: string }[]; deletes: { kind: string; key: string }[] }): string[] =>
    [...d.upserts.map((u) => `+${u.kind}:${u.key}`), ...d.deletes.map((x) => `-${x.kind}:${x.key}`)].sort();
  const onA = (await lastDelta(js, 'node-a'))!.delta;
  assert.equal(onA.generation, 2);
  assert.equal(onA.mode, 'ipvs');
  assert.equal(onA.snapshot, false);
  assert.deepEqual(refs(onA), ['+ipvs.service:TCP/10.96.0.40:9000']);
  const vs = onA.upserts[0]?.payload;
  assert.deepEqual(vs?.$case === 'ipvsService' ? vs.value.realServers : [], [
    { address: '10.244.2.90', port: 9000, weight: 1 },
  ]);
  assert.deepEqual(
    onA.cause.map((x) => `${x.kind}/${x.namespace}/${x.name}`),
    ['EndpointSlice/jobs/batch-1'],
  );
  // node-b hosts the pod: also its hairpin member, as the service port's own fragment of KUBE-LOOP-BACK.
  const onB = (await lastDelta(js, 'node-b'))!.delta;
  assert.deepEqual(refs(onB), ['+ipset.entries:KUBE-LOOP-BACK/jobs/batch/TCP', '+ipvs.service:TCP/10.96.0.40:9000']);
  assert.ok(!onB.upserts.some((u) => u.kind === 'ipset.set'), 'no whole-set rewrite');

  // node-b rebuilt from the stored snapshot and the deltas reaches the published digest and a full compile's.
  const snap = (await getSnapshot(js, 'node-b', 'IPv4', { generation: 1 }))!;
  const state = RuleState.from(snap.objects, 1);
  for await (const r of readDeltas(js, 'node-b', { fromGeneration: 1, ipFamily: 'IPv4' })) state.apply(r.delta);
  assert.equal(state.digest, onB.digest);
  const cluster = loadClusterState([
    ...(await readManifestDir(examples)),
    { object: batchSlice, source: 'test' },
  ]).state;
  assert.equal(
    state.digest,
    digestOf(compileIpvs({ state: cluster, nodeName: 'node-b', options }).objects.map(toWire)),
  );
});
