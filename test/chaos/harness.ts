// The chaos harness: the processes (nats-server, a `kpx controller` process, one `kpx executor` process per
// node), the loopback proxies between executors and NATS / the controller, the iptables-restore wrappers, the
// netns topology of the e2e cluster (n1..n3 with pods serving TCP and UDP) and the manifests directory. It runs
// one schedule step at a time; it decides nothing itself.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTopology, startNatsServer, type NatsServer, type Topology, freePort } from '@kpx/testing';
import { Client, Nodes, PodTcpPort, PodUdpPort, Pods } from '../e2e/cluster.js';
import { KpxBin, writeAtomically } from '../e2e/system.js';
import {
  applyChange,
  fileOfChange,
  manifestFiles,
  NetnsNodes,
  nodesOf,
  type Change,
  type ClusterModel,
} from './model.js';
import { LoopbackProxy } from './proxy.js';
import { RestoreWrapper } from './restore-wrapper.js';
import { FaultKind, type Fault, type Step } from './schedule.js';
import { Supervised } from './supervised.js';

/** The controller's and the executors' KubeProxyConfiguration (the independent compile reads it too). */
export const ProxyConfigYaml = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: 10.244.0.0/16,fd00:10:244::/56
detectLocalMode: ClusterCIDR
iptables:
  minSyncPeriod: 300ms
