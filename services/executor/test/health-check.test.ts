// healthCheckNodePort servers: kube-proxy's answer byte for byte, the addresses served, and real HTTP servers on
// loopback that open, update, close and survive a port that cannot be bound.
import assert from 'node:assert/strict';
import { get as httpGet, type IncomingHttpHeaders } from 'node:http';
import { createServer as createTcpServer, type Server } from 'node:net';
import type { networkInterfaces } from 'node:os';
import { describe, test } from 'node:test';
import { NodePortAddressesKind, parseCidr, type Cidr, type NodePortAddresses } from '@kpx/model';
import { RuleState, hashed } from '@kpx/ruleset';
import { freePort } from '@kpx/testing';
import type { RuleObject } from '@kpx/proto';
import {
  LocalHealthCheckServers,
  healthCheckResponse,
  healthChecksOf,
  listenAddresses,
  readBackDigest,
  type HealthCheckService,
  type HealthCheckSyncResult,
} from '../src/index.js';
import { updateHealthChecks } from '../src/health-check.js';

/** nodePortAddresses listing these CIDRs (none: every address), as the configuration decodes them. */
const cidrs = (...texts: string[]): NodePortAddresses =>
  texts.length === 0
    ? { kind: NodePortAddressesKind.All }
    : {
        kind: NodePortAddressesKind.CIDRs,
        cidrs: texts.map((t) => parseCidr(t)).filter((c): c is Cidr => c !== undefined),
      };

