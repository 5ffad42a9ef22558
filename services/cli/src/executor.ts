// kpx executor: apply one node's deltas to the kernel (or to memory with --dry-run) and ack them.
import { defaultNodeName } from './node-name.js';
import { IptablesBackend, IpvsBackend, MemoryBackend, runExecutor, type Backend } from '@kpx/executor';
import { CleanupOutcome, cleanupKubeProxy } from '@kpx/kernel';
import { NodePortAddressesKind, type KubeProxyConfig, type NodePortAddresses } from '@kpx/model';
import { UsageError } from './errors.js';
import { parseDuration, parseFlags, required } from './flags.js';
import { untilAborted, type Io, type LongRunningOptions } from './io.js';
import { loadProxyConfig } from './proxy-config.js';
import { CLIENT_TLS_USAGE, clientTlsFiles, clientTlsOptions } from './tls-flags.js';
import { loadVerifier, natsAuthOf, NatsAuthFlags, NatsAuthUsage, VerifyFlags, VerifyUsage } from './security-flags.js';

export const EXECUTOR_USAGE = `usage: kpx executor [--node NAME] --nats URL --controller HOST:PORT [--backend iptables|ipvs] [--netns NAME]
                    [--dry-run] [--healthz-listen HOST:PORT] [--metrics-listen HOST:PORT] [--tls-cert-file F --tls-private-key-file F --ca-file F] [options]
       kpx executor --cleanup [--netns NAME]

Follows the deltas of node NAME on NATS JetStream (kpx.delta.NAME), applies each one as a single
iptables-restore --noflush transaction of the changed chains, resyncs from a snapshot on start, on a gap, a
digest mismatch or a failed apply, repairs rules changed behind its back, and acks to the controller.
Deletes stale UDP conntrack entries after each change, as kube-proxy does (conntrack CLI; not with --dry-run),
and serves the healthCheckNodePort of every eTP Local LoadBalancer (inside --netns; not with --dry-run).
Serves /healthz, /livez (kube-proxy's JSON) and, on its own address, /metrics. Runs until SIGINT or SIGTERM.

  --node NAME               the Kubernetes Node this executor programs (default: $NODE_NAME, else the
                            hostname, lower-cased)
  --nats URL                NATS server with JetStream
  --controller HOST:PORT    the controller's gRPC NodeSync address
  --backend NAME            iptables (default) or ipvs (IPVS services over netlink, VIPs on kube-ipvs0,
                            KUBE-* ipsets and companion iptables rules; removed TCP real servers drain)
  --netns NAME              run every kernel operation inside this network namespace (tests, the demo)
  --config FILE             KubeProxyConfiguration, as the controller's: its nodePortAddresses CIDRs are where
                            the healthCheckNodePort servers listen (the node's addresses inside them)
  --dry-run                 apply to memory only (scale tests)
  --cleanup                 remove every rule kpx and kube-proxy installed, then exit (as kube-proxy --cleanup,
                            for migrating either way): the KUBE-* chains (but kubelet's KUBE-KUBELET-CANARY
                            and KUBE-IPTABLES-HINT) and the jumps to them in every table of both
                            families, all IPVS virtual services, kube-ipvs0, the KUBE-* ipsets, the nftables tables
                            ip/ip6 kube-proxy; every other rule stays. Exit 0 when done (also when there was
                            nothing to remove), 1 naming the step that failed
  --ip-families LIST        ipv4,ipv6 (default both)
  --healthz-listen H:P      /healthz /livez (default 0.0.0.0:10256, as kube-proxy)
  --metrics-listen H:P      /metrics (default 127.0.0.1:10249, as kube-proxy: loopback only)
  --drift-check DURATION    period of the kernel read-back (default 10s; 0 disables)
  --otlp-endpoint URL       export traces over OTLP (as OTEL_EXPORTER_OTLP_ENDPOINT; protocol from
                            OTEL_EXPORTER_OTLP_PROTOCOL, default http/protobuf; default: off; every other
                            OTEL_* variable applies too: see docs/deploy.md)
  --log-level LEVEL         trace, debug, info (default), warn, error
${CLIENT_TLS_USAGE}
${VerifyUsage}
${NatsAuthUsage}`;

