// healthCheckNodePort servers, a node duty: kube-proxy's service health server (pkg/proxy/healthcheck/
// service_health.go). For every healthcheck.service object of the node's applied state an HTTP server on that port
// answers any request with kube-proxy's JSON, 200 when the node has local endpoints for the service (and the proxy
// is healthy), else 503, so that a cloud load balancer sends eTP Local traffic only to nodes with endpoints.
//
// Families: each IP family's rule set carries its own objects and counts. As kube-proxy since kubernetes#137370,
// the IPv4 objects are served on IPv4 sockets and the IPv6 ones on IPv6-only sockets, so a dual-stack service
// answers on both with each family's count (kube-proxy before that bound 0.0.0.0 twice and the second family
// failed with EADDRINUSE). Servers are kept by (family, port); a port in both families is two sockets.
//
// Addresses: kube-proxy listens on every address unless nodePortAddresses name CIDRs of the family; then on the
// node's interface addresses inside them. kpx does the same, reading the interfaces of the namespace the servers
// run in.
//
// Network namespaces: a process cannot bind a socket inside another network namespace, so with --netns the
// servers run in one small child process, an agent (@kpx/common's AgentProcess) started with
// `ip netns exec NS node health-check-child.js` (started when the node gets its first health check, stopped with
// the executor). It takes the same sync calls and answers each with its result; the executor pushes the proxy's
// health to it.
//
// A port that cannot be bound (in use, address gone) is logged and counted, its service is retried on every later
// sync and every few seconds; the other ports keep working.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { BlockList } from 'node:net';
import { networkInterfaces } from 'node:os';
import { fileURLToPath } from 'node:url';
import { AgentProcess, SerialQueue } from '@kpx/common';
// Type-only, like RuleKind below: the kind literals are checked against the union, and the child does not load @kpx/model.
import type { NodePortAddresses } from '@kpx/model';
import type { RuleKind } from '@kpx/proto';
import type { HashedObject, RuleState } from '@kpx/ruleset';

// The wire's kind, checked against @kpx/proto's RuleKind at compile time: a type-only import, so the health check
// child (which loads this module) starts without loading @kpx/proto and gRPC.
const IdPrefix = `${'healthcheck.service' satisfies typeof RuleKind.HealthCheckService}:`;

/** One health check server's data: a healthcheck.service object. */
export interface HealthCheckService {
  readonly namespace: string;
  readonly name: string;
  readonly port: number;
  readonly localEndpoints: number;
}

/** The health check data of an object of the state, undefined for any other kind. */
export function healthCheckOf(o: HashedObject | undefined): HealthCheckService | undefined {
  const p = o?.wire.payload;
  if (p?.$case !== 'healthCheckService') return undefined;
  return {
    namespace: p.value.namespace,
    name: p.value.name,
    port: p.value.port,
    localEndpoints: p.value.localEndpoints,
  };
}

/** Every health check of a state, by key (the port). */
export function healthChecksOf(state: RuleState): Map<string, HealthCheckService> {
  const out = new Map<string, HealthCheckService>();
  for (const [id, o] of state.objects) {
    if (!id.startsWith(IdPrefix)) continue;
    const hc = healthCheckOf(o);
    if (hc) out.set(o.wire.key, hc);
  }
  return out;
}

/** Whether an object id (`kind:key`) is a health check's. */
export const isHealthCheckId = (id: string): boolean => id.startsWith(IdPrefix);

/** Updates `checks` (by key) for the ids a change touched, from the state after it. Returns whether anything changed. */
export function updateHealthChecks(
  checks: Map<string, HealthCheckService>,
  state: RuleState,
  ids: Iterable<string>,
): boolean {
  let changed = false;
  for (const id of ids) {
    if (!isHealthCheckId(id)) continue;
    const key = id.slice(IdPrefix.length);
    const hc = healthCheckOf(state.objects.get(id));
    const old = checks.get(key);
    if (hc) checks.set(key, hc);
    else checks.delete(key);
    if (!sameCheck(old, hc)) changed = true;
  }
  return changed;
}

function sameCheck(a: HealthCheckService | undefined, b: HealthCheckService | undefined): boolean {
  return (
    a?.namespace === b?.namespace &&
    a?.name === b?.name &&
    a?.port === b?.port &&
    a?.localEndpoints === b?.localEndpoints
  );
}

