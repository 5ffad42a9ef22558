import assert from 'node:assert/strict';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { networkInterfaces } from 'node:os';
import { test } from 'node:test';
import {
  HttpServerError,
  ListenAddressError,
  MetricName,
  controllerMetrics,
  createHealthTracker,
  createMetrics,
  executorMetrics,
  startHttpServer,
} from '../src/index.js';
import type { HealthReport } from '../src/index.js';

test('serves /metrics with the kube-proxy and kpx names on 127.0.0.1:0', async () => {
  const registry = createMetrics();
  const m = executorMetrics(registry);
  m.syncProxyRulesDuration.observe({ ip_family: 'IPv4' }, 0.01);
  controllerMetrics(registry).generation.set(9);
  const server = await startHttpServer({ listen: '127.0.0.1:0', registry });
  try {
    assert.equal(server.address, '127.0.0.1');
    assert.ok(server.port > 0);
    assert.equal(server.url, `http://127.0.0.1:${server.port}`);
    const res = await fetch(`${server.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    for (const name of [
      'kubeproxy_sync_proxy_rules_duration_seconds',
      'kubeproxy_network_programming_duration_seconds',
      'kubeproxy_sync_proxy_rules_iptables_restore_failures_total',
      'kubeproxy_sync_proxy_rules_last_timestamp_seconds',
      'kpx_controller_generation',
      'kpx_executor_applied_generation',
      'kpx_executor_drift_repairs_total',
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
    }
    assert.match(text, /^kubeproxy_sync_proxy_rules_duration_seconds_count\{ip_family="IPv4"\} 1$/m);
    assert.match(text, /^kpx_controller_generation 9$/m);
    // No health check given: those paths are not served.
    assert.equal((await fetch(`${server.url}/healthz`)).status, 404);
    assert.equal((await fetch(`${server.url}/nope`)).status, 404);
    const post = await fetch(`${server.url}/metrics`, { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
  } finally {
    await server.close();
  }
});

test("/healthz and /livez: 200 with kube-proxy's JSON when healthy, 503 when not, counted by code", async () => {
  const registry = createMetrics();
  const m = executorMetrics(registry);
  let clockMs = Date.parse('2025-06-01T12:00:00Z');
  const now = () => new Date(clockMs);
  const tracker = createHealthTracker({ healthTimeoutMs: 60_000, now });
  const server = await startHttpServer({
    listen: '127.0.0.1:0',
    registry,
    healthz: () => ({ ...tracker.report(), details: { appliedGeneration: 3 } }),
    probeCounters: m,
    now,
  });
  try {
    tracker.updated('IPv4');
    let res = await fetch(`${server.url}/healthz`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/json');
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    assert.deepEqual(await res.json(), {
      lastUpdated: '2025-06-01T12:00:00.000Z',
      currentTime: '2025-06-01T12:00:00.000Z',
      nodeEligible: true,
      details: { appliedGeneration: 3 },
    });

    tracker.queuedUpdate('IPv4');
    clockMs += 61_000;
    res = await fetch(`${server.url}/healthz`);
    assert.equal(res.status, 503);
    const body = (await res.json()) as Record<string, unknown>;
    assert.equal(body.lastUpdated, '2025-06-01T12:00:00.000Z', 'the last real update when unhealthy');
    assert.equal(body.currentTime, '2025-06-01T12:01:01.000Z');
    assert.equal((await fetch(`${server.url}/livez`)).status, 503);

    tracker.updated('IPv4');
    tracker.syncNode({ spec: { taints: [{ key: 'ToBeDeletedByClusterAutoscaler' }] } });
    res = await fetch(`${server.url}/healthz`);
    assert.equal(res.status, 503, 'node being deleted: not eligible');
    assert.equal(((await res.json()) as Record<string, unknown>).nodeEligible, false);
    res = await fetch(`${server.url}/livez`);
    assert.equal(res.status, 200, '/livez ignores eligibility');
    assert.deepEqual(Object.keys((await res.json()) as object), ['lastUpdated', 'currentTime', 'details']);

    const head = await fetch(`${server.url}/livez`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');

    const text = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(text, new RegExp(`^${MetricName.ProxyHealthz}\\{code="200"\\} 1$`, 'm'));
    assert.match(text, new RegExp(`^${MetricName.ProxyHealthz}\\{code="503"\\} 2$`, 'm'));
    assert.match(text, new RegExp(`^${MetricName.ProxyLivez}\\{code="503"\\} 1$`, 'm'));
    assert.match(text, new RegExp(`^${MetricName.ProxyLivez}\\{code="200"\\} 2$`, 'm'));
  } finally {
    await server.close();
  }
});

test('a health check that throws or rejects answers 503 with the error in details', async () => {
  let mode: 'throw' | 'reject' | 'ok' = 'throw';
  const server = await startHttpServer({
    healthz: (): HealthReport | Promise<HealthReport> => {
      if (mode === 'throw') throw new Error('state store unreachable');
      if (mode === 'reject') return Promise.reject(new Error('timed out'));
      return Promise.resolve({ ok: true });
    },
  });
  try {
    assert.equal(server.address, '127.0.0.1', 'default listen host');
    let res = await fetch(`${server.url}/healthz`);
    assert.equal(res.status, 503);
    assert.deepEqual(((await res.json()) as { details: unknown }).details, { error: 'state store unreachable' });
    mode = 'reject';
    res = await fetch(`${server.url}/livez`);
    assert.equal(res.status, 503);
    assert.deepEqual(((await res.json()) as { details: unknown }).details, { error: 'timed out' });
    mode = 'ok';
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
    assert.equal((await fetch(`${server.url}/metrics`)).status, 404, 'no registry given');
  } finally {
    await server.close();
  }
});

test('close() is idempotent, drops keep-alive connections, and the port stops answering', async () => {
  const server = await startHttpServer({ registry: createMetrics() });
  // Hold a keep-alive connection open across close().
  const agentRes = await new Promise<number>((resolve, reject) => {
    const req = request(`${server.url}/metrics`, { headers: { Connection: 'keep-alive' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(agentRes, 200);
  await Promise.all([server.close(), server.close()]);
  await server.close();
  await assert.rejects(fetch(`${server.url}/metrics`));
});

test('IPv6 loopback [::1]:0', async (t) => {
  const hasV6Loopback = Object.values(networkInterfaces()).some((list) => list?.some((i) => i.address === '::1'));
  if (!hasV6Loopback) {
    t.skip('no ::1 on this machine');
    return;
  }
  const server = await startHttpServer({ listen: '[::1]:0', registry: createMetrics() });
  try {
    assert.equal(server.address, '::1');
    assert.equal(server.url, `http://[::1]:${server.port}`);
    assert.equal((await fetch(`${server.url}/metrics`)).status, 200);
  } finally {
    await server.close();
  }
});

test('a malformed address is a ListenAddressError; a port in use is an HttpServerError naming the address', async () => {
  await assert.rejects(startHttpServer({ listen: '127.0.0.1' }), (err: unknown) => {
    assert.ok(err instanceof ListenAddressError);
    assert.equal(err.value, '127.0.0.1');
    return true;
  });
  await assert.rejects(startHttpServer({ listen: '::1:80' }), ListenAddressError);
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const port = (blocker.address() as { port: number }).port;
  try {
    await assert.rejects(
      startHttpServer({ listen: `127.0.0.1:${port}`, registry: createMetrics() }),
      (err: unknown) => {
        assert.ok(err instanceof HttpServerError);
        assert.equal(err.listen, `127.0.0.1:${port}`);
        assert.match(err.message, /EADDRINUSE/);
        assert.equal((err.cause as { code?: string }).code, 'EADDRINUSE');
        return true;
      },
    );
  } finally {
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
  }
});