test("the answer is kube-proxy's: its JSON, nosniff, 200 only with local endpoints and a healthy proxy", () => {
  const svc = { namespace: 'edge', name: 'ingress', localEndpoints: 2 };
  const ok = healthCheckResponse(svc, true);
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.headers, { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff' });
  // kube-proxy: dedent of a tab-indented template, trimmed of newlines.
  assert.equal(
    ok.body,
    '{\n\t"service": {\n\t\t"namespace": "edge",\n\t\t"name": "ingress"\n\t},\n\t"localEndpoints": 2,\n\t"serviceProxyHealthy": true\n}',
  );
  assert.deepEqual(JSON.parse(ok.body), {
    service: { namespace: 'edge', name: 'ingress' },
    localEndpoints: 2,
    serviceProxyHealthy: true,
  });
  assert.equal(healthCheckResponse({ ...svc, localEndpoints: 0 }, true).status, 503);
  const sick = healthCheckResponse(svc, false);
  assert.equal(sick.status, 503);
  assert.equal((JSON.parse(sick.body) as { serviceProxyHealthy: boolean }).serviceProxyHealthy, false);
});

test('listen addresses: the family wildcard, or the interface addresses inside nodePortAddresses of the family', () => {
  const ifs = {
    lo: [
      { address: '127.0.0.1', family: 'IPv4', netmask: '255.0.0.0', mac: '', internal: true, cidr: '127.0.0.1/8' },
      { address: '::1', family: 'IPv6', netmask: '', mac: '', internal: true, cidr: '::1/128', scopeid: 0 },
    ],
    eth0: [
      {
        address: '10.0.0.11',
        family: 'IPv4',
        netmask: '255.255.255.0',
        mac: '',
        internal: false,
        cidr: '10.0.0.11/24',
      },
      { address: 'fd00::11', family: 'IPv6', netmask: '', mac: '', internal: false, cidr: 'fd00::11/64', scopeid: 0 },
      { address: 'fe80::1', family: 'IPv6', netmask: '', mac: '', internal: false, cidr: 'fe80::1/64', scopeid: 2 },
    ],
  } as unknown as ReturnType<typeof networkInterfaces>;
  assert.deepEqual(listenAddresses('IPv4', cidrs(), ifs), ['0.0.0.0']);
  assert.deepEqual(listenAddresses('IPv6', cidrs(), ifs), ['::']);
  assert.deepEqual(listenAddresses('IPv4', cidrs('10.0.0.0/24'), ifs), ['10.0.0.11']);
  assert.deepEqual(listenAddresses('IPv4', cidrs('10.0.0.0/24', '127.0.0.0/8'), ifs), ['10.0.0.11', '127.0.0.1']);
  // CIDRs of the other family only: this family listens everywhere (kube-proxy's per-family NodePortAddresses).
  assert.deepEqual(listenAddresses('IPv6', cidrs('10.0.0.0/24'), ifs), ['::']);
  assert.deepEqual(listenAddresses('IPv6', cidrs('fd00::/64', '10.0.0.0/24'), ifs), ['fd00::11']);
  assert.deepEqual(listenAddresses('IPv4', cidrs('0.0.0.0/0', '10.0.0.0/24'), ifs), ['0.0.0.0']);
  assert.deepEqual(
    listenAddresses('IPv4', { kind: NodePortAddressesKind.Primary }, ifs),
    ['0.0.0.0'],
    'primary: every address',
  );
});

const hcObject = (port: number, localEndpoints: number, name = 'svc'): RuleObject => ({
  kind: 'healthcheck.service',
  key: String(port),
  payload: { $case: 'healthCheckService', value: { namespace: 'ns', name, port, localEndpoints } },
});
const chainObject = (name: string): RuleObject => ({
  kind: 'iptables.chain',
  key: `nat/${name}`,
  payload: { $case: 'iptablesChain', value: { table: 'nat', name, rules: ['-j RETURN'] } },
});

test('health checks of a state, and of the ids a change touched', () => {
  const state = RuleState.from([hcObject(32000, 2), hcObject(32001, 0, 'other'), chainObject('KUBE-SVC-X')]);
  const checks = healthChecksOf(state);
  assert.deepEqual([...checks.keys()].sort(), ['32000', '32001']);
  assert.deepEqual(checks.get('32000'), { namespace: 'ns', name: 'svc', port: 32000, localEndpoints: 2 });
  assert.equal(updateHealthChecks(checks, state, ['iptables.chain:nat/KUBE-SVC-X']), false, 'no health check touched');
  state.upsert(hashed(hcObject(32000, 0)));
  state.delete({ kind: 'healthcheck.service', key: '32001' });
  assert.equal(updateHealthChecks(checks, state, ['healthcheck.service:32000', 'healthcheck.service:32001']), true);
  assert.deepEqual([...checks.values()], [{ namespace: 'ns', name: 'svc', port: 32000, localEndpoints: 0 }]);
  assert.equal(updateHealthChecks(checks, state, ['healthcheck.service:32000']), false, 'same again: no change');
});

test("read-back digest: the kernel's objects plus the applied non-kernel objects equal the applied digest", () => {
  const kernel = [chainObject('KUBE-SVC-X'), chainObject('KUBE-SEP-Y')];
  const state = RuleState.from([...kernel, hcObject(32000, 2)]);
  const isChain = (o: { kind: string }): boolean => o.kind === 'iptables.chain';
  assert.equal(readBackDigest(RuleState.from(kernel).digest, state, isChain), state.digest);
  // A chain missing from the kernel: the digests differ.
  assert.notEqual(readBackDigest(RuleState.from(kernel.slice(0, 1)).digest, state, isChain), state.digest);
});

/** One GET on a new connection (no pooling: a closed server must be seen as closed). */
function get(
  host: string,
  port: number,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: string } | 'refused'> {
  return new Promise((resolve, reject) => {
    const req = httpGet({ host, port, path: '/', agent: false, timeout: 3000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNREFUSED' ? resolve('refused') : reject(err)));
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

const answer = async (host: string, port: number): Promise<[number, number] | 'refused'> => {
  const r = await get(host, port);
  if (r === 'refused') return r;
  return [r.status, (JSON.parse(r.body) as { localEndpoints: number }).localEndpoints];
};

describe('LocalHealthCheckServers on loopback', () => {
  const svc = (port: number, localEndpoints: number, name = 'svc'): HealthCheckService => ({
    namespace: 'ns',
    name,
    port,
    localEndpoints,
  });

  test('open, answer, update in place, close; one family per socket', async () => {
    let healthy = true;
    const results: HealthCheckSyncResult[] = [];
    const servers = new LocalHealthCheckServers({
      proxyHealthy: () => healthy,
      nodePortAddresses: cidrs('127.0.0.1/32', '::1/128'),
      onResult: (r) => results.push(r),
    });
    const [a, b] = [await freePort(), await freePort()];
    try {
      const r = await servers.sync('IPv4', [svc(a, 2), svc(b, 0, 'empty')]);
      assert.deepEqual(r, { family: 'IPv4', listening: [a, b].sort((x, y) => x - y), failed: [] });
      const first = await get('127.0.0.1', a);
      assert.ok(first !== 'refused');
      assert.equal(first.status, 200);
      assert.equal(first.headers['content-type'], 'application/json');
      assert.equal(first.headers['x-content-type-options'], 'nosniff');
      assert.deepEqual(JSON.parse(first.body), {
        service: { namespace: 'ns', name: 'svc' },
        localEndpoints: 2,
        serviceProxyHealthy: true,
      });
      assert.deepEqual(await answer('127.0.0.1', b), [503, 0]);
      // The proxy turns unhealthy: every check fails, whatever its endpoints.
      healthy = false;
      assert.deepEqual(await answer('127.0.0.1', a), [503, 2]);
      healthy = true;
      // Counts change in place; a removed service's port closes.
      await servers.sync('IPv4', [svc(a, 0)]);
      assert.deepEqual(await answer('127.0.0.1', a), [503, 0]);
      assert.equal(await get('127.0.0.1', b), 'refused');
      // The IPv6 rule set has the same port with its own count: an IPv6 socket of its own.
      await servers.sync('IPv6', [svc(a, 1)]);
      assert.deepEqual(await answer('::1', a), [200, 1]);
      assert.deepEqual(await answer('127.0.0.1', a), [503, 0]);
      await servers.sync('IPv4', []);
      assert.equal(await get('127.0.0.1', a), 'refused');
      assert.deepEqual(await answer('::1', a), [200, 1]);
      assert.deepEqual(
        results.map((r) => r.family),
        ['IPv4', 'IPv4', 'IPv6', 'IPv4'],
        'one result per sync',
      );
    } finally {
      await servers.close();
    }
    assert.equal(await get('::1', a), 'refused');
  });

  test('a port in use fails alone, is reported, and is retried until it binds', async () => {
    const results: { r: HealthCheckSyncResult; retry: boolean }[] = [];
    const servers = new LocalHealthCheckServers({
      proxyHealthy: () => true,
      nodePortAddresses: cidrs('127.0.0.1/32'),
      retryMs: 100,
      onResult: (r, retry) => results.push({ r, retry }),
    });
    const [free, taken] = [await freePort(), await freePort()];
    const squatter: Server = createTcpServer();
    await new Promise<void>((r) => squatter.listen(taken, '127.0.0.1', r));
    try {
      const r = await servers.sync('IPv4', [svc(free, 1), svc(taken, 3, 'busy')]);
      assert.deepEqual(r.listening, [free]);
      assert.equal(r.failed.length, 1);
      assert.equal(r.failed[0]?.port, taken);
      assert.equal(r.failed[0]?.service, 'ns/busy');
      assert.match(r.failed[0]?.error ?? '', /EADDRINUSE/);
      assert.deepEqual(await answer('127.0.0.1', free), [200, 1]);
      // Retries report failures until the port is free, then it serves.
      await new Promise((res) => setTimeout(res, 350));
      assert.ok(
        results.some((x) => x.retry && x.r.failed.length === 1),
        'retries ran and failed while the port is taken',
      );
      await new Promise<void>((res) => squatter.close(() => res()));
      const start = Date.now();
      while (!results.some((x) => x.retry && x.r.failed.length === 0 && x.r.listening.includes(taken))) {
        assert.ok(Date.now() - start < 5000, 'a retry binds the freed port');
        await new Promise((res) => setTimeout(res, 20));
      }
      assert.deepEqual(await answer('127.0.0.1', taken), [200, 3]);
      assert.deepEqual(await answer('127.0.0.1', free), [200, 1]);
    } finally {
      squatter.close();
      await servers.close();
    }
  });
});
