// healthCheckNodePort servers end to end: a real nats-server, the controller on a manifests directory, one
// `kpx executor` per node inside that node's network namespace. An external client on the LAN (where a cloud
// load balancer's prober would be) asks each node's health check port, as kube-proxy answers it.
//
//   lan 10.0.0.0/24, fd00::/64:  n1 10.0.0.11 / fd00::11    n2 10.0.0.12 / fd00::12    ext 10.0.0.100 / fd00::100
//   service e2e/lb: dual-stack LoadBalancer, externalTrafficPolicy Local, two ports, healthCheckNodePort 32100
//     IPv4 endpoints: p1a, p1b ready on n1, p1c terminating on n1   then only p2a on n2
//     IPv6 endpoints: p1a on n1
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { defaultKubeProxyConfig } from '@kpx/model';
import { ManifestsDirSource, runController, type RunningController } from '@kpx/controller';
import { startTracing, type Tracing } from '@kpx/telemetry';
import {
  createTopology,
  nodesYaml,
  standardNode,
  standardPod,
  startNatsServer,
  type NatsServer,
  type Topology,
  freePort,
} from '@kpx/testing';
import {
  executorLogs,
  killExecutors,
  spawnKpxExecutor,
  waitUntil,
  writeAtomically,
  type ExecutorProcess,
} from './system.js';
import { createSecureSetup, dialAddress, type SecureSetup } from './secure.js';

const n1 = standardNode('n1', 1);
const n2 = standardNode('n2', 2);
const pods = {
  p1a: standardPod('p1a', n1, 10),
  p1b: standardPod('p1b', n1, 11),
  p1c: standardPod('p1c', n1, 12),
  p2a: standardPod('p2a', n2, 10),
};
type PodName = keyof typeof pods;
const HealthPort = 32100;
const Lan = { n1: { IPv4: n1.lanIPv4, IPv6: n1.lanIPv6 }, n2: { IPv4: n2.lanIPv4, IPv6: n2.lanIPv6 } } as const;
type NodeName = keyof typeof Lan;
type Family = 'IPv4' | 'IPv6';

const serviceYaml = `apiVersion: v1
kind: Service
metadata: { name: lb, namespace: e2e }
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  healthCheckNodePort: ${HealthPort}
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  clusterIP: 10.96.0.70
  clusterIPs: [10.96.0.70, "fd00:96::70"]
  ports:
    - { name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30070 }
    - { name: https, protocol: TCP, port: 443, targetPort: 8443, nodePort: 30071 }
status:
  loadBalancer: { ingress: [{ ip: 192.0.2.70 }] }
`;

const sliceYaml = (
  family: Family,
  ready: readonly PodName[],
  terminating: readonly PodName[] = [],
): string => `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: lb-${family.toLowerCase()}, namespace: e2e, labels: { kubernetes.io/service-name: lb } }
addressType: ${family}
ports: [{ name: http, protocol: TCP, port: 8080 }, { name: https, protocol: TCP, port: 8443 }]
endpoints:${ready.length + terminating.length === 0 ? ' []' : ''}
${[...ready.map((p) => [p, true] as const), ...terminating.map((p) => [p, false] as const)]
  .map(
    ([p, isReady]) =>
      `  - { addresses: ["${family === 'IPv4' ? pods[p].ipv4 : pods[p].ipv6}"], nodeName: ${pods[p].node}, conditions: { ready: ${isReady}, serving: true, terminating: ${!isReady} } }`,
  )
  .join('\n')}
`;

// GETs on new connections from the namespace it runs in, one per HOST PORT pair, in parallel; prints a JSON list of
// {status, type, nosniff, body} or "refused".
const ProbeScript = `import http from 'node:http';
const args = process.argv.slice(2);
const one = (host, port) => new Promise((resolve) => {
  const req = http.get({ host, port: Number(port), path: '/', agent: false, timeout: 2000 }, (res) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (c) => (body += c));
    res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'], nosniff: res.headers['x-content-type-options'], body }));
  });
  req.on('error', (e) => resolve(e.code === 'ECONNREFUSED' ? 'refused' : 'error ' + e.code));
  req.on('timeout', () => req.destroy());
});
const jobs = [];
for (let i = 0; i < args.length; i += 2) jobs.push(one(args[i], args[i + 1]));
process.stdout.write(JSON.stringify(await Promise.all(jobs)));
`;

