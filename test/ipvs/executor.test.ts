// The whole system in IPVS mode, under a real IPVS kernel (tools/ipvs-vm): a real nats-server, the controller with
// `mode: ipvs` on a manifests directory, and one executor per node with the IPVS backend (what
// `kpx executor --backend ipvs --netns NODE` runs), each programming its node's namespace over netlink. Real packets
// check the kernel; the controller's status checks the acks and the executors' read-back digests. The executors
// run in this process: loading the whole CLI takes minutes over the VM's 9p root.
//
//   lan 10.0.0.0/24:  n1 10.0.0.11 (pods p1a .1.10, p1b .1.11)   n2 10.0.0.12 (pods p2a .2.10, p2b .2.11)
//   service e2e/web: ClusterIP 10.96.0.10, TCP 80 -> 8080 and UDP 53 -> 8053
//
// The last test checks stale UDP conntrack cleanup (the conntrack.port node duty) under IPVS: a flow from a fixed
// source port keeps its conntrack entry, DNATed by IPVS to one endpoint, until kpx deletes it.
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ManifestsDirSource, runController, type RunningController } from '@kpx/controller';
import { IpvsBackend, runExecutor, type RunningExecutor } from '@kpx/executor';
import { defaultKubeProxyConfig } from '@kpx/model';
import { startTracing, type Tracing } from '@kpx/telemetry';
import {
  createTopology,
  nodesYaml,
  standardNode,
  standardPod,
  startNatsServer,
  webServiceYaml,
  webSliceYaml,
  type NatsServer,
  type ProbeResult,
  type Topology,
} from '@kpx/testing';

const n1 = standardNode('n1', 1);
const n2 = standardNode('n2', 2);
const pods = {
  p1a: standardPod('p1a', n1, 10),
  p1b: standardPod('p1b', n1, 11),
  p2a: standardPod('p2a', n2, 10),
  p2b: standardPod('p2b', n2, 11),
};
type PodName = keyof typeof pods;
const VIP = '10.96.0.10';

const nodesYamlText = nodesYaml([n1, n2], { ipv6: false });
const serviceYaml = webServiceYaml(VIP);
const sliceYaml = (backends: readonly PodName[]): string => webSliceYaml(backends.map((p) => pods[p]));

