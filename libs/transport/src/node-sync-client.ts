// The client side of gRPC NodeSync, one for every caller of the controller: the executor (snapshots and acks, with
// trace context in the metadata) and the kpx command (status, audit's snapshots).
import { credentials, Metadata, status as GrpcStatus, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { SpanKind, SpanStatusCode, context, trace, type Span } from '@opentelemetry/api';
import {
  NodeSyncClient,
  type AckRequest,
  type AckResponse,
  type RuleObject,
  type SnapshotChunk,
  type StatusResponse,
} from '@kpx/proto';
import { injectTraceMetadata } from '@kpx/telemetry';
import type { TlsMaterial } from './credential-files.js';
import { ControllerCallError, StoppingError } from './errors.js';

/**
 * The credentials of a NodeSync client: mTLS with the client's certificate (CN=system:node:<node>, O=system:nodes
 * for an executor; an operator's CN for the CLI) and the CA that signed the controller's; plaintext without.
 */
function controllerCredentials(tls: TlsMaterial | undefined): ChannelCredentials {
  return tls ? credentials.createSsl(tls.ca, tls.key, tls.cert) : credentials.createInsecure();
}

export interface ControllerClientOptions {
  /** mTLS (see controllerCredentials); plaintext without. */
  readonly tls?: TlsMaterial;
  /** The deadline of an ack or a status call; a snapshot gets six times as long (default 10 s). */
  readonly deadlineMs?: number;
  /** The largest answer accepted (default 64 MiB: a large node's snapshot chunks). */
  readonly maxReceiveBytes?: number;
  /** The name of the tracer of the CLIENT spans (the instrumentation scope; default "@kpx/transport"). */
  readonly tracerName?: string;
}

/** The NodeSync service's full name, for the rpc.* span attributes (RPC semantic conventions). */
const RpcService = 'kpx.v1.NodeSync';

/**
 * A CLIENT span for one NodeSync call, a child of the active span, from the global tracer provider (the
 * process's: runExecutor starts it), and the call's metadata carrying it as traceparent.
 */
function clientCall(
  tracerName: string,
  method: string,
  name: string,
  attributes: Record<string, string | number>,
): { span: Span; md: Metadata } {
  const span = trace.getTracer(tracerName).startSpan(name, {
    kind: SpanKind.CLIENT,
    attributes: { 'rpc.system': 'grpc', 'rpc.service': RpcService, 'rpc.method': method, ...attributes },
  });
  return { span, md: injectTraceMetadata(new Metadata(), trace.setSpan(context.active(), span)) };
}

/** Ends a CLIENT span with the call's gRPC status. */
function endCall(span: Span, err: ServiceError | Error | undefined): void {
  const code = err === undefined ? GrpcStatus.OK : ((err as Partial<ServiceError>).code ?? GrpcStatus.UNKNOWN);
  span.setAttribute('rpc.grpc.status_code', code);
  if (err !== undefined && code !== GrpcStatus.NOT_FOUND)
    span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
  span.end();
}

/** Runs `fn` once when `signal` aborts; returns what removes the listener (call it once the call settled). */
function onAbort(signal: AbortSignal | undefined, fn: () => void): () => void {
  signal?.addEventListener('abort', fn, { once: true });
  return () => signal?.removeEventListener('abort', fn);
}

export interface FetchedSnapshot {
  readonly generation: number;
  readonly digest: string;
  readonly objects: RuleObject[];
}

/** Options of one call. */
export interface CallOptions {
  /** Cancels the call (it then rejects with StoppingError). */
  readonly signal?: AbortSignal;
}

/** A NodeSync client of the controller at `address` (HOST:PORT). */
export class ControllerClient {
  private readonly client: NodeSyncClient;
  private readonly deadlineMs: number;
  private readonly tracerName: string;

  constructor(
    private readonly address: string,
    options: ControllerClientOptions = {},
  ) {
    this.deadlineMs = options.deadlineMs ?? 10_000;
    this.tracerName = options.tracerName ?? '@kpx/transport';
    this.client = new NodeSyncClient(address, controllerCredentials(options.tls), {
      'grpc.max_receive_message_length': options.maxReceiveBytes ?? 64 * 1024 * 1024,
      // Reconnect quickly after a controller restart.
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 5000,
    });
  }

  /**
   * The node's latest rule set of one family (generation 0 asks for the latest, whatever generation a message
   * named); undefined when the controller has none (node unknown).
   */
  snapshot(
    node: string,
    mode: string,
    ipFamily: string,
    options: CallOptions = {},
  ): Promise<FetchedSnapshot | undefined> {
    if (options.signal?.aborted === true) return Promise.reject(new StoppingError('snapshot'));
    return new Promise((resolve, reject) => {
      const objects: RuleObject[] = [];
      let head: SnapshotChunk | undefined;
      let expected = 0;
      const { span, md } = clientCall(this.tracerName, 'GetSnapshot', 'kpx.snapshot', {
        'kpx.node': node,
        'kpx.family': ipFamily,
      });
      let ended = false;
      const end = (err?: Error): void => {
        if (!ended) endCall(span, err);
        ended = true;
      };
      const stream = this.client.getSnapshot({ node, mode, ipFamily, generation: 0, maxObjectsPerChunk: 0 }, md, {
        deadline: Date.now() + this.deadlineMs * 6,
      });
      stream.on('end', () => end());
      stream.on('error', (err: ServiceError) => end(err));
      const done = onAbort(options.signal, () => {
        stream.cancel();
        reject(new StoppingError('snapshot'));
      });
      stream.on('close', done);
      stream.on('end', done);
      stream.on('error', done);
      stream.on('data', (chunk: SnapshotChunk) => {
        if (
          chunk.index !== expected++ ||
          (head && (chunk.generation !== head.generation || chunk.digest !== head.digest))
        ) {
          stream.cancel();
          reject(
            new Error(`snapshot of ${node} ${ipFamily}: chunk ${chunk.index} out of order or from another generation`),
          );
          return;
        }
        head ??= chunk;
        objects.push(...chunk.objects);
      });
      stream.on('error', (err: ServiceError) => {
        if (err.code === GrpcStatus.NOT_FOUND) resolve(undefined);
        else if (err.code !== GrpcStatus.CANCELLED) reject(new ControllerCallError(this.address, 'GetSnapshot', err));
      });
      stream.on('end', () => resolve(head ? { generation: head.generation, digest: head.digest, objects } : undefined));
    });
  }

  /** Sends an ack within the active trace context. */
  ack(req: AckRequest, options: CallOptions = {}): Promise<AckResponse> {
    if (options.signal?.aborted === true) return Promise.reject(new StoppingError('ack'));
    const { span, md } = clientCall(this.tracerName, 'Ack', 'kpx.ack', {
      'kpx.node': req.node,
      'kpx.generation': req.generation,
      'kpx.family': req.ipFamily,
    });
    return new Promise((resolve, reject) => {
      let done = (): void => undefined;
      const call = this.client.ack(req, md, { deadline: Date.now() + this.deadlineMs }, (err, res) => {
        done();
        endCall(span, err ?? undefined);
        if (err) reject(new ControllerCallError(this.address, 'Ack', err));
        else resolve(res);
      });
      done = onAbort(options.signal, () => {
        call.cancel();
        reject(new StoppingError('ack'));
      });
    });
  }

  /** Every node's status as the controller sees it (`node` narrows it to one; '' is every node). */
  status(node = ''): Promise<StatusResponse> {
    return new Promise((resolve, reject) => {
      this.client.status({ node }, new Metadata(), { deadline: Date.now() + this.deadlineMs }, (err, res) =>
        err ? reject(new ControllerCallError(this.address, 'Status', err)) : resolve(res),
      );
    });
  }

  close(): void {
    this.client.close();
  }
}
