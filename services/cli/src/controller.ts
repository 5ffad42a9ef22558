// kpx controller: watch the cluster (or a manifests directory), compile every node, publish deltas on NATS.
import {
  createKubernetesSource,
  insecureListenRefusal,
  kubernetesLeaseStore,
  ManifestsDirSource,
  natsLeaseStore,
  runController,
  type ControllerLeaderElection,
  type Source,
  validateTiming,
} from '@kpx/controller';
import { UsageError } from './errors.js';
import { parseDuration, parseFlags, required } from './flags.js';
import { untilAborted, type Io, type LongRunningOptions } from './io.js';
import { loadProxyConfig } from './proxy-config.js';
import { tlsFilesFromFlags } from '@kpx/transport';
import { loadSigner, natsAuthOf, NatsAuthFlags, NatsAuthUsage } from './security-flags.js';

export const CONTROLLER_USAGE = `usage: kpx controller (--manifests DIR | --kubeconfig FILE | --in-cluster) --nats URL --grpc-listen HOST:PORT
                      [--metrics-listen HOST:PORT] [--config FILE] [options]
                      [--tls-cert-file FILE --tls-private-key-file FILE --client-ca-file FILE | --insecure]

Watches Services, EndpointSlices and Nodes, compiles the rules of every node and publishes each change as a
versioned delta on NATS JetStream (stream KPX_DELTAS, subjects kpx.delta.<node>). Serves gRPC NodeSync (acks,
snapshots, status) and Prometheus /metrics and /healthz. Runs until SIGINT or SIGTERM.

source (exactly one):
  --manifests DIR          a directory of manifests (*.yaml, *.yml, *.json), watched for changes
  --kubeconfig FILE        the Kubernetes API, with this kubeconfig
  --in-cluster             the Kubernetes API, with the pod's service account

  --nats URL               NATS server with JetStream (e.g. nats://127.0.0.1:4222)
  --grpc-listen HOST:PORT  gRPC NodeSync address (e.g. 127.0.0.1:10260)
  --metrics-listen H:P     /metrics and /healthz (default 127.0.0.1:10249)
  --config FILE            KubeProxyConfiguration (minSyncPeriod, clusterCIDR, masquerade, nodePortAddresses, ...)
  --history N              deltas kept per node (default 1000)
  --max-age DURATION       maximum age of kept deltas, e.g. 24h (default: unlimited)
  --snapshot-every N       store each node's snapshot every N of its generations (default 100)
  --snapshots-kept N       older snapshots kept per node and family besides the newest (default 2)
  --audit-max-age DURATION how long the audit log (KPX_AUDIT) keeps records (default 168h)
  --publish-timeout DURATION  how long a publish waits for JetStream's acknowledgement (default 5s); a sync that
                           cannot publish everything is retried with backoff (500ms doubling to 30s)
  --publish-grace DURATION /healthz fails once a compiled change has waited this long for JetStream (default 30s)
  --stale-after DURATION   a node whose executor has not acked for this long is "stale" in status (default 60s)
  --nats-replicas N        replicas of the streams, object store and KV buckets kpx creates (default 1; 3 on a
                           3-node JetStream cluster)
  --otlp-endpoint URL      export traces over OTLP (as OTEL_EXPORTER_OTLP_ENDPOINT; protocol from
                           OTEL_EXPORTER_OTLP_PROTOCOL, default http/protobuf; default: off; every other
                           OTEL_* variable applies too: see docs/deploy.md)

leader election (kube-controller-manager's flags; run two or more controllers, only the leader publishes):
  --leader-elect           campaign for a lease: a NATS KV key (bucket KPX_LEADER) with --manifests, a
                           coordination.k8s.io/v1 Lease with --kubeconfig/--in-cluster; a standby compiles
                           nothing and does not listen on --grpc-listen; a leader that loses the lease exits (1)
  --leader-elect-lease-duration DURATION  a standby takes over a lease not renewed for this long (default 15s)
  --leader-elect-renew-deadline DURATION  the leader stops when it could not renew for this long (default 10s)
  --leader-elect-retry-period DURATION    how often candidates try to acquire or renew (default 2s)
  --leader-elect-resource-name NAME       the lease's name (default kpx-controller)
  --leader-elect-resource-namespace NS    the Lease's namespace (default $POD_NAMESPACE, else kpx-system)
  --log-level LEVEL        trace, debug, info (default), warn, error

gRPC NodeSync security (kube-apiserver's flag names; docs/security.md):
  --tls-cert-file FILE     serve mTLS with this certificate; every client must present a certificate signed by
                           --client-ca-file: CN=system:node:<node>, O=system:nodes may ack and fetch only its own
                           node; any other CN is an operator (status, audit, snapshots of any node; no acks)
  --tls-private-key-file F its private key (warned about when group or others may read it)
  --client-ca-file FILE    the CA that signs client certificates
  --insecure               without TLS, listen on a non-loopback --grpc-listen anyway (refused otherwise)

signing (issue #15):
  --signing-key FILE       sign every delta and snapshot with this Ed25519 key (PEM PKCS#8); without it they go
                           unsigned and a warning says so

${NatsAuthUsage}`;

