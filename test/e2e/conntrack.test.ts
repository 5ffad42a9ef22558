// Stale UDP conntrack cleanup with real packets: the whole system (nats-server, the controller on a manifests
// directory, one `kpx executor` per node inside that node's network namespace) and a client pod that sends UDP
// datagrams from ONE fixed source port, so every datagram of a test belongs to the same conntrack entry.
//
//   lan 10.0.0.0/24:  n1 10.0.0.11 (pods p1a .1.10, client c1 .1.20)   n2 10.0.0.12 (pod p2a .2.10)
//   every pod server answers UDP 8053 with its name; services map UDP 53 -> 8053:
//   e2e/udp   10.96.0.60  endpoints p1a, p2a       then one of them removed (its server keeps running)
//   e2e/late  10.96.0.61  no endpoints (REJECT)    then p1a
//   e2e/fresh 10.96.0.62  does not exist           then created with p2a
//   e2e/flip  10.96.0.63  p1a                      then none, then p2a
//   e2e/udp6  fd00:96::60 endpoints p1a, p2a (IPv6) then one of them removed
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
} from '@kpx/testing';
import {
  executorLogs as logsOf,
  killExecutors,
  spawnKpxExecutor,
  waitUntil,
  writeAtomically as writeIn,
  type ExecutorProcess,
} from './system.js';
import { createSecureSetup, dialAddress, type SecureSetup } from './secure.js';

const n1 = standardNode('n1', 1);
const n2 = standardNode('n2', 2);
const pods = { p1a: standardPod('p1a', n1, 10), c1: standardPod('c1', n1, 20), p2a: standardPod('p2a', n2, 10) };
type PodName = keyof typeof pods;
const VIP = {
  udp: '10.96.0.60',
  late: '10.96.0.61',
  fresh: '10.96.0.62',
  flip: '10.96.0.63',
  udp6: 'fd00:96::60',
} as const;
type ServiceName = keyof typeof VIP;

const isV6 = (name: ServiceName): boolean => VIP[name].includes(':');

const serviceYaml = (name: ServiceName): string => `apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: e2e }
spec:
  type: ClusterIP
  clusterIP: "${VIP[name]}"
  clusterIPs: ["${VIP[name]}"]
  ipFamilies: [${isV6(name) ? 'IPv6' : 'IPv4'}]
  ports: [{ name: dns, protocol: UDP, port: 53, targetPort: 8053 }]
`;

const sliceYaml = (service: ServiceName, backends: readonly PodName[]): string => `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${service}-1, namespace: e2e, labels: { kubernetes.io/service-name: ${service} } }
addressType: ${isV6(service) ? 'IPv6' : 'IPv4'}
ports: [{ name: dns, protocol: UDP, port: 8053 }]
endpoints:${backends.length === 0 ? ' []' : ''}
${backends.map((p) => `  - { addresses: ["${isV6(service) ? pods[p].ipv6 : pods[p].ipv4}"], nodeName: ${pods[p].node}, conditions: { ready: true } }`).join('\n')}
`;

// Sends datagrams one after another, each from a new socket bound to the same source port in the client pod, and
// prints one outcome per datagram: the answering pod's name, "refused" (ICMP port unreachable) or "timeout".
const ClientScript = `import dgram from 'node:dgram';
const [host, port, sport, count, timeoutMs] = process.argv.slice(2);
const once = () => new Promise((resolve) => {
  const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  let done = false;
  const finish = (r) => { if (done) return; done = true; clearTimeout(timer); sock.close(); resolve(r); };
  const timer = setTimeout(() => finish('timeout'), Number(timeoutMs));
  sock.on('error', (e) => finish(e.code === 'ECONNREFUSED' ? 'refused' : 'error ' + e.code));
  sock.on('message', (m) => finish(m.toString().split(' ')[0]));
  sock.bind(Number(sport), () => sock.connect(Number(port), host, () => sock.send('hello\\n')));
});
const out = [];
for (let i = 0; i < Number(count); i++) out.push(await once());
process.stdout.write(JSON.stringify(out));
`;

let topo: Topology | undefined;
let nats: NatsServer | undefined;
let controller: RunningController | undefined;
let tracing: Tracing | undefined;
let dir = '';
let secure: SecureSetup | undefined;
const executors = new Map<string, ExecutorProcess>();

function spawnExecutor(node: string): void {
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
      '127.0.0.1:0',
      '--drift-check',
      '0',
      '--log-level',
      'info',
      ...secure!.executorArgs(node),
    ]),
  );
}

const waitFor = (cond: () => boolean, what: string, ms = 15_000): Promise<number> =>
  waitUntil(cond, what, ms, () => logsOf(executors));

/** Both nodes in sync in both families, and the nodes of `family` (a change reaches one family) at `generation`. */
const allAcked = (generation: number, family?: 'IPv4' | 'IPv6'): boolean => {
  const s = controller!.pipeline.tracker.status();
  return (
    s.length === 4 &&
    s.every((n) => n.inSync && (family === undefined || n.ipFamily !== family || n.ackedGeneration >= generation))
  );
};

const writeAtomically = (file: string, text: string): Promise<void> => writeIn(dir, file, text);

/** Makes a manifest change and waits until both executors acked it (an executor acks after its conntrack cleanup). */
async function change(file: string, text: string, family: 'IPv4' | 'IPv6' = 'IPv4'): Promise<void> {
  const g = controller!.pipeline.generation;
  await writeAtomically(file, text);
  await waitFor(() => allAcked(g + 1, family), `both executors to ack the change of ${file}`);
}

