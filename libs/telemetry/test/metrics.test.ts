import assert from 'node:assert/strict';
import { test } from 'node:test';
import { register as globalRegistry } from 'prom-client';
import {
  DeltaBytesBuckets,
  MetricName,
  MetricRegistrationError,
  NetworkProgrammingBuckets,
  SyncDurationBuckets,
  controllerMetrics,
  createMetrics,
  executorMetrics,
  kubeProxyMetrics,
} from '../src/index.js';

test('kube-proxy bucket layouts', () => {
  assert.equal(SyncDurationBuckets.length, 15);
  assert.equal(SyncDurationBuckets[0], 0.001);
  assert.equal(SyncDurationBuckets[14], 16.384);
  // MergeBuckets(Linear(0.25,0.25,2), Linear(1,1,59), Linear(60,5,12), Linear(120,30,7)) with its leading 0.
  assert.equal(NetworkProgrammingBuckets.length, 1 + 2 + 59 + 12 + 7);
  assert.deepEqual(NetworkProgrammingBuckets.slice(0, 5), [0, 0.25, 0.5, 1, 2]);
  assert.deepEqual(NetworkProgrammingBuckets.slice(60, 64), [58, 59, 60, 65]);
  assert.deepEqual(NetworkProgrammingBuckets.slice(-3), [240, 270, 300]);
  for (let i = 1; i < NetworkProgrammingBuckets.length; i++) {
    assert.ok(NetworkProgrammingBuckets[i]! > NetworkProgrammingBuckets[i - 1]!, 'strictly increasing');
  }
  assert.equal(DeltaBytesBuckets[0], 64);
  assert.equal(DeltaBytesBuckets.at(-1), 16 * 1024 * 1024);
  assert.ok(Object.isFrozen(NetworkProgrammingBuckets));
});

test("each registry is separate from the others and from prom-client's global one", async () => {
  const a = createMetrics();
  const b = createMetrics();
  const ma = controllerMetrics(a);
  const mb = controllerMetrics(b);
  ma.generation.set(42);
  mb.generation.set(7);
  ma.deltasPublished.inc(3);
  assert.match(await a.metrics(), /^kpx_controller_generation 42$/m);
  assert.match(await b.metrics(), /^kpx_controller_generation 7$/m);
  assert.match(await a.metrics(), /^kpx_controller_deltas_published_total 3$/m);
  assert.match(await b.metrics(), /^kpx_controller_deltas_published_total 0$/m);
  assert.equal(globalRegistry.getSingleMetric(MetricName.ControllerGeneration), undefined);
});

test('executor metrics carry kube-proxy names, help, ip_family labels and buckets', async () => {
  const registry = createMetrics();
  const m = executorMetrics(registry);
  m.syncProxyRulesDuration.observe({ ip_family: 'IPv4' }, 0.003);
  m.networkProgrammingDuration.observe({ ip_family: 'IPv6' }, 1.5);
  m.iptablesRestoreFailures.inc({ ip_family: 'IPv4' });
  m.syncProxyRulesLastTimestamp.set({ ip_family: 'IPv4' }, 1700000000);
  m.appliedGeneration.set(12);
  m.driftRepairs.inc();
  m.rejectedDeltas.inc({ reason: 'decode' });
  const text = await registry.metrics();
  assert.match(text, /^# HELP kubeproxy_sync_proxy_rules_duration_seconds SyncProxyRules latency in seconds$/m);
  assert.match(text, /^# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram$/m);
  assert.match(text, /^kubeproxy_sync_proxy_rules_duration_seconds_bucket\{le="0.002",ip_family="IPv4"\} 0$/m);
  assert.match(text, /^kubeproxy_sync_proxy_rules_duration_seconds_bucket\{le="0.004",ip_family="IPv4"\} 1$/m);
  assert.match(text, /^kubeproxy_network_programming_duration_seconds_bucket\{le="1",ip_family="IPv6"\} 0$/m);
  assert.match(text, /^kubeproxy_network_programming_duration_seconds_bucket\{le="2",ip_family="IPv6"\} 1$/m);
  assert.match(text, /^kubeproxy_network_programming_duration_seconds_bucket\{le="0",ip_family="IPv6"\} 0$/m);
  assert.match(text, /^kubeproxy_sync_proxy_rules_iptables_restore_failures_total\{ip_family="IPv4"\} 1$/m);
  assert.match(text, /^kubeproxy_sync_proxy_rules_last_timestamp_seconds\{ip_family="IPv4"\} 1700000000$/m);
  assert.match(
    text,
    /^# HELP kubeproxy_network_programming_duration_seconds In Cluster Network Programming Latency in seconds$/m,
  );
  assert.match(text, /^kpx_executor_applied_generation 12$/m);
  assert.match(text, /^kpx_executor_drift_repairs_total 1$/m);
  assert.match(text, /^kpx_executor_rejected_deltas_total\{reason="decode"\} 1$/m);
  assert.doesNotMatch(text, /process_cpu_seconds_total/, 'no process metrics unless asked');
});

test('controller histograms have no labels (no per-node series)', async () => {
  const registry = createMetrics();
  const m = controllerMetrics(registry);
  m.changeToAck.observe(0.7);
  m.deltaBytes.observe(3000);
  m.nodes.set(3);
  m.nodesInSync.set(2);
  const text = await registry.metrics();
  assert.match(text, /^kpx_controller_change_to_ack_seconds_bucket\{le="0.5"\} 0$/m);
  assert.match(text, /^kpx_controller_change_to_ack_seconds_bucket\{le="1"\} 1$/m);
  assert.match(text, /^kpx_controller_delta_bytes_bucket\{le="1024"\} 0$/m);
  assert.match(text, /^kpx_controller_delta_bytes_bucket\{le="4096"\} 1$/m);
  assert.match(text, /^kpx_controller_nodes_in_sync 2$/m);
  assert.match(text, /^kpx_controller_nodes 3$/m);
  const json = await registry.getMetricsAsJSON();
  const ack = json.find((j) => j.name === MetricName.ControllerChangeToAck);
  assert.ok(ack);
  for (const v of ack.values) {
    assert.deepEqual(
      Object.keys(v.labels).filter((k) => k !== 'le'),
      [],
    );
  }
});

test('registering the same metrics twice in one registry is a MetricRegistrationError naming the metric', () => {
  const registry = createMetrics();
  kubeProxyMetrics(registry);
  assert.throws(
    () => executorMetrics(registry),
    (err: unknown) => {
      assert.ok(err instanceof MetricRegistrationError);
      assert.equal(err.metric, MetricName.SyncProxyRulesDuration);
      assert.ok(err.cause instanceof Error);
      return true;
    },
  );
});

test('process metrics and default labels are opt-in', async () => {
  const registry = createMetrics({ processMetrics: true, defaultLabels: { node: 'n1' } });
  controllerMetrics(registry).generation.set(1);
  const text = await registry.metrics();
  assert.match(text, /^process_cpu_seconds_total\{node="n1"\} /m);
  assert.match(text, /^nodejs_eventloop_lag_seconds\{node="n1"\} /m);
  assert.match(text, /^kpx_controller_generation\{node="n1"\} 1$/m);
});