`;

/** One node's executor and what stands between it and the rest. */
interface ExecutorSlot {
  readonly proc: Supervised;
  readonly natsProxy: LoopbackProxy;
  readonly controllerProxy: LoopbackProxy;
  /** Netns nodes only. */
  readonly wrapper: RestoreWrapper | undefined;
}

export interface HarnessFigures {
  readonly faults: Readonly<Record<string, number>>;
  readonly changes: number;
  readonly injectedRestoreFailures: number;
  readonly armedRestoreFailures: number;
  /** Process exits the harness did not ask for (it restarted them), by process. */
  readonly unexpectedExits: Readonly<Record<string, number>>;
}

export class Harness {
  model: ClusterModel;
  private readonly slots = new Map<string, ExecutorSlot>();
  /** Every executor process started over the run (also of nodes that left), for the figures and logs. */
  private readonly allExecutors: Supervised[] = [];
  private readonly faultCounts: Record<string, number> = {};
  private changes = 0;
  private readonly wrappers = new Map<string, RestoreWrapper>();
  private controllerProc: Supervised | undefined;
  /** The test process exits without cleanup() (a signal, a crash): no kpx process of this run outlives it. */
  private readonly onExit = (): void => {
    for (const p of [this.controllerProc, ...this.allExecutors]) p?.killNow();
  };

  private constructor(
    readonly runDir: string,
    readonly manifestsDir: string,
    readonly configFile: string,
    readonly topo: Topology,
    readonly nats: NatsServer,
    readonly grpcPort: number,
    initial: ClusterModel,
  ) {
    this.model = initial;
    process.on('exit', this.onExit);
  }

  /** Builds everything and starts every process; on failure whatever was built is removed. */
  static async start(initial: ClusterModel): Promise<Harness> {
    const runDir = await mkdtemp(join(tmpdir(), 'kpx-chaos-'));
    const manifestsDir = join(runDir, 'manifests');
    const configFile = join(runDir, 'kube-proxy.yaml');
    let topo: Topology | undefined;
    let nats: NatsServer | undefined;
    try {
      await mkdir(manifestsDir);
      await writeFile(configFile, ProxyConfigYaml);
      for (const [file, text] of manifestFiles(initial)) await writeFile(join(manifestsDir, file), text);
      topo = await createTopology({
        nodes: Object.values(Nodes),
        pods: Object.values(Pods),
        client: { ipv4: Client.ipv4, ipv6: Client.ipv6 },
      });
      const t = topo;
      await Promise.all(Object.keys(Pods).map((p) => t.startServer(p, { tcp: [PodTcpPort], udp: [PodUdpPort] })));
      nats = await startNatsServer({ jetstream: true, storeDir: join(runDir, 'jetstream') });
      const h = new Harness(runDir, manifestsDir, configFile, topo, nats, await freePort(), initial);
      try {
        h.startController();
        for (const node of nodesOf(initial)) await h.startExecutor(node);
      } catch (err) {
        await h.cleanup(false);
        throw err;
      }
      return h;
    } catch (err) {
      await nats?.stop();
      await topo?.cleanup();
      throw err;
    }
  }

  get controllerAddress(): string {
    return `127.0.0.1:${this.grpcPort}`;
  }

  get natsUrl(): string {
    return this.nats.url;
  }

  private get controller(): Supervised {
    if (!this.controllerProc) throw new Error('no controller');
    return this.controllerProc;
  }

  private startController(): void {
    this.controllerProc = new Supervised({
      name: 'controller',
      command: process.execPath,
      args: [
        KpxBin,
        'controller',
        '--manifests',
        this.manifestsDir,
        '--nats',
        this.nats.url,
        '--grpc-listen',
        this.controllerAddress,
        '--metrics-listen',
        '127.0.0.1:0',
        '--config',
        this.configFile,
        '--snapshot-every',
        '20',
        '--log-level',
        'info',
      ],
      logFile: join(this.runDir, 'controller.log'),
    });
    this.controllerProc.start();
  }

  private async startExecutor(node: string): Promise<void> {
    const natsProxy = new LoopbackProxy(`${node}-nats`, () => this.nats.port);
    const controllerProxy = new LoopbackProxy(`${node}-controller`, () => this.grpcPort);
    await natsProxy.open();
    await controllerProxy.open();
    const netns = (NetnsNodes as readonly string[]).includes(node);
    let wrapper = this.wrappers.get(node);
    if (netns && !wrapper) {
      wrapper = await RestoreWrapper.create(join(this.runDir, `restore-wrapper-${node}`));
      this.wrappers.set(node, wrapper);
    }
    const proc = new Supervised({
      name: `executor-${node}`,
      command: process.execPath,
      args: [
        KpxBin,
        'executor',
        '--node',
        node,
        '--nats',
        `nats://${natsProxy.address}`,
        '--controller',
        controllerProxy.address,
        '--healthz-listen',
        '127.0.0.1:0',
        '--metrics-listen',
        '127.0.0.1:0',
        '--drift-check',
        '2s',
        '--log-level',
        'debug',
        ...(netns ? ['--netns', this.topo.namespaceOf(node), '--config', this.configFile] : ['--dry-run']),
      ],
      ...(wrapper ? { env: { ...process.env, PATH: wrapper.path() } } : {}),
      logFile: join(this.runDir, `executor-${node}.log`),
    });
    this.slots.set(node, { proc, natsProxy, controllerProxy, wrapper });
    this.allExecutors.push(proc);
    proc.start();
  }

  private async stopExecutor(node: string): Promise<void> {
    const slot = this.slots.get(node);
    if (!slot) return;
    this.slots.delete(node);
    await slot.proc.stop();
    await slot.natsProxy.close();
    await slot.controllerProxy.close();
  }

  private slot(node: string): ExecutorSlot {
    const s = this.slots.get(node);
    if (!s) throw new Error(`no executor for node ${node}`);
    return s;
  }

  async run(step: Step): Promise<void> {
    const a = step.action;
    if (a.type === 'change') await this.change(a.change);
    else if (a.type === 'fault-start') await this.startFault(a.fault);
    else await this.endFault(a.fault);
  }

  private async change(change: Change): Promise<void> {
    this.model = applyChange(this.model, change);
    this.changes++;
    const { file, text } = fileOfChange(this.model, change);
    if (change.kind === 'node-leave') await this.stopExecutor(change.node);
    if (text === undefined) await rm(join(this.manifestsDir, file), { force: true });
    else await writeAtomically(this.manifestsDir, file, text);
    if (change.kind === 'node-join') await this.startExecutor(change.node);
  }

  private async startFault(f: Fault): Promise<void> {
    this.faultCounts[f.kind] = (this.faultCounts[f.kind] ?? 0) + 1;
    switch (f.kind) {
      case FaultKind.ControllerKill:
        return this.controller.kill9();
      case FaultKind.ExecutorKill:
        return this.slot(f.target).proc.kill9();
      case FaultKind.NatsKill:
        return this.nats.kill9();
      case FaultKind.NatsStop:
        return this.nats.terminate();
      case FaultKind.ExecutorCut: {
        const s = this.slot(f.target);
        s.natsProxy.sever();
        s.controllerProxy.sever();
        return;
      }
      case FaultKind.IptablesFail:
        return this.slot(f.target).wrapper?.arm(f.failures ?? 1);
    }
  }

  private async endFault(f: Fault): Promise<void> {
    switch (f.kind) {
      case FaultKind.ControllerKill:
        this.controller.start();
        return;
      case FaultKind.ExecutorKill:
        this.slot(f.target).proc.start();
        return;
      case FaultKind.NatsKill:
      case FaultKind.NatsStop:
        return this.restartNats();
      case FaultKind.ExecutorCut: {
        const s = this.slot(f.target);
        s.natsProxy.restore();
        s.controllerProxy.restore();
        return;
      }
      case FaultKind.IptablesFail:
        await this.slot(f.target).wrapper?.disarm();
        return;
    }
  }

  /** nats-server on the same port and store; a port still held a moment after the kill is retried. */
  private async restartNats(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.nats.restart();
        return;
      } catch (err) {
        if (attempt >= 5) throw err;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  figures(): HarnessFigures {
    const unexpectedExits: Record<string, number> = {};
    for (const p of [this.controller, ...this.allExecutors])
      if (p.unexpectedExits > 0) unexpectedExits[p.name] = (unexpectedExits[p.name] ?? 0) + p.unexpectedExits;
    const wrappers = [...this.wrappers.values()];
    return {
      faults: { ...this.faultCounts },
      changes: this.changes,
      armedRestoreFailures: wrappers.reduce((n, w) => n + w.totalArmed, 0),
      injectedRestoreFailures: wrappers.reduce((n, w) => n + w.totalInjected, 0),
      unexpectedExits,
    };
  }

  /** The tail of every running process's log (failure messages). */
  logTails(chars = 1500): string {
    const procs = [this.controller, ...[...this.slots.values()].map((s) => s.proc)];
    return procs.map((p) => `--- ${p.name}\n${p.tail().slice(-chars)}`).join('\n');
  }

  /** Stops every process (by its PID), the proxies, nats-server, the topology; deletes the run directory unless `keep`. */
  async cleanup(keep: boolean): Promise<void> {
    process.off('exit', this.onExit);
    for (const s of this.slots.values()) {
      await s.proc.close();
      await s.natsProxy.close();
      await s.controllerProxy.close();
    }
    for (const p of this.allExecutors) await p.close();
    await this.controllerProc?.close();
    await this.nats.stop();
    await this.topo.cleanup();
    if (!keep) await rm(this.runDir, { recursive: true, force: true });
  }
}
