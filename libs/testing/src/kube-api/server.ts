// A test Kubernetes API server speaking the real list/watch protocol for Services, EndpointSlices and Nodes,
// on 127.0.0.1 and a port of its own, with hooks for the failures a watcher must survive.
//
// What it serves (what client-node 1.4's ListWatch and generated clients send):
// - list: GET /api/v1/services, /api/v1/nodes, /apis/discovery.k8s.io/v1/endpointslices and the namespaced
//   forms /…/namespaces/<ns>/<plural>. Answer: {kind: <Kind>List, apiVersion, metadata: {resourceVersion}, items};
//   as from kube-apiserver, the items carry no kind/apiVersion. GET …/<plural>/<name> returns one object.
// - watch: the same paths with ?watch=true (or 1). resourceVersion=RV streams newline-delimited JSON events
//   {type: ADDED|MODIFIED|DELETED, object} for every change after RV; an absent, empty or "0" RV first sends
//   the current objects as ADDED. allowWatchBookmarks=true adds a BOOKMARK {kind, apiVersion, metadata:
//   {resourceVersion}} every bookmarkIntervalMs. timeoutSeconds=N ends the stream after N s (clean end).
//   An RV older than the retained history is answered like kube-apiserver does, chosen by
//   expiredWatchResponse: "event" (HTTP 200, then one ERROR event carrying a Status with code 410, reason
//   Expired, then end of stream; what the watch cache does) or "http" (HTTP 410 with the Status as body).
// - every request must carry `Authorization: Bearer <token>` (the kubeconfig's token), else 401.
// - the resourceVersion is one global counter shared by every kind, like etcd's revision.
//
// Hooks: dropWatches() destroys the sockets of the open watches; pauseWatches() keeps them open but makes them
// silent for good (no events, no bookmarks: the stuck watch a client must detect); expireResourceVersions()
// forgets the event history (a re-watch from an older RV gets 410); failRequests(n) answers the next n
// requests with an error status; stallRequests(n) never answers the next n (a hung list or watch).
// Inspection: requests() records every request with its answer (status 0: stalled), activeWatches() the open
// watch streams, openConnections() the TCP connections still open (a client that let go of everything: 0).
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeApiServerError } from './errors.js';
import { renderKubeconfig } from './kubeconfig.js';
import { parseResourcePath, type ResourceDef, type ResourcePath } from './resources.js';
import { ObjectStore, type KubeApiObject, type KubeApiStore, type StoreEvent } from './store.js';

/** How a watch from an expired resourceVersion is refused (kube-apiserver does both, depending on where it fails). */
export const ExpiredWatchResponse = { Event: 'event', Http: 'http' } as const;
export type ExpiredWatchResponse = (typeof ExpiredWatchResponse)[keyof typeof ExpiredWatchResponse];

export interface KubeApiServerOptions {
  /** Interval of BOOKMARK events on watches that asked for them (default 60 000 ms, about kube-apiserver's; 0: never). */
  bookmarkIntervalMs?: number;
  /** Default ExpiredWatchResponse.Event. */
  expiredWatchResponse?: ExpiredWatchResponse;
  /** Past events kept for watches to resume from (default 1000). */
  historyLimit?: number;
  /** The resourceVersion before the first change (default 1000). */
  initialResourceVersion?: number;
  /** Bearer token clients must present (default: random). */
  token?: string;
}

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly watch: boolean;
  /** Lower-case header names. */
  readonly headers: Readonly<Record<string, string>>;
  /** The HTTP status answered (0: stalled, never answered). */
  readonly status: number;
  readonly at: number;
}

export interface WatchInfo {
  readonly path: string;
  readonly resourceVersion: string;
  readonly paused: boolean;
}

export interface KubeApiServer {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  /** A kubeconfig file pointing at this server (deleted by close()). */
  readonly kubeconfigPath: string;
  readonly token: string;
  readonly store: KubeApiStore;
  /** Every request received so far, oldest first. */
  requests(): readonly RecordedRequest[];
  /** The watch streams open now. */
  activeWatches(): readonly WatchInfo[];
  /** TCP connections open now (answered or not): 0 once every client has let go. */
  openConnections(): number;
  /** Destroys the socket of every open watch; returns how many. */
  dropWatches(): number;
  /** Makes every open watch silent for good (open, but no events and no bookmarks); returns how many. */
  pauseWatches(): number;
  /** Forgets the event history: a watch from any older resourceVersion now gets 410 Gone. */
  expireResourceVersions(): void;
  setExpiredWatchResponse(mode: ExpiredWatchResponse): void;
  /** Answers the next `count` requests (lists and watches) with `status` (default 500). */
  failRequests(count: number, status?: number): void;
  /** Accepts the next `count` requests but never answers them (until close()). */
  stallRequests(count: number): void;
  /** Ends every watch, closes the server and deletes the kubeconfig. */
  close(): Promise<void>;
}