/** Whether two sets of checks are equal. */
export function sameHealthChecks(
  a: ReadonlyMap<string, HealthCheckService>,
  b: ReadonlyMap<string, HealthCheckService>,
): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (!sameCheck(v, b.get(k))) return false;
  return true;
}

export interface HealthCheckResponse {
  readonly status: 200 | 503;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/**
 * kube-proxy's answer, byte for byte: its JSON (tab-indented, no trailing newline), 200 when the node has local
 * endpoints and the proxy is healthy, else 503.
 */
export function healthCheckResponse(
  svc: Pick<HealthCheckService, 'namespace' | 'name' | 'localEndpoints'>,
  proxyHealthy: boolean,
): HealthCheckResponse {
  const body = [
    '{',
    '\t"service": {',
    `\t\t"namespace": ${JSON.stringify(svc.namespace)},`,
    `\t\t"name": ${JSON.stringify(svc.name)}`,
    '\t},',
    `\t"localEndpoints": ${svc.localEndpoints},`,
    `\t"serviceProxyHealthy": ${proxyHealthy}`,
    '}',
  ].join('\n');
  return {
    status: svc.localEndpoints !== 0 && proxyHealthy ? 200 : 503,
    headers: { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff' },
    body,
  };
}

/**
 * The addresses the servers of a family listen on: the family's wildcard, unless `nodePortAddresses` has CIDRs
 * of the family (none of them /0): then the interface addresses inside them (`interfaces`: os.networkInterfaces()).
 * `primary` (the Node object's IPs, which the executor does not read) listens on every address.
 */
export function listenAddresses(
  family: string,
  nodePortAddresses: NodePortAddresses,
  interfaces = networkInterfaces(),
): string[] {
  const v6 = family === 'IPv6';
  const wildcard = v6 ? '::' : '0.0.0.0';
  const type = v6 ? 'ipv6' : 'ipv4';
  const cidrs = nodePortAddresses.kind === 'cidrs' ? nodePortAddresses.cidrs.filter((c) => c.family === family) : [];
  if (cidrs.length === 0 || cidrs.some((c) => c.prefix === 0)) return [wildcard];
  const list = new BlockList();
  for (const c of cidrs) list.addSubnet(c.address, c.prefix, type);
  const out = new Set<string>();
  for (const addrs of Object.values(interfaces)) {
    for (const a of addrs ?? [])
      if (a.family === (v6 ? 'IPv6' : 'IPv4') && !a.address.startsWith('fe80:') && list.check(a.address, type))
        out.add(a.address);
  }
  return [...out].sort();
}

/** nodePortAddresses by default: every address. */
export const EveryAddress: NodePortAddresses = { kind: 'all' };

export interface HealthCheckFailure {
  readonly family: string;
  readonly port: number;
  readonly service: string;
  readonly address: string;
  readonly error: string;
}

/** What one sync did: ports serving, and binds that failed (to be retried). */
export interface HealthCheckSyncResult {
  readonly family: string;
  /** Ports of the family with every address listening. */
  readonly listening: readonly number[];
  readonly failed: readonly HealthCheckFailure[];
}

export interface HealthCheckServers {
  /** Makes `services` the family's complete set of health checks: opens, updates and closes servers. Never rejects. */
  sync(family: string, services: readonly HealthCheckService[]): Promise<HealthCheckSyncResult>;
  close(): Promise<void>;
}

interface Instance {
  svc: HealthCheckService;
  readonly addresses: readonly string[];
  servers: Server[];
  /** Set while the port is not (fully) bound. */
  error: string | undefined;
}

export interface LocalHealthCheckServersOptions {
  /** kube-proxy's healthz state: false makes every health check answer 503 (serviceProxyHealthy false). */
  readonly proxyHealthy: () => boolean;
  /** kube-proxy's nodePortAddresses; default: every address. */
  readonly nodePortAddresses?: NodePortAddresses;
  /** Retry of failed binds (ms; default 5 s; 0: only on syncs). */
  readonly retryMs?: number;
  /** Every sync's result; `retry`: a retry of failed binds, not a sync call. */
  readonly onResult?: (r: HealthCheckSyncResult, retry: boolean) => void;
}

const listen = (server: Server, address: string, port: number): Promise<void> =>
  new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen({ host: address, port, ipv6Only: address.includes(':'), exclusive: true }, () => {
      server.off('error', onError);
      resolve();
    });
  });

