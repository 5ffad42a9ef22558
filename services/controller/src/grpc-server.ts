// The controller's NodeSync gRPC service: acks from executors, snapshots, convergence status.
import { Server, ServerCredentials, status as GrpcStatus, type ServerErrorResponse } from '@grpc/grpc-js';
import type { PeerCertificate } from 'node:tls';
import { SpanKind, context, trace, type Attributes, type Tracer } from '@opentelemetry/api';
import { NodeSyncService, type AckRequest, type NodeSyncServer, type SnapshotChunk } from '@kpx/proto';
import { extractTraceMetadata, formatListenAddress, parseListenAddress } from '@kpx/telemetry';
import type { TlsMaterial } from '@kpx/transport';
import { denial, identityOfCertificate, isLoopbackHost, NodeSyncMethod } from './identity.js';
import type { ControllerPipeline, PipelineLogger } from './pipeline.js';

export interface GrpcServerOptions {
  readonly pipeline: ControllerPipeline;
  /** `host:port`; port 0 picks a free one. */
  readonly listen: string;
  readonly logger: PipelineLogger;
  readonly tracer: Tracer;
  /** Change-to-ack latency observer (seconds). */
  readonly onChangeToAck?: (seconds: number) => void;
  /** Every ack, after the tracker took it (the audit log records drift and failures). */
  readonly onAck?: (req: AckRequest) => void;
  /** Objects per snapshot chunk when the client does not say (default 2000). */
  readonly chunkObjects?: number;
  /** With leader election: whether this controller leads, who does, at which epoch (Status reports it). */
  readonly leadership?: () => { leader: boolean; identity: string; epoch: number };
  /**
   * mTLS: the server's certificate and key, and the CA that signs client certificates (required and verified).
   * Every call is then authorized by the client certificate's identity (identity.ts).
   */
  readonly tls?: TlsMaterial;
  /** Without tls, listen on a non-loopback address anyway (--insecure). */
  readonly insecure?: boolean;
  /** A call refused with PERMISSION_DENIED (kpx_controller_denied_requests_total). */
  readonly onDenied?: (method: NodeSyncMethod, identity: string) => void;
}