let topo: Topology | undefined;
let nats: NatsServer | undefined;
let controller: RunningController | undefined;
let tracing: Tracing | undefined;
let dir = '';
let secure: SecureSetup | undefined;
const executors = new Map<string, ExecutorProcess>();
/** Each executor's /metrics address. */
const metricsAt = new Map<string, string>();

async function spawnExecutor(node: NodeName): Promise<void> {
  const listen = `127.0.0.1:${await freePort()}`;
  metricsAt.set(node, listen);
  executors.set(
    node,
    spawnKpxExecutor([
      '--node',
      node,
      '--nats',
      nats!.url,
      '--controller',
      dialAddress(controller!.grpcAddress),
      '--netns',
      topo!.namespaceOf(node),
      '--ip-families',
      'ipv4,ipv6',
      '--healthz-listen',
      '127.0.0.1:0',
      '--metrics-listen',
      listen,
      '--drift-check',
      '0',
      '--log-level',
      'info',
      ...secure!.executorArgs(node),
    ]),
  );
}

const waitFor = (cond: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<number> =>
  waitUntil(cond, what, ms, () => executorLogs(executors));

/** Both nodes in sync in both families, and the nodes of `family` at `generation` or later. */
const allAcked = (generation: number, family?: Family): boolean => {
  const s = controller!.pipeline.tracker.status();
  return (
    s.length === 4 &&
    s.every((n) => n.inSync && (family === undefined || n.ipFamily !== family || n.ackedGeneration >= generation))
  );
};

interface Answer {
  status: number;
  type: string;
  nosniff: string;
  body: string;
}

/** The health checks of (node, family) pairs, asked from the external client in one go. */
async function askAll(targets: readonly (readonly [NodeName, Family])[]): Promise<(Answer | string)[]> {
  const args = targets.flatMap(([node, family]) => [Lan[node][family], String(HealthPort)]);
  const { stdout } = await topo!.exec('ext', process.execPath, [join(dir, 'probe.mjs'), ...args]);
  return JSON.parse(stdout) as (Answer | string)[];
}

const summary = (a: Answer | string): [number, number] | string =>
  typeof a === 'string' ? a : [a.status, (JSON.parse(a.body) as { localEndpoints: number }).localEndpoints];

/** [status, localEndpoints] of each (node, family) health check, or what went wrong. */
async function checks(...targets: (readonly [NodeName, Family])[]): Promise<([number, number] | string)[]> {
  return (await askAll(targets)).map(summary);
}

describe('healthCheckNodePort servers in the node namespaces', () => {
  before(async () => {
    tracing = startTracing({ serviceName: 'kpx-controller' });
    dir = await mkdtemp(join(tmpdir(), 'kpx-e2e-health-'));
    await writeFile(join(dir, 'probe.mjs'), ProbeScript);
    await writeFile(join(dir, 'nodes.yaml'), nodesYaml([n1, n2]));
    await writeFile(join(dir, 'lb.yaml'), serviceYaml);
    await writeFile(join(dir, 'lb-ipv4.yaml'), sliceYaml('IPv4', ['p1a', 'p1b'], ['p1c']));
    await writeFile(join(dir, 'lb-ipv6.yaml'), sliceYaml('IPv6', ['p1a']));
    topo = await createTopology({ nodes: [n1, n2], pods: [] });
    secure = await createSecureSetup(['n1', 'n2']);
    nats = await startNatsServer({ jetstream: true, extraConfig: secure.natsConfig });
    controller = await runController({
      source: new ManifestsDirSource({ dir, debounceMs: 20, rescanMs: 500 }),
      sourceName: `manifests ${dir}`,
      natsUrl: nats.url,
      grpcListen: '127.0.0.1:0',
      metricsListen: '127.0.0.1:0',
      config: { ...defaultKubeProxyConfig(), minSyncPeriodMs: 0 },
      logLevel: 'warn',
      tracer: tracing.tracer,
      families: ['IPv4', 'IPv6'],
      ...secure.controller,
    });
    await spawnExecutor('n1');
    await spawnExecutor('n2');
    await waitFor(() => allAcked(1, 'IPv4') && allAcked(1, 'IPv6'), 'both executors to converge', 20_000);
  });

  after(async () => {
    await killExecutors(executors.values());
    executors.clear();
    await controller?.stop();
    await nats?.stop();
    await topo?.cleanup();
    await tracing?.shutdown();
    if (dir) await rm(dir, { recursive: true, force: true });
    await secure?.remove();
  });

  it("answers kube-proxy's JSON: 200 with the node's ready local endpoints, 503 on a node without", async () => {
    await waitFor(
      async () => JSON.stringify(await checks(['n1', 'IPv4'])) === '[[200,2]]',
      'n1 to serve its health check',
    );
    const [a] = await askAll([['n1', 'IPv4']]);
    assert.ok(a !== undefined && typeof a !== 'string', JSON.stringify(a));
    assert.equal(a.type, 'application/json');
    assert.equal(a.nosniff, 'nosniff');
    assert.equal(
      a.body,
      '{\n\t"service": {\n\t\t"namespace": "e2e",\n\t\t"name": "lb"\n\t},\n\t"localEndpoints": 2,\n\t"serviceProxyHealthy": true\n}',
    );
    // The terminating pod on n1 does not count; n2 has no endpoint. The IPv6 rule set has its own count, served on
    // IPv6 sockets.
    assert.deepEqual(
      await checks(['n2', 'IPv4'], ['n1', 'IPv6'], ['n2', 'IPv6']),
      [
        [503, 0],
        [200, 1],
        [503, 0],
      ],
      executorLogs(executors),
    );
    // The health check objects are in every node's state, not in its kernel: the read-back still matches.
    const s = controller!.pipeline.tracker.status();
    assert.deepEqual(
      s.map((n) => [n.node, n.ipFamily, n.actualDigest === n.desiredDigest, n.driftRepairs]),
      [
        ['n1', 'IPv4', true, 0],
        ['n1', 'IPv6', true, 0],
        ['n2', 'IPv4', true, 0],
        ['n2', 'IPv6', true, 0],
      ],
    );
  });

  it('flips after an EndpointSlice file change, once both executors acked it', async () => {
    const g = controller!.pipeline.generation;
    const t0 = Date.now();
    await writeAtomically(dir, 'lb-ipv4.yaml', sliceYaml('IPv4', ['p2a']));
    await waitFor(() => allAcked(g + 1, 'IPv4'), 'both executors to ack the slice change');
    const acked = Date.now() - t0;
    // The servers were updated before the ack: the answers have changed already. The other family is untouched.
    assert.deepEqual(await checks(['n1', 'IPv4'], ['n2', 'IPv4'], ['n1', 'IPv6']), [
      [503, 0],
      [200, 1],
      [200, 1],
    ]);
    assert.ok(acked < 2000, `file change to acks in ${acked} ms`);
    // The read-back after the delta (half a second later) matches too: no drift reported, nothing repaired.
    await waitFor(
      () => controller!.pipeline.tracker.status().every((n) => n.actualDigest === n.desiredDigest),
      'read-backs to match',
    );
    assert.ok(controller!.pipeline.tracker.status().every((n) => n.driftRepairs === 0 && n.lastDrift.length === 0));
    const metrics = await (await fetch(`http://${metricsAt.get('n2')!}/metrics`)).text();
    assert.match(metrics, /kpx_executor_healthcheck_servers\{ip_family="IPv4"\} 1/);
    assert.doesNotMatch(metrics, /kpx_executor_healthcheck_listen_failures_total\{[^}]*\} [1-9]/);
  });

  it('the service removed: the port closes; the executor killed: its servers go with it', async () => {
    const g = controller!.pipeline.generation;
    await rm(join(dir, 'lb.yaml'));
    await waitFor(() => allAcked(g + 1, 'IPv4') && allAcked(g + 1, 'IPv6'), 'both executors to ack the removal');
    assert.deepEqual(await checks(['n2', 'IPv4'], ['n1', 'IPv6']), ['refused', 'refused']);
    // Back again, then n1's executor dies: the health check process in n1's namespace ends with it.
    const g2 = controller!.pipeline.generation;
    await writeAtomically(dir, 'lb.yaml', serviceYaml);
    await waitFor(
      () => allAcked(g2 + 1, 'IPv4') && allAcked(g2 + 1, 'IPv6'),
      'both executors to ack the service again',
    );
    assert.deepEqual(await checks(['n1', 'IPv6']), [[200, 1]]);
    const p = executors.get('n1')!;
    p.child.kill('SIGKILL');
    await p.exited;
    await waitFor(
      async () => (await checks(['n1', 'IPv6']))[0] === 'refused',
      "n1's health check server to end with its executor",
      5_000,
    );
    assert.deepEqual(await checks(['n2', 'IPv4']), [[200, 1]], "n2's servers keep working");
  });
});