const closeServer = (server: Server): Promise<void> =>
  new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });

/** The servers in this process's network namespace. */
export class LocalHealthCheckServers implements HealthCheckServers {
  /** By family, then port. */
  private readonly families = new Map<string, Map<number, Instance>>();
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly queue = new SerialQueue();
  private closed = false;

  constructor(private readonly opts: LocalHealthCheckServersOptions) {}

  sync(family: string, services: readonly HealthCheckService[]): Promise<HealthCheckSyncResult> {
    return this.queue.run(() => this.syncNow(family, services, false));
  }

  close(): Promise<void> {
    return this.queue.run(async () => {
      this.closed = true;
      if (this.retryTimer) clearTimeout(this.retryTimer);
      const all = [...this.families.values()].flatMap((m) => [...m.values()]);
      this.families.clear();
      await Promise.all(all.flatMap((i) => i.servers.map(closeServer)));
    });
  }

  private async syncNow(
    family: string,
    services: readonly HealthCheckService[],
    retry: boolean,
  ): Promise<HealthCheckSyncResult> {
    if (this.closed) return { family, listening: [], failed: [] };
    let ports = this.families.get(family);
    if (!ports) this.families.set(family, (ports = new Map<number, Instance>()));
    const wanted = new Map(services.map((s) => [s.port, s]));
    const addresses = listenAddresses(family, this.opts.nodePortAddresses ?? EveryAddress);
    for (const [port, inst] of ports) {
      if (wanted.has(port) && sameAddresses(inst.addresses, addresses)) continue;
      ports.delete(port);
      await Promise.all(inst.servers.map(closeServer));
    }
    const failed: HealthCheckFailure[] = [];
    for (const [port, svc] of wanted) {
      let inst = ports.get(port);
      if (!inst) ports.set(port, (inst = { svc, addresses, servers: [], error: 'not bound yet' }));
      inst.svc = svc;
      if (inst.error !== undefined) failed.push(...(await this.open(family, inst)));
    }
    const result: HealthCheckSyncResult = {
      family,
      listening: [...ports.values()]
        .filter((i) => i.error === undefined)
        .map((i) => i.svc.port)
        .sort((a, b) => a - b),
      failed,
    };
    this.opts.onResult?.(result, retry);
    this.scheduleRetry();
    return result;
  }

  /** Binds every address of an instance, or none: on a failure the ones bound are closed again. */
  private async open(family: string, inst: Instance): Promise<HealthCheckFailure[]> {
    const servers: Server[] = [];
    for (const address of inst.addresses) {
      const server = createServer((req, res) => this.answer(inst, req, res));
      server.keepAliveTimeout = 5_000;
      try {
        await listen(server, address, inst.svc.port);
        servers.push(server);
      } catch (err) {
        await Promise.all(servers.map(closeServer));
        inst.error = (err as Error).message;
        return [
          {
            family,
            port: inst.svc.port,
            service: `${inst.svc.namespace}/${inst.svc.name}`,
            address,
            error: inst.error,
          },
        ];
      }
    }
    inst.servers = servers;
    inst.error = undefined;
    return [];
  }

  private answer(inst: Instance, _req: IncomingMessage, res: ServerResponse): void {
    const r = healthCheckResponse(inst.svc, this.opts.proxyHealthy());
    res.writeHead(r.status, r.headers);
    res.end(r.body);
  }

  private scheduleRetry(): void {
    const every = this.opts.retryMs ?? 5_000;
    if (this.retryTimer || every <= 0 || this.closed) return;
    const failing = [...this.families].filter(([, m]) => [...m.values()].some((i) => i.error !== undefined));
    if (failing.length === 0) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      for (const [family, m] of failing) {
        const services = [...(this.families.get(family) ?? m).values()].map((i) => i.svc);
        void this.queue.run(() => this.syncNow(family, services, true));
      }
    }, every);
    this.retryTimer.unref();
  }
}

const sameAddresses = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** The child's methods (health-check-child.ts): `sync(family, services)` answers a HealthCheckSyncResult. */
export const ChildMethod = { Sync: 'sync', Healthy: 'healthy' } as const;
/** The child's events: a retry's HealthCheckSyncResult. */
export const ChildEvent = { Result: 'result' } as const;