export interface RunningGrpcServer {
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

/** RPC semantic convention attributes of a NodeSync method's SERVER span. */
function rpcAttributes(method: string): Attributes {
  return { 'rpc.system': 'grpc', 'rpc.service': 'kpx.v1.NodeSync', 'rpc.method': method };
}

const notFound = (message: string): ServerErrorResponse =>
  Object.assign(new Error(message), { code: GrpcStatus.NOT_FOUND });

/** Why the controller will not listen on `listen` with these options (no TLS on a non-loopback address), or undefined. */
export function insecureListenRefusal(listen: string, opts: { tls: boolean; insecure: boolean }): string | undefined {
  if (opts.tls || opts.insecure) return undefined;
  const { host } = parseListenAddress(listen);
  if (isLoopbackHost(host)) return undefined;
  return `refusing to serve gRPC NodeSync on ${listen} without TLS: give --tls-cert-file, --tls-private-key-file and --client-ca-file, listen on loopback, or pass --insecure`;
}

export function nodeSyncImplementation(opts: GrpcServerOptions): NodeSyncServer {
  const { pipeline, logger, tracer } = opts;
  /** Without TLS every call is allowed (loopback, or --insecure); with it, the error refusing this call, if any. */
  const refuse = (
    call: { getAuthContext(): { sslPeerCertificate?: PeerCertificate } },
    method: NodeSyncMethod,
    node: string,
  ): ServerErrorResponse | undefined => {
    if (!opts.tls) return undefined;
    const who = identityOfCertificate(call.getAuthContext().sslPeerCertificate);
    const why = denial(who, method, node);
    if (why === undefined) return undefined;
    opts.onDenied?.(method, who.name);
    logger.warn({ method, identity: who.name, node }, `denied NodeSync ${method}: ${why}`);
    return Object.assign(new Error(why), { code: GrpcStatus.PERMISSION_DENIED });
  };
  return {
    ack(call, callback) {
      const denied = refuse(call, NodeSyncMethod.Ack, call.request.node);
      if (denied) {
        callback(denied);
        return;
      }
      const parent = extractTraceMetadata(call.metadata);
      const span = tracer.startSpan(
        'kpx.ack',
        {
          kind: SpanKind.SERVER,
          attributes: {
            ...rpcAttributes('Ack'),
            'kpx.node': call.request.node,
            'kpx.generation': call.request.generation,
            'kpx.family': call.request.ipFamily,
          },
        },
        parent,
      );
      context.with(trace.setSpan(parent, span), () => {
        const outcome = pipeline.tracker.ack(call.request);
        if (outcome.changeToAckSeconds !== undefined) opts.onChangeToAck?.(outcome.changeToAckSeconds);
        opts.onAck?.(call.request);
        if (call.request.error)
          logger.warn(
            { node: call.request.node, generation: call.request.generation, error: call.request.error },
            'executor reported a failed apply',
          );
        span.setAttribute('rpc.grpc.status_code', GrpcStatus.OK);
        span.end();
        callback(null, outcome.response);
      });
    },
    getSnapshot(call) {
      const req = call.request;
      const denied = refuse(call, NodeSyncMethod.GetSnapshot, req.node);
      if (denied) {
        call.emit('error', denied);
        return;
      }
      const chunkSize = req.maxObjectsPerChunk > 0 ? req.maxObjectsPerChunk : (opts.chunkObjects ?? 2000);
      const span = tracer.startSpan(
        'kpx.snapshot',
        {
          kind: SpanKind.SERVER,
          attributes: { ...rpcAttributes('GetSnapshot'), 'kpx.node': req.node, 'kpx.family': req.ipFamily },
        },
        extractTraceMetadata(call.metadata),
      );
      pipeline
        .snapshot(req.node, req.ipFamily)
        .then((snap) => {
          if (!snap) {
            span.setAttribute('rpc.grpc.status_code', GrpcStatus.NOT_FOUND);
            call.emit(
              'error',
              notFound(`no rule set for node ${JSON.stringify(req.node)} family ${JSON.stringify(req.ipFamily)}`),
            );
            return;
          }
          if (req.generation !== 0 && req.generation > snap.generation) {
            span.setAttribute('rpc.grpc.status_code', GrpcStatus.NOT_FOUND);
            call.emit(
              'error',
              notFound(`generation ${req.generation} of node ${req.node} is not known (latest ${snap.generation})`),
            );
            return;
          }
          span.setAttributes({
            'kpx.generation': snap.generation,
            'kpx.objects': snap.objects.length,
            'rpc.grpc.status_code': GrpcStatus.OK,
          });
          // Older generations are not kept in memory: the latest is served (the chunk says which it is).
          const total = Math.max(1, Math.ceil(snap.objects.length / chunkSize));
          for (let i = 0; i < total; i++) {
            const chunk: SnapshotChunk = {
              node: snap.node,
              mode: snap.mode,
              ipFamily: snap.ipFamily,
              generation: snap.generation,
              digest: snap.digest,
              index: i,
              objects: snap.objects.slice(i * chunkSize, (i + 1) * chunkSize),
              last: i === total - 1,
            };
            call.write(chunk);
          }
          call.end();
        })
        .catch((err: unknown) => {
          span.recordException(err instanceof Error ? err : String(err));
          span.setAttribute('rpc.grpc.status_code', GrpcStatus.INTERNAL);
          call.emit('error', Object.assign(new Error(String(err)), { code: GrpcStatus.INTERNAL }));
        })
        .finally(() => span.end());
    },
    status(call, callback) {
      const denied = refuse(call, NodeSyncMethod.Status, call.request.node);
      if (denied) {
        callback(denied);
        return;
      }
      const l = opts.leadership?.() ?? { leader: true, identity: '', epoch: 0 };
      callback(null, {
        generation: pipeline.generation,
        nodes: pipeline.tracker.status(call.request.node),
        standby: !l.leader,
        leaderIdentity: l.identity,
        leaderEpoch: l.epoch,
      });
    },
  };
}

export async function startGrpcServer(opts: GrpcServerOptions): Promise<RunningGrpcServer> {
  const { host, port } = parseListenAddress(opts.listen);
  const refusal = insecureListenRefusal(opts.listen, { tls: opts.tls !== undefined, insecure: opts.insecure === true });
  if (refusal) throw new Error(refusal);
  const server = new Server({ 'grpc.max_send_message_length': 64 * 1024 * 1024 });
  server.addService(NodeSyncService, nodeSyncImplementation(opts));
  // With TLS, a client without a certificate signed by the client CA fails the handshake (checkClientCertificate).
  const creds = opts.tls
    ? ServerCredentials.createSsl(opts.tls.ca, [{ cert_chain: opts.tls.cert, private_key: opts.tls.key }], true)
    : ServerCredentials.createInsecure();
  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(formatListenAddress({ host, port }), creds, (err, p) => (err ? reject(err) : resolve(p)));
  });
  return {
    address: formatListenAddress({ host, port: bound }),
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
      }),
  };
}
