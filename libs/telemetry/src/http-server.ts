// The observability HTTP server: /metrics (Prometheus text), /healthz and /livez (kube-proxy's JSON bodies).

import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Counter, Registry } from 'prom-client';
import { HttpServerError } from './errors.js';
import { renderProbe } from './health.js';
import type { HealthCheck, HealthReport, ProbeKind } from './health.js';
import { formatListenAddress, parseListenAddress } from './listen-address.js';

/** Default: loopback, a port the system picks. */
export const DefaultListenAddress = '127.0.0.1:0';

export interface HttpServerOptions {
  /** `host:port`, `[ipv6]:port` or `:port` (127.0.0.1); port 0 picks a free one. Default 127.0.0.1:0. */
  readonly listen?: string | undefined;
  /** Served on /metrics; without it /metrics is 404. */
  readonly registry?: Registry | undefined;
  /** Answers /healthz and /livez; without it both are 404. A throw or rejection counts as unhealthy. */
  readonly healthz?: HealthCheck | undefined;
  /** Counted per answer by HTTP code, as kube-proxy's kubeproxy_proxy_healthz_total / _livez_total. */
  readonly probeCounters?:
    | {
        readonly proxyHealthz?: Counter<'code'> | undefined;
        readonly proxyLivez?: Counter<'code'> | undefined;
      }
    | undefined;
  /** Clock for the bodies' times, for tests. */
  readonly now?: (() => Date) | undefined;
}

export interface HttpServer {
  /** The address bound (IPv6 without brackets). */
  readonly address: string;
  /** The port bound (the real one when 0 was asked for). */
  readonly port: number;
  /** `http://host:port` of the server. */
  readonly url: string;
  /** Stops listening and drops open connections. Idempotent. */
  close(): Promise<void>;
}

/** Starts the server; rejects with ListenAddressError for a malformed address, HttpServerError when it cannot bind. */
export async function startHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const listen = options.listen ?? DefaultListenAddress;
  const { host, port } = parseListenAddress(listen);
  const server = createServer((req, res) => {
    handle(options, req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(`internal error: ${err instanceof Error ? err.message : String(err)}\n`);
    });
  });
  try {
    await listenOn(server, host, port);
  } catch (cause) {
    throw new HttpServerError(listen, { cause });
  }
  const bound = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  return {
    address: bound.address,
    port: bound.port,
    url: `http://${formatListenAddress({ host: bound.address, port: bound.port })}`,
    close: () => {
      closed ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err === undefined ? resolve() : reject(err)));
        server.closeAllConnections();
      });
      return closed;
    },
  };
}

function listenOn(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

async function handle(options: HttpServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  const route = routeOf(options, path);
  if (route === undefined) {
    sendText(res, req, 404, `${path} not found\n`);
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    sendText(res, req, 405, `method ${req.method ?? ''} not allowed\n`);
    return;
  }
  if (route === 'metrics') {
    const registry = options.registry as Registry;
    const text = await registry.metrics();
    res.writeHead(200, { 'Content-Type': registry.contentType });
    res.end(req.method === 'HEAD' ? undefined : text);
    return;
  }
  const check = options.healthz as HealthCheck;
  const report = await runCheck(check);
  const { status, body } = renderProbe(route, report, (options.now ?? (() => new Date()))());
  const counter = route === 'healthz' ? options.probeCounters?.proxyHealthz : options.probeCounters?.proxyLivez;
  counter?.inc({ code: String(status) });
  res.writeHead(status, { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff' });
  res.end(req.method === 'HEAD' ? undefined : JSON.stringify(body));
}

function routeOf(options: HttpServerOptions, path: string): 'metrics' | ProbeKind | undefined {
  if (path === '/metrics' && options.registry !== undefined) return 'metrics';
  if (path === '/healthz' && options.healthz !== undefined) return 'healthz';
  if (path === '/livez' && options.healthz !== undefined) return 'livez';
  return undefined;
}

async function runCheck(check: HealthCheck): Promise<HealthReport> {
  try {
    return await check();
  } catch (err) {
    return { ok: false, details: { error: err instanceof Error ? err.message : String(err) } };
  }
}

function sendText(res: ServerResponse, req: IncomingMessage, status: number, text: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
  res.end(req.method === 'HEAD' ? undefined : text);
}
