// The NATS outage of issue #12, scripted with the real processes: controller, three dry-run executors, nats-server.
// NATS stops, an endpoint changes, NATS comes back, and no further event happens. Within 30 s every node acks the
// digest a fresh controller computes for the final manifests; `kpx status` said "pending" (not in sync) while the
// change was unpublished; `kpx replay` of every node reaches the acked digest. Secured as in production
// (test/e2e/secure.ts): mTLS, NATS users per role, signed deltas.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { trace } from '@opentelemetry/api';
import { IPFamily, defaultKubeProxyConfig, readManifestDir } from '@kpx/model';
import { ControllerPipeline, MemoryGenerationStore, familyOptionsFromConfig } from '@kpx/controller';
import { startNatsServer } from '@kpx/testing';
import { RepoRoot } from './cluster.js';
import { createSecureSetup, dialAddress } from './secure.js';
import {
  KpxBin,
  executorLogs,
  killExecutors,
  spawnKpxExecutor,
  waitUntil,
  writeAtomically,
  type ExecutorProcess,
} from './system.js';

const Nodes = ['node-a', 'node-b', 'node-c'];
const Families = [IPFamily.IPv4, IPFamily.IPv6];

interface StatusJson {
  nodes: {
    node: string;
    ipFamily: string;
    inSync: boolean;
    pending: boolean;
    ackedGeneration: number;
    ackedDigest: string;
    desiredDigest: string;
  }[];
}

function kpx(args: readonly string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [KpxBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('exit', (code) => resolve({ code, out, err }));
  });
}

/** The digests a fresh controller computes for the manifests in `dir`, per `node/family`. */
async function freshDigests(dir: string): Promise<Map<string, string>> {
  const config = defaultKubeProxyConfig();
  const p = new ControllerPipeline({
    families: new Map(Families.map((f) => [f, familyOptionsFromConfig(config, f)])),
    sink: { publish: () => Promise.resolve() },
    generations: new MemoryGenerationStore(),
    minSyncPeriodMs: 0,
    logger: { info: () => {}, warn: () => {}, error: () => {} },
    tracer: trace.getTracer('fresh'),
  });
  for (const { object } of await readManifestDir(dir)) {
    if (object.kind === 'Service' || object.kind === 'EndpointSlice' || object.kind === 'Node')
      p.onEvent({ kind: object.kind, type: 'upsert', object, observedAt: Date.now() });
  }
  p.onSynced();
  await waitUntil(
    () => p.generation > 0,
    'a fresh compile',
    10_000,
    () => '',
  );
  await p.settle();
  const out = new Map<string, string>();
  for (const n of Nodes) for (const f of Families) out.set(`${n}/${f}`, (await p.snapshot(n, f))?.digest ?? '');
  await p.stop();
  return out;
}

test('NATS stopped, an endpoint changed, NATS back, no further event: every node converges within 30 s; status said pending; replay reaches the acks', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'kpx-outage-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await cp(`${RepoRoot}examples`, dir, { recursive: true });
  const secure = await createSecureSetup(Nodes);
  t.after(() => secure.remove());
  const nats = await startNatsServer({ jetstream: true, extraConfig: secure.natsConfig });
  t.after(() => nats.stop());
  const controller: ChildProcess = spawn(
    process.execPath,
    [
      KpxBin,
      'controller',
      '--manifests',
      dir,
      '--nats',
      nats.url,
      '--grpc-listen',
      '127.0.0.1:0',
      '--metrics-listen',
      '127.0.0.1:0',
      '--publish-timeout',
      '2s',
      '--log-level',
      'debug',
      ...secure.controllerArgs,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let clog = '';
  controller.stdout?.on('data', (b: Buffer) => (clog += b.toString()));
  controller.stderr?.on('data', (b: Buffer) => (clog += b.toString()));
  t.after(() => {
    if (controller.exitCode === null) controller.kill('SIGKILL');
  });
  const executors = new Map<string, ExecutorProcess>();
  t.after(() => killExecutors(executors.values()));
  const logs = (): string => `--- controller\n${clog.slice(-3000)}\n${executorLogs(executors)}`;
  await waitUntil(() => clog.includes('kpx controller running'), 'the controller', 20_000, logs);
  const running = JSON.parse(clog.split('\n').find((l) => l.includes('kpx controller running')) ?? '{}') as {
    grpc?: string;
  };
  const grpc = dialAddress(running.grpc ?? '');
  for (const n of Nodes)
    executors.set(
      n,
      spawnKpxExecutor([
        '--node',
        n,
        '--nats',
        nats.url,
        '--controller',
        grpc,
        '--dry-run',
        '--healthz-listen',
        '127.0.0.1:0',
        '--metrics-listen',
        '127.0.0.1:0',
        '--drift-check',
        '1s',
        ...secure.executorArgs(n),
      ]),
    );
  const status = async (): Promise<{ code: number | null; json: StatusJson }> => {
    const r = await kpx(['status', '--controller', grpc, '-o', 'json', ...secure.operatorTlsArgs]);
    return { code: r.code, json: (r.out ? JSON.parse(r.out) : { nodes: [] }) as StatusJson };
  };
  await waitUntil(async () => (await status()).code === 0, 'every node in sync', 30_000, logs);

  await nats.kill9();
  const slicePath = join(dir, 'web.yaml');
  const text = await readFile(slicePath, 'utf8');
  assert.ok(text.includes('10.244.2.10'));
  await writeAtomically(dir, 'web.yaml', text.replace('10.244.2.10', '10.244.2.77'));
  let sawPending = false;
  await waitUntil(
    async () => {
      const s = await status();
      sawPending = s.json.nodes.some((n) => n.pending && !n.inSync);
      return sawPending;
    },
    'kpx status to show pending',
    15_000,
    logs,
  );
  const during = await status();
  assert.equal(during.code, 3, 'not in sync while the change is unpublished');
  await new Promise((r) => setTimeout(r, 4000));
  await nats.restart();
  const back = Date.now();
  const want = await freshDigests(dir);
  const converged = await waitUntil(
    async () => {
      const s = await status();
      return (
        s.code === 0 &&
        s.json.nodes.length === want.size &&
        s.json.nodes.every((n) => n.ackedDigest === want.get(`${n.node}/${n.ipFamily}`))
      );
    },
    'every node to ack the fresh controller digest',
    30_000,
    logs,
  );
  t.diagnostic(
    `every node acked the final digest ${Date.now() - back} ms after NATS came back (${converged} ms of polling)`,
  );
  const final = await status();
  for (const n of final.json.nodes) {
    const r = await kpx([
      'replay',
      '--nats',
      nats.url,
      '--node',
      n.node,
      '--ip-family',
      n.ipFamily === 'IPv4' ? 'ipv4' : 'ipv6',
      '--to',
      String(n.ackedGeneration),
      '-o',
      'json',
      ...secure.operatorNatsArgs,
    ]);
    assert.equal(r.code, 0, r.err);
    const replayed = JSON.parse(r.out) as { digest: string; generation: number };
    assert.equal(replayed.digest, n.ackedDigest, `replay of ${n.node}/${n.ipFamily} reaches the acked digest`);
  }
});