function positiveInt(text: string | undefined, flag: string, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1)
    throw new UsageError(`${flag} must be a positive integer, not ${JSON.stringify(text)}`);
  return n;
}

export async function controllerCommand(argv: readonly string[], io: Io, run: LongRunningOptions): Promise<number> {
  const values = parseFlags(
    argv,
    {
      manifests: { type: 'string' },
      kubeconfig: { type: 'string' },
      'in-cluster': { type: 'boolean' },
      nats: { type: 'string' },
      'grpc-listen': { type: 'string' },
      'metrics-listen': { type: 'string', default: '127.0.0.1:10249' },
      config: { type: 'string' },
      history: { type: 'string' },
      'max-age': { type: 'string' },
      'snapshot-every': { type: 'string' },
      'snapshots-kept': { type: 'string' },
      'audit-max-age': { type: 'string' },
      'publish-timeout': { type: 'string' },
      'publish-grace': { type: 'string' },
      'stale-after': { type: 'string' },
      'otlp-endpoint': { type: 'string' },
      'nats-replicas': { type: 'string' },
      'leader-elect': { type: 'boolean' },
      'leader-elect-lease-duration': { type: 'string' },
      'leader-elect-renew-deadline': { type: 'string' },
      'leader-elect-retry-period': { type: 'string' },
      'leader-elect-resource-name': { type: 'string', default: 'kpx-controller' },
      'leader-elect-resource-namespace': { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      'tls-cert-file': { type: 'string' },
      'tls-private-key-file': { type: 'string' },
      'client-ca-file': { type: 'string' },
      insecure: { type: 'boolean' },
      ...NatsAuthFlags,
      'signing-key': { type: 'string' },
    },
    CONTROLLER_USAGE,
    io,
  );
  if (!values) return 0;
  const sources = [
    values.manifests !== undefined,
    values.kubeconfig !== undefined,
    values['in-cluster'] === true,
  ].filter(Boolean).length;
  if (sources !== 1)
    throw new UsageError(`give exactly one of --manifests, --kubeconfig, --in-cluster\n${CONTROLLER_USAGE}`);
  const natsUrl = required(values.nats, 'nats', CONTROLLER_USAGE);
  const grpcListen = required(values['grpc-listen'], 'grpc-listen', CONTROLLER_USAGE);
  const grpcTls = tlsFilesFromFlags(values, values['client-ca-file'], '--client-ca-file');
  if (typeof grpcTls === 'string') throw new UsageError(grpcTls);
  const grpcInsecure = values.insecure === true;
  const refusal = insecureListenRefusal(grpcListen, { tls: grpcTls !== undefined, insecure: grpcInsecure });
  if (refusal) throw new UsageError(refusal);
  const historyPerSubject = positiveInt(values.history, '--history', 1000);
  const snapshotEvery = positiveInt(values['snapshot-every'], '--snapshot-every', 100);
  const maxAgeMs = values['max-age'] !== undefined ? parseDuration(values['max-age'], '--max-age') : 0;
  const snapshotsKept =
    values['snapshots-kept'] === '0' ? 0 : positiveInt(values['snapshots-kept'], '--snapshots-kept', 2);
  const auditMaxAgeMs =
    values['audit-max-age'] !== undefined ? parseDuration(values['audit-max-age'], '--audit-max-age') : undefined;
  const natsReplicas =
    values['nats-replicas'] !== undefined ? positiveInt(values['nats-replicas'], '--nats-replicas', 1) : undefined;
  const optionalDuration = (
    flag:
      | 'publish-timeout'
      | 'publish-grace'
      | 'stale-after'
      | 'leader-elect-lease-duration'
      | 'leader-elect-renew-deadline'
      | 'leader-elect-retry-period',
  ): number | undefined => {
    const text = values[flag];
    return text === undefined ? undefined : parseDuration(text, `--${flag}`);
  };
  const publishTimeoutMs = optionalDuration('publish-timeout');
  const publishGraceMs = optionalDuration('publish-grace');
  const staleAfterMs = optionalDuration('stale-after');

  const { config, warnings } = await loadProxyConfig(values.config);
  for (const w of warnings) io.stderr(`warning: ${w}\n`);
  if (config.mode !== 'iptables')
    io.stderr(
      `warning: mode ${JSON.stringify(config.mode)} is not implemented by the controller yet; compiling iptables rules\n`,
    );

  let source: Source;
  let sourceName: string;
  if (values.manifests !== undefined) {
    source = new ManifestsDirSource({ dir: values.manifests });
    sourceName = `manifests ${values.manifests}`;
  } else if (values.kubeconfig !== undefined) {
    source = createKubernetesSource({ kubeconfigPath: values.kubeconfig });
    sourceName = `kubeconfig ${values.kubeconfig}`;
  } else {
    source = createKubernetesSource({ inCluster: true });
    sourceName = 'in-cluster';
  }
  // A leader that lost its lease exits non-zero: a supervisor (Kubernetes) restarts it as a standby.
  const lost = new AbortController();
  let lostReason: string | undefined;
  let leaderElection: ControllerLeaderElection | undefined;
  if (values['leader-elect']) {
    const name = values['leader-elect-resource-name'];
    const namespace = values['leader-elect-resource-namespace'] ?? process.env['POD_NAMESPACE'] ?? 'kpx-system';
    const kubeconfigPath = values.kubeconfig;
    const inCluster = values['in-cluster'] === true;
    const timing = {
      leaseDurationMs: optionalDuration('leader-elect-lease-duration'),
      renewDeadlineMs: optionalDuration('leader-elect-renew-deadline'),
      retryPeriodMs: optionalDuration('leader-elect-retry-period'),
    };
    leaderElection = {
      store: (js) =>
        values.manifests !== undefined
          ? natsLeaseStore(js, { name, ...(natsReplicas !== undefined ? { replicas: natsReplicas } : {}) })
          : Promise.resolve(
              kubernetesLeaseStore({
                name,
                namespace,
                inCluster,
                ...(kubeconfigPath !== undefined ? { kubeconfigPath } : {}),
              }),
            ),
      ...Object.fromEntries(Object.entries(timing).filter(([, v]) => v !== undefined)),
      onLost: (reason) => {
        lostReason = reason;
        lost.abort();
      },
    };
    const invalid = validateTiming({
      leaseDurationMs: timing.leaseDurationMs ?? 15_000,
      renewDeadlineMs: timing.renewDeadlineMs ?? 10_000,
      retryPeriodMs: timing.retryPeriodMs ?? 2_000,
    });
    if (invalid) throw new UsageError(`leader election: ${invalid}`);
  }
  const natsAuth = await natsAuthOf(values);
  const signer = values['signing-key'] !== undefined ? await loadSigner(values['signing-key']) : undefined;
  if (run.signal.aborted) return 0;
  let controller;
  try {
    controller = await runController({
      source,
      sourceName,
      natsUrl,
      grpcListen,
      metricsListen: values['metrics-listen'],
      config,
      historyPerSubject,
      maxAgeMs,
      snapshotEvery,
      snapshotsKept,
      ...(auditMaxAgeMs !== undefined ? { auditMaxAgeMs } : {}),
      ...(publishTimeoutMs !== undefined ? { publishTimeoutMs } : {}),
      ...(publishGraceMs !== undefined ? { publishGraceMs } : {}),
      ...(staleAfterMs !== undefined ? { staleAfterMs } : {}),
      ...(values['otlp-endpoint'] ? { otlpEndpoint: values['otlp-endpoint'] } : {}),
      ...(natsReplicas !== undefined ? { natsReplicas } : {}),
      ...(leaderElection ? { leaderElection } : {}),
      ...(grpcTls ? { grpcTls } : {}),
      grpcInsecure,
      logLevel: values['log-level'],
      signal: run.signal,
      natsAuth,
      ...(signer ? { signer } : {}),
    });
  } catch (err) {
    // SIGTERM while waiting for NATS: a clean stop.
    if (run.signal.aborted) return 0;
    throw err;
  }
  run.onReady?.({ grpcAddress: controller.grpcAddress, metricsUrl: controller.metricsUrl });
  await untilAborted(AbortSignal.any([run.signal, lost.signal]));
  controller.logger.info(
    lostReason !== undefined ? { reason: lostReason } : {},
    lostReason !== undefined ? 'leader election lost; exiting' : 'stopping',
  );
  await controller.stop();
  if (lostReason === undefined) return 0;
  io.stderr(`kpx: leader election lost: ${lostReason}\n`);
  return 1;
}
