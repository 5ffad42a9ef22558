// A stand-in OTLP/HTTP trace receiver for tests: POST /v1/traces with protobuf (ExportTraceServiceRequest, decoded
// by the small wire-format reader below: no OTLP decoder ships in node_modules) or JSON, gzip or not; and an
// OTLP/gRPC one (the same decoder on the Export method's bytes).
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import {
  Server,
  ServerCredentials,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServiceDefinition,
} from '@grpc/grpc-js';

export type AttributeValue = string | boolean | number | undefined;

/** One exported span with its resource, ids as lower-case hex. */
export interface ReceivedSpan {
  readonly resource: Readonly<Record<string, AttributeValue>>;
  readonly traceId: string;
  readonly spanId: string;
  /** '' for a root span. */
  readonly parentSpanId: string;
  readonly name: string;
  /** OTLP's SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  readonly kind: number;
  readonly attributes: Readonly<Record<string, AttributeValue>>;
}

export interface OtlpReceiver {
  /** `http://127.0.0.1:PORT`: an OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly endpoint: string;
  readonly spans: ReceivedSpan[];
  /** Content types of the requests so far. */
  readonly contentTypes: string[];
  close(): Promise<void>;
}

export const OtlpSpanKind = { Internal: 1, Server: 2, Client: 3, Producer: 4, Consumer: 5 } as const;

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const contentTypes: string[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      const type = req.headers['content-type'] ?? '';
      contentTypes.push(type);
      try {
        if (type.includes('json')) spans.push(...fromJson(JSON.parse(body.toString('utf8')) as JsonRequest));
        else spans.push(...fromProtobuf(body));
      } catch (err) {
        res.writeHead(400, { 'Content-Type': 'text/plain' }).end(String(err));
        return;
      }
      // An empty ExportTraceServiceResponse: no partial success.
      if (type.includes('json')) res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
      else res.writeHead(200, { 'Content-Type': 'application/x-protobuf' }).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    contentTypes,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// Protobuf wire format: a message is a list of (field number, wire type, value).
type Field = { readonly wire: 0 | 1 | 2 | 5; readonly int: bigint; readonly bytes: Buffer };

function readVarint(buf: Buffer, pos: number): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    const b = buf[pos++];
    if (b === undefined) throw new Error('truncated varint');
    result |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return [result, pos];
    shift += 7n;
  }
}

function fields(buf: Buffer): Map<number, Field[]> {
  const out = new Map<number, Field[]>();
  let pos = 0;
  while (pos < buf.length) {
    const [key, next] = readVarint(buf, pos);
    pos = next;
    const num = Number(key >> 3n);
    const wire = Number(key & 7n);
    let field: Field;
    if (wire === 0) {
      const [v, p] = readVarint(buf, pos);
      pos = p;
      field = { wire, int: v, bytes: Buffer.alloc(0) };
    } else if (wire === 1) {
      field = { wire, int: buf.readBigUInt64LE(pos), bytes: buf.subarray(pos, pos + 8) };
      pos += 8;
    } else if (wire === 2) {
      const [len, p] = readVarint(buf, pos);
      field = { wire, int: len, bytes: buf.subarray(p, p + Number(len)) };
      pos = p + Number(len);
    } else if (wire === 5) {
      field = { wire, int: BigInt(buf.readUInt32LE(pos)), bytes: buf.subarray(pos, pos + 4) };
      pos += 4;
    } else {
      throw new Error(`unsupported wire type ${wire}`);
    }
    const list = out.get(num) ?? [];
    list.push(field);
    out.set(num, list);
  }
  return out;
}

const all = (m: Map<number, Field[]>, n: number): Field[] => m.get(n) ?? [];
const one = (m: Map<number, Field[]>, n: number): Field | undefined => m.get(n)?.[0];

/** AnyValue: 1 string, 2 bool, 3 int, 4 double (other kinds are left undefined). */
function anyValue(buf: Buffer): AttributeValue {
  const m = fields(buf);
  const s = one(m, 1);
  if (s) return s.bytes.toString('utf8');
  const b = one(m, 2);
  if (b) return b.int !== 0n;
  const i = one(m, 3);
  if (i) return Number(BigInt.asIntN(64, i.int));
  const d = one(m, 4);
  if (d) return d.bytes.readDoubleLE(0);
  return undefined;
}