export interface NetnsHealthCheckServersOptions {
  readonly netns: string;
  readonly proxyHealthy: () => boolean;
  readonly nodePortAddresses?: NodePortAddresses;
  readonly retryMs?: number;
  readonly onResult?: (r: HealthCheckSyncResult) => void;
  /** The child's stderr lines (its crashes), for the executor's log. */
  readonly onStderr?: (line: string) => void;
  /** How often the proxy's health is checked and pushed to the child when it changed (ms; default 1 s). */
  readonly healthPushMs?: number;
}

export const ChildScript = fileURLToPath(new URL('./health-check-child.js', import.meta.url));

/** The servers inside a named network namespace, in a child process started on the first sync. */
export class NetnsHealthCheckServers implements HealthCheckServers {
  private child: AgentProcess | undefined;
  /** What each family should have: replayed to a restarted child. */
  private readonly desired = new Map<string, readonly HealthCheckService[]>();
  private healthy: boolean | undefined;
  private healthTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly opts: NetnsHealthCheckServersOptions) {}

  sync(family: string, services: readonly HealthCheckService[]): Promise<HealthCheckSyncResult> {
    this.desired.set(family, services);
    if (this.closed || (!this.child && services.length === 0))
      return Promise.resolve({ family, listening: [], failed: [] });
    const child = this.ensureChild();
    return this.request(child, family, services);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.healthTimer) clearInterval(this.healthTimer);
    await this.child?.close(3_000);
  }

  private async request(
    child: AgentProcess,
    family: string,
    services: readonly HealthCheckService[],
  ): Promise<HealthCheckSyncResult> {
    let result: HealthCheckSyncResult;
    try {
      result = await child.call<HealthCheckSyncResult>(ChildMethod.Sync, family, services);
    } catch (err) {
      // Asked and not answered (the child ended): failed; a later sync starts a new child and replays every family.
      const now = this.desired.get(family) ?? [];
      return {
        family,
        listening: [],
        failed: now.map((s) => ({
          family,
          port: s.port,
          service: `${s.namespace}/${s.name}`,
          address: '',
          error: `health check process: ${(err as Error).message}`,
        })),
      };
    }
    this.opts.onResult?.(result);
    return result;
  }

  private ensureChild(): AgentProcess {
    if (this.child) return this.child;
    const child: AgentProcess = new AgentProcess({
      name: 'health check process',
      script: ChildScript,
      args: [
        JSON.stringify({
          nodePortAddresses: this.opts.nodePortAddresses ?? EveryAddress,
          retryMs: this.opts.retryMs ?? 5_000,
        }),
      ],
      netns: this.opts.netns,
      keepAlive: true,
      exitError: (why) => new Error(why),
      onEvent: (event, data) => {
        if (event === ChildEvent.Result) this.opts.onResult?.(data as HealthCheckSyncResult);
      },
      onStderr: (line) => this.opts.onStderr?.(line),
      onExit: (why) => {
        if (this.child !== child) return;
        this.child = undefined;
        if (!this.closed) {
          this.opts.onStderr?.(`health check process ended: ${why}`);
          setTimeout(() => this.restart(), 1_000).unref();
        }
      },
    });
    this.child = child;
    this.healthy = this.opts.proxyHealthy();
    child.notify(ChildMethod.Healthy, this.healthy);
    this.healthTimer ??= setInterval(() => this.pushHealth(), this.opts.healthPushMs ?? 1_000);
    this.healthTimer.unref();
    return child;
  }

  private pushHealth(): void {
    const h = this.opts.proxyHealthy();
    if (h === this.healthy || !this.child) return;
    this.healthy = h;
    this.child.notify(ChildMethod.Healthy, h);
  }

  private restart(): void {
    if (this.closed || this.child || [...this.desired.values()].every((s) => s.length === 0)) return;
    for (const [family, services] of this.desired) void this.sync(family, services);
  }
}

export interface HealthCheckServersOptions {
  /** Serve inside this network namespace (a child process); else in this process's. */
  readonly netns?: string;
  readonly proxyHealthy: () => boolean;
  readonly nodePortAddresses?: NodePortAddresses;
  readonly retryMs?: number;
  readonly onResult?: (r: HealthCheckSyncResult) => void;
  readonly onStderr?: (line: string) => void;
}

export function createHealthCheckServers(opts: HealthCheckServersOptions): HealthCheckServers {
  const { netns, ...rest } = opts;
  return netns !== undefined ? new NetnsHealthCheckServers({ netns, ...rest }) : new LocalHealthCheckServers(rest);
}