export async function executorCommand(argv: readonly string[], io: Io, run: LongRunningOptions): Promise<number> {
  const values = parseFlags(
    argv,
    {
      node: { type: 'string' },
      nats: { type: 'string' },
      controller: { type: 'string' },
      backend: { type: 'string', default: 'iptables' },
      netns: { type: 'string' },
      config: { type: 'string' },
      'dry-run': { type: 'boolean' },
      cleanup: { type: 'boolean' },
      'ip-families': { type: 'string', default: 'ipv4,ipv6' },
      'healthz-listen': { type: 'string', default: '0.0.0.0:10256' },
      'metrics-listen': { type: 'string', default: '127.0.0.1:10249' },
      'drift-check': { type: 'string', default: '10s' },
      'otlp-endpoint': { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      ...clientTlsOptions,
      ...NatsAuthFlags,
      ...VerifyFlags,
    },
    EXECUTOR_USAGE,
    io,
  );
  if (!values) return 0;
  if (values.cleanup) return cleanupCommand(values.netns, io);
  const node = required(values.node ?? defaultNodeName(), 'node', EXECUTOR_USAGE);
  const natsUrl = required(values.nats, 'nats', EXECUTOR_USAGE);
  const controller = required(values.controller, 'controller', EXECUTOR_USAGE);
  if (values.backend !== 'iptables' && values.backend !== 'ipvs')
    throw new UsageError(`--backend ${JSON.stringify(values.backend)} is not implemented: use iptables or ipvs`);
  const families = values['ip-families'].split(',').map((f) => {
    const t = f.trim().toLowerCase();
    if (t !== 'ipv4' && t !== 'ipv6')
      throw new UsageError(`--ip-families takes ipv4 and/or ipv6, not ${JSON.stringify(f)}`);
    return t === 'ipv4' ? 'IPv4' : 'IPv6';
  });
  const controllerTls = clientTlsFiles(values);
  const driftCheckMs = values['drift-check'] === '0' ? 0 : parseDuration(values['drift-check'], '--drift-check');
  const { config, warnings } = await loadProxyConfig(values.config);
  for (const w of warnings) io.stderr(`warning: ${w}\n`);
  const listen = healthCheckListen(config);
  if (listen.warning) io.stderr(`warning: ${listen.warning}\n`);
  const dryRun = values['dry-run'] === true;
  const netns = values.netns;
  const ipvs = values.backend === 'ipvs';
  const backendOf = ipvs ? IpvsBackend : IptablesBackend;
  // A dry run follows the rule sets of the chosen mode too.
  const dryRunBackend = (): Backend =>
    ipvs ? Object.assign(new MemoryBackend(), { mode: 'ipvs' }) : new MemoryBackend();
  const createBackend = (family: string): Backend =>
    dryRun
      ? dryRunBackend()
      : new backendOf({ family: family === 'IPv6' ? 'IPv6' : 'IPv4', ...(netns ? { netns } : {}) });
  const natsAuth = await natsAuthOf(values);
  const verifier = await loadVerifier(values['verify-keys']);
  if (run.signal.aborted) return 0;
  let executor;
  try {
    executor = await runExecutor({
      node,
      natsUrl,
      controller,
      ...(controllerTls ? { controllerTls } : {}),
      createBackend,
      families,
      healthzListen: values['healthz-listen'],
      metricsListen: values['metrics-listen'],
      driftCheckMs,
      ...(values['otlp-endpoint'] ? { otlpEndpoint: values['otlp-endpoint'] } : {}),
      logLevel: values['log-level'],
      signal: run.signal,
      natsAuth,
      ...(verifier ? { verifier } : {}),
      ...(dryRun
        ? {}
        : { conntrack: netns ? { netns } : {}, healthChecks: { ...(netns ? { netns } : {}), ...listen.options } }),
    });
  } catch (err) {
    // SIGTERM while waiting for NATS or the first resync: a clean stop.
    if (run.signal.aborted) return 0;
    throw err;
  }
  run.onReady?.({ grpcAddress: '', metricsUrl: executor.metricsUrl });
  await untilAborted(run.signal);
  executor.logger.info('stopping');
  await executor.stop();
  return 0;
}

/** `kpx executor --cleanup`: one line per step on stdout; a failure on stderr and exit status 1. */
async function cleanupCommand(netns: string | undefined, io: Io): Promise<number> {
  const report = await cleanupKubeProxy(netns === undefined ? {} : { netns });
  for (const s of report.steps) {
    const line = `${s.what}: ${s.outcome} (${s.detail})\n`;
    if (s.outcome === CleanupOutcome.Failed) io.stderr(`error: cleanup of ${line}`);
    else io.stdout(line);
  }
  return report.ok ? 0 : 1;
}

/**
 * Where the healthCheckNodePort servers listen, from the configuration's nodePortAddresses, as kube-proxy's
 * service health server: every address, or the node's addresses inside the CIDRs. `primary` names the Node
 * object's IPs, which the executor does not read: it listens on every address then, and says so.
 */
export function healthCheckListen(config: KubeProxyConfig): {
  options: { nodePortAddresses?: NodePortAddresses };
  warning?: string;
} {
  const npa = config.nodePortAddresses;
  if (npa.kind === NodePortAddressesKind.CIDRs) return { options: { nodePortAddresses: npa } };
  if (npa.kind === NodePortAddressesKind.Primary) {
    return {
      options: {},
      warning:
        'nodePortAddresses "primary": the healthCheckNodePort servers listen on every address (the executor does not read the Node\'s primary IPs)',
    };
  }
  return { options: {} };
}