interface WatchConn {
  readonly path: string;
  readonly resource: ResourceDef;
  readonly namespace: string | undefined;
  readonly startResourceVersion: string;
  readonly res: ServerResponse;
  readonly timers: NodeJS.Timeout[];
  paused: boolean;
}

const ReasonByStatus: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  410: 'Expired',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

function status(code: number, message: string, reason = ReasonByStatus[code] ?? 'Unknown'): KubeApiObject {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

/** strconv.ParseBool, as the API server reads boolean query parameters. */
const parseBool = (value: string | null): boolean =>
  value !== null && ['1', 't', 'T', 'true', 'TRUE', 'True'].includes(value);

/** List items come without kind and apiVersion, as kube-apiserver sends them. */
function listItem(object: KubeApiObject): KubeApiObject {
  const { kind: _kind, apiVersion: _apiVersion, ...rest } = object;
  return rest;
}

/** Starts the server on 127.0.0.1 (a free port) and writes its kubeconfig. */
export async function startKubeApiServer(options: KubeApiServerOptions = {}): Promise<KubeApiServer> {
  const store = new ObjectStore({
    historyLimit: options.historyLimit,
    initialResourceVersion: options.initialResourceVersion,
  });
  const token = options.token ?? randomBytes(16).toString('hex');
  const bookmarkIntervalMs = options.bookmarkIntervalMs ?? 60_000;
  let expiredMode: ExpiredWatchResponse = options.expiredWatchResponse ?? ExpiredWatchResponse.Event;
  let failures = { count: 0, status: 500 };
  let stalls = 0;
  const stalled = new Set<ServerResponse>();
  const recorded: RecordedRequest[] = [];
  const watches = new Set<WatchConn>();
  const sockets = new Set<Socket>();

  const closeWatch = (conn: WatchConn, destroy: boolean): void => {
    if (!watches.delete(conn)) return;
    for (const t of conn.timers) clearTimeout(t);
    if (destroy) conn.res.socket?.destroy();
    else conn.res.end();
  };

  const send = (conn: WatchConn, type: string, object: KubeApiObject): void => {
    if (conn.paused || !watches.has(conn)) return;
    conn.res.write(`${JSON.stringify({ type, object })}\n`);
  };

  const unsubscribe = store.subscribe((event: StoreEvent) => {
    for (const conn of watches) {
      if (matches(conn, event)) send(conn, event.type, event.object);
    }
  });

  const reply = (res: ServerResponse, code: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(code, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(text),
      'Cache-Control': 'no-cache, private',
    });
    res.end(text);
  };

  const serveWatch = (req: IncomingMessage, res: ServerResponse, url: URL, target: ResourcePath): number => {
    const rvParam = url.searchParams.get('resourceVersion');
    const fromCurrent = rvParam === null || rvParam === '' || rvParam === '0';
    const startRv = fromCurrent ? store.revisionNumber : Number(rvParam);
    if (!Number.isSafeInteger(startRv) || startRv < 0) {
      reply(res, 400, status(400, `invalid resourceVersion ${JSON.stringify(rvParam)}`));
      return 400;
    }
    const backlog = fromCurrent ? [] : store.eventsSince(startRv);
    if (backlog === undefined) {
      const gone = status(410, `too old resource version: ${startRv} (${store.oldestResumableRevision})`, 'Expired');
      if (expiredMode === ExpiredWatchResponse.Http) {
        reply(res, 410, gone);
        return 410;
      }
      res.writeHead(200, {
        'Content-Type': 'application/json',
        'Cache-Control': 'no-cache, private',
        'Transfer-Encoding': 'chunked',
      });
      res.end(`${JSON.stringify({ type: 'ERROR', object: gone })}\n`);
      return 200;
    }
    res.writeHead(200, {
      'Content-Type': 'application/json',
      'Cache-Control': 'no-cache, private',
      'Transfer-Encoding': 'chunked',
    });
    res.flushHeaders();
    req.socket.setNoDelay(true);
    const conn: WatchConn = {
      path: url.pathname,
      resource: target.resource,
      namespace: target.namespace,
      startResourceVersion: String(startRv),
      res,
      timers: [],
      paused: false,
    };
    watches.add(conn);
    res.on('close', () => closeWatch(conn, false));
    if (fromCurrent) {
      for (const object of store.listResource(target.resource, target.namespace)) send(conn, 'ADDED', object);
    } else {
      for (const event of backlog) if (matches(conn, event)) send(conn, event.type, event.object);
    }
    const timeoutSeconds = Number(url.searchParams.get('timeoutSeconds') ?? '0');
    if (Number.isFinite(timeoutSeconds) && timeoutSeconds > 0) {
      conn.timers.push(setTimeout(() => closeWatch(conn, false), timeoutSeconds * 1000));
    }
    if (parseBool(url.searchParams.get('allowWatchBookmarks')) && bookmarkIntervalMs > 0) {
      const bookmark = (): void => {
        const { kind, apiVersion } = target.resource;
        send(conn, 'BOOKMARK', { kind, apiVersion, metadata: { resourceVersion: store.resourceVersion } });
      };
      conn.timers.push(setInterval(bookmark, bookmarkIntervalMs));
    }
    return 200;
  };

  const serveGet = (res: ServerResponse, target: ResourcePath): number => {
    const { resource, namespace, name } = target;
    if (name !== undefined) {
      const object = store.get(resource.kind, namespace, name);
      if (object === undefined) {
        reply(res, 404, status(404, `${resource.plural} "${name}" not found`));
        return 404;
      }
      reply(res, 200, object);
      return 200;
    }
    reply(res, 200, {
      kind: resource.listKind,
      apiVersion: resource.apiVersion,
      metadata: { resourceVersion: store.resourceVersion },
      items: store.listResource(resource, namespace).map(listItem),
    });
    return 200;
  };

  const handle = (req: IncomingMessage, res: ServerResponse): number => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (req.headers.authorization !== `Bearer ${token}`) {
      reply(res, 401, status(401, 'Unauthorized'));
      return 401;
    }
    if (stalls > 0) {
      stalls--;
      stalled.add(res);
      res.on('close', () => stalled.delete(res));
      return 0;
    }
    if (failures.count > 0) {
      failures = { ...failures, count: failures.count - 1 };
      reply(res, failures.status, status(failures.status, 'injected failure'));
      return failures.status;
    }
    if (req.method !== 'GET') {
      reply(res, 405, status(405, `${req.method ?? ''} is not supported by the test API server`));
      return 405;
    }
    const target = parseResourcePath(url.pathname);
    if (target === undefined) {
      reply(res, 404, status(404, `the server could not find the requested resource ${url.pathname}`));
      return 404;
    }
    for (const selector of ['labelSelector', 'fieldSelector']) {
      if (url.searchParams.get(selector)) {
        reply(res, 400, status(400, `${selector} is not supported by the test API server`));
        return 400;
      }
    }
    if (parseBool(url.searchParams.get('watch'))) {
      if (target.name !== undefined) {
        reply(res, 400, status(400, 'watching one object by name is not supported by the test API server'));
        return 400;
      }
      return serveWatch(req, res, url, target);
    }
    return serveGet(res, target);
  };

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const code = handle(req, res);
    const headers: Record<string, string> = {};
    for (const name of ['accept', 'authorization', 'user-agent', 'content-type']) {
      const value = req.headers[name];
      if (typeof value === 'string') headers[name] = value;
    }
    recorded.push({
      method: req.method ?? '',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      watch: parseBool(url.searchParams.get('watch')),
      headers,
      status: code,
      at: Date.now(),
    });
  });

  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(new KubeApiServerError(`cannot listen on 127.0.0.1: ${err.message}`, { cause: err })),
    );
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  let dir: string;
  try {
    dir = await mkdtemp(path.join(tmpdir(), 'kpx-kube-api-'));
  } catch (cause) {
    server.close();
    throw new KubeApiServerError('cannot create the kubeconfig directory', { cause });
  }
  const kubeconfigPath = path.join(dir, 'kubeconfig');
  await writeFile(kubeconfigPath, renderKubeconfig({ server: url, token }), { mode: 0o600 });

  let closed: Promise<void> | undefined;
  return {
    url,
    kubeconfigPath,
    token,
    store,
    requests: () => [...recorded],
    activeWatches: () =>
      [...watches].map((w) => ({ path: w.path, resourceVersion: w.startResourceVersion, paused: w.paused })),
    openConnections: () => sockets.size,
    dropWatches: () => {
      const open = [...watches];
      for (const conn of open) closeWatch(conn, true);
      return open.length;
    },
    pauseWatches: () => {
      for (const conn of watches) conn.paused = true;
      return watches.size;
    },
    expireResourceVersions: () => store.compact(),
    setExpiredWatchResponse: (mode) => {
      expiredMode = mode;
    },
    failRequests: (count, code = 500) => {
      failures = { count, status: code };
    },
    stallRequests: (count) => {
      stalls = count;
    },
    close: () => {
      closed ??= (async () => {
        unsubscribe();
        for (const conn of [...watches]) closeWatch(conn, true);
        for (const res of stalled) res.socket?.destroy();
        const done = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await done;
        await rm(dir, { recursive: true, force: true });
      })();
      return closed;
    },
  };
}

function matches(conn: WatchConn, event: StoreEvent): boolean {
  return event.resource === conn.resource && (conn.namespace === undefined || event.namespace === conn.namespace);
}