/** Datagrams to VIP:53 from the client pod, all from source port `sport`: who answered each. */
async function send(service: ServiceName, sport: number, count = 3, timeoutMs = 1000): Promise<string[]> {
  const { stdout } = await topo!.exec('c1', process.execPath, [
    join(dir, 'udp-client.mjs'),
    VIP[service],
    '53',
    String(sport),
    String(count),
    String(timeoutMs),
  ]);
  return JSON.parse(stdout) as string[];
}

/** n1's UDP conntrack entries to a service IP (the client's node holds the NAT of its flows). */
async function flows(service: ServiceName): Promise<string[]> {
  const { stdout } = await topo!.exec('n1', 'conntrack', [
    '-L',
    '-f',
    isV6(service) ? 'ipv6' : 'ipv4',
    '-p',
    'udp',
    '--orig-dst',
    VIP[service],
  ]);
  return stdout.split('\n').filter((l) => l.trim() !== '');
}

const executorLogs = (): string => logsOf(executors, 2000);

describe('stale UDP conntrack entries are deleted when a UDP service changes', () => {
  before(async () => {
    tracing = startTracing({ serviceName: 'kpx-controller' });
    dir = await mkdtemp(join(tmpdir(), 'kpx-e2e-conntrack-'));
    await writeFile(join(dir, 'udp-client.mjs'), ClientScript);
    await writeFile(join(dir, 'nodes.yaml'), nodesYaml([n1, n2]));
    for (const s of ['udp', 'late', 'flip', 'udp6'] as const) await writeFile(join(dir, `${s}.yaml`), serviceYaml(s));
    await writeFile(join(dir, 'udp-slice.yaml'), sliceYaml('udp', ['p1a', 'p2a']));
    await writeFile(join(dir, 'late-slice.yaml'), sliceYaml('late', []));
    await writeFile(join(dir, 'flip-slice.yaml'), sliceYaml('flip', ['p1a']));
    await writeFile(join(dir, 'udp6-slice.yaml'), sliceYaml('udp6', ['p1a', 'p2a']));
    topo = await createTopology({ nodes: [n1, n2], pods: Object.values(pods) });
    await Promise.all((['p1a', 'p2a'] as const).map((p) => topo!.startServer(p, { udp: [8053] })));
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
    spawnExecutor('n1');
    spawnExecutor('n2');
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

  for (const service of ['udp', 'udp6'] as const) {
    it(`an endpoint removed while its server keeps running: the same flow moves to the endpoint left (${isV6(service) ? 'IPv6' : 'IPv4'})`, async () => {
      const sport = isV6(service) ? 41010 : 41000;
      const first = await send(service, sport);
      const pinned = first[0];
      assert.ok(pinned === 'p1a' || pinned === 'p2a', JSON.stringify(first));
      assert.deepEqual(first, [pinned, pinned, pinned], 'one source port, one conntrack entry, one endpoint');
      const other = pinned === 'p1a' ? 'p2a' : 'p1a';
      await change(`${service}-slice.yaml`, sliceYaml(service, [other]), isV6(service) ? 'IPv6' : 'IPv4');
      assert.deepEqual(
        await send(service, sport),
        [other, other, other],
        `the flow must leave ${pinned}\n${executorLogs()}`,
      );
      const gone = isV6(service) ? pods[pinned].ipv6 : pods[pinned].ipv4;
      assert.deepEqual(
        (await flows(service)).filter((l) => l.includes(`src=${gone} `)),
        [],
        `no entry of ${VIP[service]} DNATed to ${pinned} remains`,
      );
    });
  }

  it('a service without endpoints (REJECT) gets one: a flow from a fixed port is refused before, answered after', async () => {
    const sport = 41001;
    assert.deepEqual(await send('late', sport, 2), ['refused', 'refused']);
    // REJECT drops the datagram before its conntrack entry is confirmed: nothing is left to go stale.
    assert.deepEqual(await flows('late'), []);
    await change('late-slice.yaml', sliceYaml('late', ['p1a']));
    assert.deepEqual(await send('late', sport), ['p1a', 'p1a', 'p1a']);
  });

  it('a service IP that was not a service yet: the un-NATed flow to it goes when the service appears', async () => {
    const sport = 41002;
    // Nothing captures 10.96.0.62: the node forwards the datagram to its uplink, where it is lost, and conntrack
    // keeps an entry without NAT for it.
    assert.deepEqual(await send('fresh', sport, 2, 500), ['timeout', 'timeout']);
    const unNATed = await flows('fresh');
    assert.equal(unNATed.length, 1, unNATed.join('\n'));
    assert.match(unNATed[0]!, new RegExp(`src=${VIP.fresh.replaceAll('.', '\\.')} `), 'the entry has no DNAT');
    await writeAtomically('fresh-slice.yaml', sliceYaml('fresh', ['p2a']));
    await change('fresh.yaml', serviceYaml('fresh'));
    assert.deepEqual(await send('fresh', sport), ['p2a', 'p2a', 'p2a'], executorLogs());
  });

  it('the last endpoint removed, then another one added: the flow stays until then, as kube-proxy, then moves', async () => {
    const sport = 41003;
    assert.deepEqual(await send('flip', sport), ['p1a', 'p1a', 'p1a']);
    await change('flip-slice.yaml', sliceYaml('flip', []));
    // kube-proxy leaves the flows of a service without endpoints alone: the established flow still reaches p1a.
    assert.deepEqual(await send('flip', sport, 1), ['p1a']);
    // A new flow is refused.
    assert.deepEqual(await send('flip', sport + 1, 1), ['refused']);
    await change('flip-slice.yaml', sliceYaml('flip', ['p2a']));
    assert.deepEqual(await send('flip', sport), ['p2a', 'p2a', 'p2a'], executorLogs());
    assert.match(executors.get('n1')!.log, /deleted stale UDP conntrack entries/);
  });
});