let topo: Topology | undefined;
let nats: NatsServer | undefined;
let controller: RunningController | undefined;
let dir = '';
let tracing: Tracing | undefined;
const executors = new Map<string, RunningExecutor>();
const backends: IpvsBackend[] = [];

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms: number): Promise<void> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > ms)
      throw new Error(`timed out after ${ms} ms waiting for ${what}\nstatus: ${JSON.stringify(status())}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const status = () => controller!.pipeline.tracker.status().filter((s) => s.ipFamily === 'IPv4');
/** Both nodes acked `generation` or later with the desired digest, and read their kernels back to the same digest. */
const converged = (generation: number): boolean => {
  const s = status();
  return (
    s.length === 2 &&
    s.every(
      (n) => n.mode === 'ipvs' && n.inSync && n.ackedGeneration >= generation && n.actualDigest === n.desiredDigest,
    )
  );
};

async function writeSlice(backends: readonly PodName[]): Promise<void> {
  await writeFile(join(dir, '.web-slice.tmp'), sliceYaml(backends));
  await rename(join(dir, '.web-slice.tmp'), join(dir, 'web-slice.yaml'));
}

async function answering(from: string, count = 8): Promise<{ tcp: string[]; udp: string[]; failures: ProbeResult[] }> {
  const [tcp = [], udp = []] = await topo!.probe(from, [
    { proto: 'tcp', host: VIP, port: 80, count, timeoutMs: 1500 },
    { proto: 'udp', host: VIP, port: 53, count, timeoutMs: 1500 },
  ]);
  const pick = (rs: ProbeResult[]): string[] =>
    [...new Set(rs.flatMap((r) => (r.kind === 'reply' ? [r.pod] : [])))].sort();
  return { tcp: pick(tcp), udp: pick(udp), failures: [...tcp, ...udp].filter((r) => r.kind !== 'reply') };
}

// Sends one datagram per source port (each port one flow, one conntrack entry) and prints who answered each.
const UdpClientScript = `import dgram from 'node:dgram';
const [host, port, timeoutMs, ...sports] = process.argv.slice(2);
const once = (sport) => new Promise((resolve) => {
  const sock = dgram.createSocket('udp4');
  let done = false;
  const finish = (r) => { if (done) return; done = true; clearTimeout(timer); sock.close(); resolve(r); };
  const timer = setTimeout(() => finish('timeout'), Number(timeoutMs));
  sock.on('error', (e) => finish('error ' + e.code));
  sock.on('message', (m) => finish(m.toString().split(' ')[0]));
  sock.bind(Number(sport), () => sock.connect(Number(port), host, () => sock.send('hello\\n')));
});
const out = [];
for (const sport of sports) out.push(await once(sport));
process.stdout.write(JSON.stringify(out));
`;

/** Datagrams from pod `from` to VIP:53, one from each source port: the pod that answered each. */
async function sendUdp(from: PodName, sports: readonly number[]): Promise<string[]> {
  const { stdout } = await topo!.exec(from, process.execPath, [
    join(dir, 'udp-client.mjs'),
    VIP,
    '53',
    '3000',
    ...sports.map(String),
  ]);
  return JSON.parse(stdout) as string[];
}

/** The node's UDP conntrack entries to the VIP (`conntrack -L`), one line each. */
async function udpFlows(node: string): Promise<string[]> {
  const { stdout } = await topo!.exec(node, 'conntrack', ['-L', '-f', 'ipv4', '-p', 'udp', '--orig-dst', VIP]);
  return stdout.split('\n').filter((l) => l.trim() !== '');
}

const ipvsadm = async (node: string): Promise<string> => (await topo!.exec(node, 'ipvsadm', ['-Ln'])).stdout;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kpx-ipvs-exec-'));
  await writeFile(join(dir, 'nodes.yaml'), nodesYamlText);
  await writeFile(join(dir, 'udp-client.mjs'), UdpClientScript);
  await writeFile(join(dir, 'web.yaml'), serviceYaml);
  await writeSlice(['p1a', 'p2a']);
  topo = await createTopology({ nodes: [n1, n2], pods: Object.values(pods) });
  for (const p of Object.keys(pods)) await topo.startServer(p, { tcp: [8080], udp: [8053] });
  nats = await startNatsServer({ jetstream: true });
  // One tracer provider per process: the controller and both executors share it.
  tracing = startTracing({ serviceName: 'kpx-ipvs-test' });
  controller = await runController({
    source: new ManifestsDirSource({ dir, debounceMs: 50, rescanMs: 500 }),
    sourceName: `manifests ${dir}`,
    natsUrl: nats.url,
    grpcListen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    config: { ...defaultKubeProxyConfig(), mode: 'ipvs' },
    logLevel: 'warn',
    families: ['IPv4'],
    tracer: tracing.tracer,
  });
  for (const node of ['n1', 'n2']) {
    const netns = topo.namespaceOf(node);
    const executor = await runExecutor({
      node,
      natsUrl: nats.url,
      controller: controller.grpcAddress,
      createBackend: (family) => {
        const b = new IpvsBackend({ family: family === 'IPv6' ? 'IPv6' : 'IPv4', netns });
        backends.push(b);
        return b;
      },
      families: ['IPv4'],
      healthzListen: '127.0.0.1:0',
      metricsListen: '127.0.0.1:0',
      // Each read-back spawns iptables-save and ipset under TCG: a short period would starve the deltas.
      driftCheckMs: 10_000,
      logLevel: process.env.KPX_TEST_LOG_LEVEL ?? 'warn',
      tracer: tracing.tracer,
      conntrack: { netns },
    });
    executors.set(node, executor);
  }
  await waitFor(() => converged(1), 'both executors to converge', 120_000);
});

after(async () => {
  for (const e of executors.values()) await e.stop();
  for (const b of backends) await b.close();
  await controller?.stop();
  await nats?.stop();
  await topo?.cleanup();
  await tracing?.shutdown();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('executors program IPVS: ipvsadm shows the virtual servers, packets reach the ready pods', async () => {
  for (const node of ['n1', 'n2']) {
    const list = await ipvsadm(node);
    assert.match(list, /TCP {2}10\.96\.0\.10:80 rr\n(?: {2}-> .*\n){2}/, `${node}:\n${list}`);
    assert.match(list, /-> 10\.244\.1\.10:8080 +Masq +1 /);
    assert.match(list, /-> 10\.244\.2\.10:8053 +Masq +1 /);
    assert.match((await topo!.exec(node, 'ip', ['-4', 'addr', 'show', 'kube-ipvs0'])).stdout, /10\.96\.0\.10\/32/);
  }
  for (const from of ['p1b', 'p2b']) {
    const a = await answering(from);
    assert.deepEqual(a.failures, []);
    assert.deepEqual(
      [a.tcp, a.udp],
      [
        ['p1a', 'p2a'],
        ['p1a', 'p2a'],
      ],
      from,
    );
  }
});

test('an EndpointSlice change is applied as a delta: new endpoints answer, old TCP ones drain at weight 0, UDP ones go', async () => {
  const g = controller!.pipeline.generation;
  await writeSlice(['p1b', 'p2b']);
  await waitFor(
    async () => {
      const a = await answering('p1a', 6);
      return a.failures.length === 0 && a.tcp.join() === 'p1b,p2b' && a.udp.join() === 'p1b,p2b';
    },
    'packets to reach the new endpoints',
    90_000,
  );
  await waitFor(() => converged(g + 1), 'both executors to ack the new generation with a matching read-back', 60_000);
  const list = await ipvsadm('n1');
  assert.match(list, /-> 10\.244\.1\.11:8080 +Masq +1 /);
  assert.doesNotMatch(list, /10\.244\.1\.10:8053|10\.244\.2\.10:8053/, 'removed UDP real servers go at once');
  // TCP connections of the probes linger as inactive (TIME_WAIT) in IPVS: their old real servers stay, at weight 0.
  assert.match(list, /-> 10\.244\.1\.10:8080 +Masq +0 /, list);
});

test("a real server deleted behind the executor's back is reported as drift and put back", async () => {
  await topo!.exec('n2', 'ipvsadm', ['-d', '-t', `${VIP}:80`, '-r', `${pods.p1b.ipv4}:8080`]);
  await waitFor(
    async () => /10\.244\.1\.11:8080 +Masq +1 /.test(await ipvsadm('n2')),
    'the executor to repair n2',
    60_000,
  );
  // The ack that reports the drift follows the repair's read-back.
  await waitFor(
    () => (status().find((s) => s.node === 'n2')?.driftRepairs ?? 0) >= 1,
    'n2 to report the drift it repaired',
    60_000,
  );
  const n2 = status().find((s) => s.node === 'n2')!;
  assert.deepEqual(n2.lastDrift, ['ipvs.service TCP/10.96.0.10:80: differs (real server 10.244.1.11:8080 missing)']);
  await waitFor(() => converged(0), 'n2 to read back the desired digest again', 60_000);
});

test("a UDP endpoint removed: its conntrack entries on the client's node are deleted, the other endpoint's stay", async () => {
  // The endpoints the EndpointSlice test left: p1b and p2b (p1a and p2a still drain as TCP real servers: not reused).
  await waitFor(() => converged(0), 'both executors in sync', 60_000);
  // Flows from p1a (on n1) through the IPVS virtual server: round robin spreads new flows over both endpoints.
  const sports = [42000, 42001, 42002, 42003];
  const first = await sendUdp('p1a', sports);
  assert.ok(
    first.every((p) => p === 'p1b' || p === 'p2b'),
    JSON.stringify(first),
  );
  // A second datagram of each flow more than 2 s later makes it a stream (120 s): it outlives the test.
  await new Promise((r) => setTimeout(r, 2500));
  assert.deepEqual(await sendUdp('p1a', sports), first, 'each source port stays one flow, pinned to one endpoint');
  const pinned = first[0] as 'p1b' | 'p2b';
  const other = pinned === 'p1b' ? 'p2b' : 'p1b';
  // This test's flows (the earlier probes' flows expire meanwhile) replied by a pod.
  const replied = (flows: readonly string[], pod: PodName): string[] =>
    flows.filter((l) => sports.some((p) => l.includes(` sport=${p} `)) && l.includes(`src=${pods[pod].ipv4} `));
  const before = await udpFlows('n1');
  assert.ok(
    replied(before, pinned).length >= 1,
    `n1 has a conntrack entry of ${VIP} DNATed to ${pinned}:\n${before.join('\n')}`,
  );
  // IPVS itself expires the connections of a deleted real server (expire_nodest_conn=1, which the applier sets) and
  // with them their conntrack entries: off in n1 for this test, so that only kpx's cleanup can delete the entry.
  await topo!.exec('n1', 'sysctl', ['-w', 'net.ipv4.vs.expire_nodest_conn=0']);
  const g = controller!.pipeline.generation;
  await writeSlice([other]);
  // The executor acks a delta after its conntrack cleanup; no packet is sent in between.
  await waitFor(() => converged(g + 1), `both executors to ack the removal of ${pinned}`, 60_000);
  const now = await udpFlows('n1');
  assert.deepEqual(replied(now, pinned), [], `no entry of ${VIP} DNATed to ${pinned} remains:\n${now.join('\n')}`);
  assert.equal(
    replied(now, other).length,
    replied(before, other).length,
    `the entries DNATed to ${other} stay:\n${now.join('\n')}`,
  );
  await topo!.exec('n1', 'sysctl', ['-w', 'net.ipv4.vs.expire_nodest_conn=1']);
});