/** repeated KeyValue (1 key, 2 value). */
function keyValues(list: Field[]): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const f of list) {
    const kv = fields(f.bytes);
    out[one(kv, 1)?.bytes.toString('utf8') ?? ''] = anyValue(one(kv, 2)?.bytes ?? Buffer.alloc(0));
  }
  return out;
}

/** ExportTraceServiceRequest: 1 ResourceSpans (1 Resource (1 attributes), 2 ScopeSpans (2 Span)). */
export function fromProtobuf(body: Buffer): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of all(fields(body), 1)) {
    const rsm = fields(rs.bytes);
    const resource = keyValues(all(fields(one(rsm, 1)?.bytes ?? Buffer.alloc(0)), 1));
    for (const ss of all(rsm, 2)) {
      for (const sp of all(fields(ss.bytes), 2)) {
        // Span: 1 trace_id, 2 span_id, 4 parent_span_id, 5 name, 6 kind, 9 attributes.
        const s = fields(sp.bytes);
        out.push({
          resource,
          traceId: one(s, 1)?.bytes.toString('hex') ?? '',
          spanId: one(s, 2)?.bytes.toString('hex') ?? '',
          parentSpanId: one(s, 4)?.bytes.toString('hex') ?? '',
          name: one(s, 5)?.bytes.toString('utf8') ?? '',
          kind: Number(one(s, 6)?.int ?? 0n),
          attributes: keyValues(all(s, 9)),
        });
      }
    }
  }
  return out;
}

interface JsonKeyValue {
  key: string;
  value: { stringValue?: string; boolValue?: boolean; intValue?: number | string; doubleValue?: number };
}
interface JsonRequest {
  resourceSpans?: {
    resource?: { attributes?: JsonKeyValue[] };
    scopeSpans?: {
      spans?: {
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        kind: number;
        attributes?: JsonKeyValue[];
      }[];
    }[];
  }[];
}

function jsonAttributes(list: JsonKeyValue[] | undefined): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const { key, value } of list ?? [])
    out[key] =
      value.stringValue ??
      value.boolValue ??
      (value.intValue !== undefined ? Number(value.intValue) : value.doubleValue);
  return out;
}

/** The OTLP/JSON encoding (ids in hex, as the JS exporter writes them). */
export function fromJson(body: JsonRequest): ReceivedSpan[] {
  return (body.resourceSpans ?? []).flatMap((rs) => {
    const resource = jsonAttributes(rs.resource?.attributes);
    return (rs.scopeSpans ?? []).flatMap((ss) =>
      (ss.spans ?? []).map((s) => ({
        resource,
        traceId: s.traceId,
        spanId: s.spanId,
        parentSpanId: s.parentSpanId ?? '',
        name: s.name,
        kind: s.kind,
        attributes: jsonAttributes(s.attributes),
      })),
    );
  });
}

/** The OTLP/gRPC trace service's method, with requests left as bytes (decoded by fromProtobuf). */
const ExportMethod = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

export interface OtlpGrpcReceiver {
  /** `http://127.0.0.1:PORT`: an OTEL_EXPORTER_OTLP_ENDPOINT for OTEL_EXPORTER_OTLP_PROTOCOL=grpc. */
  readonly endpoint: string;
  readonly spans: ReceivedSpan[];
  close(): Promise<void>;
}

/** A stand-in OTLP/gRPC trace receiver (insecure, 127.0.0.1:0). */
export async function startOtlpGrpcReceiver(): Promise<OtlpGrpcReceiver> {
  const spans: ReceivedSpan[] = [];
  const server = new Server();
  const definition: ServiceDefinition = {
    Export: {
      path: ExportMethod,
      requestStream: false,
      responseStream: false,
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: () => Buffer.alloc(0),
      responseDeserialize: (b: Buffer) => b,
    },
  };
  server.addService(definition, {
    Export: (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
      spans.push(...fromProtobuf(call.request));
      callback(null, Buffer.alloc(0));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}
