// Cluster objects from the Kubernetes API: one @kubernetes/client-node 1.4 informer (ListWatch) per kind —
// Services, EndpointSlices, Nodes — delivered as SourceEvents in JSON wire form.
//
// What client-node's ListWatch does by itself (dist/cache.js):
// - lists, then watches from the list's resourceVersion, and keeps the last resourceVersion it saw (events and
//   bookmarks alike, watchHandler);
// - relists after 410 Gone in both forms kube-apiserver uses: an ERROR event with code 410 clears the
//   resourceVersion (watchHandler) and the relist happens when the server then ends the stream
//   (doneHandler(null)); an HTTP 410 reaches doneHandler as an error with statusCode 410, which clears it too;
// - on a relist, calls the delete callbacks for cached objects missing from the list (deleteItems) and the
//   update callbacks for objects whose resourceVersion changed (addOrUpdateObject): no difference is lost.
// What it does not do, added here by handing it our own Watch (its constructor takes one):
// - retry: for any other error (connection refused, a dropped connection — node-fetch's "Premature close" —,
//   an HTTP 5xx, a failed list) doneHandler calls the error callbacks and stops for good. We retry with a
//   bounded exponential backoff (re-watch from the last resourceVersion; relist when a list failed).
// - pace: a stream that ends cleanly is re-watched at once; one that ends at once again and again is backed off.
// - detect a silent watch: watch.js creates AbortSignal.timeout(30000) but then overwrites the request's signal
//   with its own controller's (dist/watch.js lines 28-30), so a watch has no timeout at all, and a connection
//   that stays open but delivers nothing would stall the informer for ever. Every watch here asks for bookmarks
//   (allowWatchBookmarks=true, which ListWatch never sends) so a healthy idle watch still shows life about once
//   a minute, and a watch that delivers nothing — no event, no bookmark — for silentWatchTimeoutMs is
//   abandoned and re-watched from the last resourceVersion (410 → relist as above). Against a server that
//   never sends bookmarks this degrades to a periodic re-watch of idle kinds every silentWatchTimeoutMs: one
//   cheap request, nothing lost. Each watch also asks the server to end it after timeoutSeconds (5-10 min at
//   random, as client-go's reflector does).
// - end a hung request: a watch the server accepted but never answered has no AbortController yet (Watch.watch
//   returns it only with the response), so each watch gets its own view of the kubeconfig that hands us the HTTP
//   agent made for that request; giving up on the watch (silent, or stop()) destroys that agent and so the
//   request. Without it every hung watch would keep a socket open, and stop() could not end it.
// - bound a list: the generated client has no timeout either; each list is aborted after listTimeoutMs.
// - late lines: an aborted watch can still deliver a buffered line; lines from a watch we gave up on are dropped.
//
// Objects: watch events are the parsed JSON (watch.js never deserializes). Lists are made with the generated
// client (it brings the kubeconfig's auth and TLS), but its response body is taken as it came, before the
// client's typed models see it (they drop unknown fields and turn metav1.Time into Dates): see listCallOptions.
// So the ListWatch cache and every event hold plain wire-form JSON; list items get the kind and apiVersion the
// API leaves out of them.
import {
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  ListWatch,
  Observable,
  ResponseContext,
  Watch,
  type KubernetesListObject,
  type KubernetesObject,
  type ObservableMiddleware,
  type RequestContext,
} from '@kubernetes/client-node';
import { Agent } from 'node:http';
import { backoffDelay } from '@kpx/common';
import { Severity, checkObject, formatDiagnostic, type KubeObject } from '@kpx/model';
import { EventType, ObjectKind, type Source, type SourceEvent, type SourceHandler } from './types.js';

export interface SourceLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface KubernetesSourceOptions {
  /** A kubeconfig file. Neither this nor inCluster: client-node's default ($KUBECONFIG, ~/.kube/config, in-cluster). */
  kubeconfigPath?: string;
  /** Use the pod's service account (KUBERNETES_SERVICE_HOST/PORT and /var/run/secrets/kubernetes.io/serviceaccount). */
  inCluster?: boolean;
  /** A watch that delivers no event and no bookmark for this long is restarted (default 5 min). */
  silentWatchTimeoutMs?: number;
  /** timeoutSeconds asked of the server for each watch (default: 300-600 at random, per watch). */
  watchTimeoutSeconds?: number;
  /** A list that has not answered after this long is aborted and retried (default 60 s). */
  listTimeoutMs?: number;
  /** First retry delay after a failed watch or list (default 250 ms); doubles up to retryMaxMs (default 30 s). */
  retryInitialMs?: number;
  retryMaxMs?: number;
  logger?: SourceLogger;
}

export interface KubernetesSource extends Source {
  /** The informer cache of a kind: what the source believes the cluster holds now. */
  list(kind: ObjectKind): KubeObject[];
}

export const DefaultSilentWatchTimeoutMs = 5 * 60_000;
const DefaultListTimeoutMs = 60_000;
const DefaultRetryInitialMs = 250;
const DefaultRetryMaxMs = 30_000;
/** A watch that lived this long, or delivered an event, counts as healthy: its end is re-watched at once. */
const HealthyWatchMs = 1_000;

/** The per-call options of the generated list calls. */
type ListCallOptions = Parameters<CoreV1Api['listNode']>[1];

interface KindSpec {
  readonly kind: ObjectKind;
  readonly apiVersion: string;
  /** The all-namespaces collection path the informer lists and watches. */
  readonly path: string;
  list(options: ListCallOptions): Promise<unknown>;
}

type WatchCallback = (phase: string, apiObj: unknown, watchObj?: unknown) => void;
type WatchDone = (err: unknown) => void;
type WatchParams = Record<string, string | number | boolean | undefined>;

/** One watch request and what we know of it. */
interface WatchAttempt {
  readonly startedAt: number;
  lastActivity: number;
  /** ADDED/MODIFIED/DELETED/BOOKMARK events received. */
  delivered: number;
  /** The object of an ERROR event, if one came. */
  errorEvent: unknown;
  controller: AbortController | undefined;
  /** The request's own HTTP agent (https.Agent and proxy agents extend http.Agent). */
  agent: Agent | undefined;
  timer: NodeJS.Timeout | undefined;
  silent: boolean;
  finished: boolean;
}

/** What the per-kind informers share with the source. */
interface SourceContext {
  readonly silentWatchTimeoutMs: number;
  readonly watchTimeoutSeconds: number | undefined;
  readonly listTimeoutMs: number;
  readonly retryInitialMs: number;
  readonly retryMaxMs: number;
  emit(spec: KindSpec, type: EventType, object: KubernetesObject): void;
  warn(spec: KindSpec, message: string, err?: unknown): void;
  synced(spec: KindSpec): void;
}

/** A list that did not answer within listTimeoutMs. */
class ListTimeoutError extends Error {
  override readonly name = 'ListTimeoutError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A list answered 2xx with a body that is not a list. */
class ListResponseError extends Error {
  override readonly name = 'ListResponseError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * What ListWatch is handed as its Watch: every watch it starts goes to the informer's guard, which makes the
 * request itself (see KindInformer.openWatch).
 */
class GuardedWatch extends Watch {
  constructor(
    config: KubeConfig,
    private readonly guard: KindInformer,
  ) {
    super(config);
  }

  override watch(
    path: string,
    queryParams: WatchParams,
    callback: WatchCallback,
    done: WatchDone,
  ): Promise<AbortController> {
    return this.guard.openWatch(path, queryParams, callback, done);
  }
}

/**
 * The kubeconfig as one watch request sees it: the same cluster and credentials, but the HTTP agent that
 * applyToFetchOptions creates for the request (a new one per call) is handed to `onAgent`. Watch.watch keeps its
 * AbortController to itself until the response headers have come, so destroying that agent is the only way to
 * end a request the server accepted but never answered.
 */
function configForOneRequest(config: KubeConfig, onAgent: (agent: Agent) => void): KubeConfig {
  const scoped = Object.create(config) as KubeConfig;
  scoped.applyToFetchOptions = async (opts) => {
    const init = await config.applyToFetchOptions(opts);
    const agent: unknown = init.agent;
    if (agent instanceof Agent) onAgent(agent);
    return init;
  };
  return scoped;
}

/**
 * Per-call options of a list: the request is tied to `signal` (the generated client has no timeout of its own),
 * and a successful response's body goes to `onBody` as it came. The generated client is then handed an empty
 * object to deserialize: its typed models would drop every field they do not know (a field newer than
 * client-node's models would reach us from watches but not from lists) and turn metav1.Time into Dates.
 */
function listCallOptions(signal: AbortSignal, onBody: (text: string) => void): ListCallOptions {
  const middleware: ObservableMiddleware = {
    pre: (context: RequestContext) => {
      context.setSignal(signal);
      return new Observable(Promise.resolve(context));
    },
    post: (context: ResponseContext) => new Observable(takeBody(context, onBody)),
  };
  return { middleware: [middleware], middlewareMergeStrategy: 'append' };
}

async function takeBody(context: ResponseContext, onBody: (text: string) => void): Promise<ResponseContext> {
  // An error answer stays as it is: the generated client turns it into an ApiException with its body.
  if (context.httpStatusCode < 200 || context.httpStatusCode > 299) return context;
  onBody(await context.body.text());
  const empty = '{}';
  return new ResponseContext(context.httpStatusCode, context.headers, {
    text: () => Promise.resolve(empty),
    binary: () => Promise.resolve(Buffer.from(empty)),
  });
}

/** A list response body → what ListWatch caches: the wire form, with kind and apiVersion on every item. */
function parseList(text: string, spec: KindSpec): KubernetesListObject<KubernetesObject> {
  const list = JSON.parse(text) as Partial<KubernetesListObject<KubernetesObject>>;
  if (typeof list !== 'object' || list === null || !Array.isArray(list.items)) {
    throw new ListResponseError(`the ${spec.kind} list response has no items array`);
  }
  const items = list.items.map((item) => ({ ...item, kind: spec.kind, apiVersion: spec.apiVersion }));
  return {
    ...list,
    apiVersion: list.apiVersion ?? spec.apiVersion,
    kind: list.kind ?? `${spec.kind}List`,
    metadata: list.metadata ?? {},
    items,
  };
}

function isGone(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { statusCode?: unknown; code?: unknown };
  return e.statusCode === 410 || e.code === 410;
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'object' && err !== null) {
    // A Status object (the body of an ERROR watch event).
    const status = err as { code?: unknown; reason?: unknown; message?: unknown };
    const text = (v: unknown): string => (typeof v === 'string' || typeof v === 'number' ? String(v) : '');
    if (status.code !== undefined) return `${text(status.code)} ${text(status.reason)}: ${text(status.message)}`;
    return JSON.stringify(err);
  }
  return String(err);
}

/** One kind: a ListWatch, the guard around its watches, and its retries. */
class KindInformer {
  readonly informer: ListWatch<KubernetesObject>;
  private hasSynced = false;
  private stopping = false;
  /** Consecutive failed watches and lists (the exponent of the retry delay). */
  private failures = 0;
  /** Consecutive watches refused with 410 right after a relist. */
  private goneStreak = 0;
  private readonly attempts = new Set<WatchAttempt>();
  private readonly lists = new Set<AbortController>();
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    readonly spec: KindSpec,
    private readonly config: KubeConfig,
    private readonly ctx: SourceContext,
  ) {
    this.informer = new ListWatch<KubernetesObject>(
      spec.path,
      new GuardedWatch(config, this),
      () => this.list(),
      false,
    );
    this.informer.on('add', (obj) => ctx.emit(spec, EventType.Upsert, obj));
    this.informer.on('update', (obj) => ctx.emit(spec, EventType.Upsert, obj));
    this.informer.on('delete', (obj) => ctx.emit(spec, EventType.Delete, obj));
    // Only a failed list gets here: the guard hands ListWatch no watch error but 410.
    this.informer.on('error', (err?: unknown) => this.listFailed(err));
  }

  start(): void {
    this.informer.start().catch((err: unknown) => this.listFailed(err));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    await this.informer.stop();
    for (const attempt of this.attempts) this.finish(attempt);
    for (const list of this.lists) list.abort();
    this.lists.clear();
  }

  /** Called by GuardedWatch for every watch ListWatch starts; ListWatch has just applied a list when it first calls. */
  async openWatch(
    path: string,
    queryParams: WatchParams,
    callback: WatchCallback,
    done: WatchDone,
  ): Promise<AbortController> {
    if (this.stopping) return abortedController();
    if (!this.hasSynced) {
      this.hasSynced = true;
      this.ctx.synced(this.spec);
    }
    const now = Date.now();
    const attempt: WatchAttempt = {
      startedAt: now,
      lastActivity: now,
      delivered: 0,
      errorEvent: undefined,
      controller: undefined,
      agent: undefined,
      timer: undefined,
      silent: false,
      finished: false,
    };
    this.attempts.add(attempt);
    this.armSilenceGuard(attempt, done);
    const params: WatchParams = {
      ...queryParams,
      allowWatchBookmarks: true,
      timeoutSeconds: this.ctx.watchTimeoutSeconds ?? 300 + Math.floor(Math.random() * 300),
    };
    const onEvent: WatchCallback = (phase, obj, raw) => {
      if (attempt.finished) return; // a buffered line from a watch we gave up on
      attempt.lastActivity = Date.now();
      if (phase === 'ERROR') attempt.errorEvent = obj;
      else {
        attempt.delivered++;
        this.failures = 0;
        this.goneStreak = 0;
      }
      // ListWatch's watchHandler is async: keep its rejections (a malformed object) from going unhandled.
      const result: unknown = callback(phase, obj, raw);
      if (result instanceof Promise)
        result.catch((err: unknown) => this.ctx.warn(this.spec, `watch event ${phase} could not be applied`, err));
    };
    const watch = new Watch(
      configForOneRequest(this.config, (agent) => {
        attempt.agent = agent;
        if (attempt.finished) agent.destroy(); // given up while the credentials were being prepared
      }),
    );
    let controller: AbortController;
    try {
      controller = await watch.watch(path, params, onEvent, (err) => this.watchEnded(attempt, err, done));
    } catch (err) {
      this.watchEnded(attempt, err, done);
      return abortedController();
    }
    attempt.controller = controller;
    // Given up (silent while connecting, or stopping) before the response came: close it now.
    if (attempt.finished) controller.abort();
    return controller;
  }

  private armSilenceGuard(attempt: WatchAttempt, done: WatchDone): void {
    const limit = this.ctx.silentWatchTimeoutMs;
    const check = (): void => {
      if (attempt.finished) return;
      const idle = Date.now() - attempt.lastActivity;
      if (idle < limit) {
        attempt.timer = setTimeout(check, limit - idle);
        return;
      }
      attempt.silent = true;
      const controller = attempt.controller;
      this.watchEnded(attempt, undefined, done);
      controller?.abort();
    };
    attempt.timer = setTimeout(check, limit);
  }

  /** The one place a watch ends: decides whether ListWatch hears of it, when, and how. */
  private watchEnded(attempt: WatchAttempt, err: unknown, done: WatchDone): void {
    if (attempt.finished) return;
    this.finish(attempt);
    if (this.stopping) return;
    const kind = this.spec.kind;
    if (attempt.silent) {
      this.failures = 0;
      this.ctx.warn(
        this.spec,
        `${kind} watch delivered no event or bookmark for ${this.ctx.silentWatchTimeoutMs} ms; restarting it`,
      );
      done(null);
      return;
    }
    const healthy = attempt.delivered > 0 || Date.now() - attempt.startedAt >= HealthyWatchMs;
    if (isGone(err) || isGone(attempt.errorEvent)) {
      // ListWatch has cleared its resourceVersion (watchHandler for the event, doneHandler for the HTTP 410):
      // relist at once, unless the watch after the previous relist was refused with 410 straight away too.
      if (healthy) this.goneStreak = 0;
      const delay = this.goneStreak === 0 ? 0 : this.backoff(this.goneStreak);
      this.goneStreak++;
      this.ctx.warn(
        this.spec,
        `${kind} watch: resourceVersion expired (410 Gone); relisting${delay ? ` in ${delay} ms` : ''}`,
        err ?? attempt.errorEvent,
      );
      this.after(delay, () => done(err ?? null));
      return;
    }
    if ((err === null || err === undefined) && attempt.errorEvent === undefined && healthy) {
      this.failures = 0;
      this.goneStreak = 0;
      done(null); // the server ended the watch (timeoutSeconds): resume from the last resourceVersion
      return;
    }
    const delay = this.backoff(++this.failures);
    const why =
      err !== null && err !== undefined
        ? `failed: ${describe(err)}`
        : attempt.errorEvent !== undefined
          ? `got ERROR ${describe(attempt.errorEvent)}`
          : 'ended at once';
    this.ctx.warn(this.spec, `${kind} watch ${why}; watching again in ${delay} ms`, err ?? attempt.errorEvent);
    this.after(delay, () => done(null));
  }

  private listFailed(err: unknown): void {
    if (this.stopping) return;
    const delay = this.backoff(++this.failures);
    this.ctx.warn(this.spec, `${this.spec.kind} list failed: ${describe(err)}; listing again in ${delay} ms`, err);
    this.after(delay, () => this.start());
  }

  private async list(): Promise<KubernetesListObject<KubernetesObject>> {
    const abort = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, this.ctx.listTimeoutMs);
    this.lists.add(abort);
    let body: string | undefined;
    try {
      await this.spec.list(listCallOptions(abort.signal, (text) => (body = text)));
      if (body === undefined) throw new ListResponseError(`the ${this.spec.kind} list response had no body`);
      const list = parseList(body, this.spec);
      this.failures = 0;
      return list;
    } catch (err) {
      if (timedOut) throw new ListTimeoutError(`no answer within ${this.ctx.listTimeoutMs} ms`, { cause: err });
      throw err;
    } finally {
      clearTimeout(timer);
      this.lists.delete(abort);
    }
  }

  /** The delay before the n-th consecutive retry (n >= 1): retryInitialMs doubling up to retryMaxMs. */
  private backoff(n: number): number {
    return backoffDelay(n, { initialMs: this.ctx.retryInitialMs, maxMs: this.ctx.retryMaxMs });
  }

  private after(delayMs: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.stopping) fn();
    }, delayMs);
    this.timers.add(timer);
  }

  private finish(attempt: WatchAttempt): void {
    attempt.finished = true;
    clearTimeout(attempt.timer);
    this.attempts.delete(attempt);
    attempt.controller?.abort();
    // Before the response headers there is no controller yet: ending the agent ends the pending request.
    attempt.agent?.destroy();
  }
}

function abortedController(): AbortController {
  const controller = new AbortController();
  controller.abort();
  return controller;
}

function loadKubeConfig(options: KubernetesSourceOptions): KubeConfig {
  const config = new KubeConfig();
  if (options.inCluster) config.loadFromCluster();
  else if (options.kubeconfigPath !== undefined) config.loadFromFile(options.kubeconfigPath);
  else config.loadFromDefault();
  return config;
}

function kindSpecs(config: KubeConfig): KindSpec[] {
  const core = config.makeApiClient(CoreV1Api);
  const discovery = config.makeApiClient(DiscoveryV1Api);
  return [
    {
      kind: ObjectKind.Service,
      apiVersion: 'v1',
      path: '/api/v1/services',
      list: (o) => core.listServiceForAllNamespaces({}, o),
    },
    {
      kind: ObjectKind.EndpointSlice,
      apiVersion: 'discovery.k8s.io/v1',
      path: '/apis/discovery.k8s.io/v1/endpointslices',
      list: (o) => discovery.listEndpointSliceForAllNamespaces({}, o),
    },
    { kind: ObjectKind.Node, apiVersion: 'v1', path: '/api/v1/nodes', list: (o) => core.listNode({}, o) },
  ];
}

/** A Source reading Services, EndpointSlices and Nodes from the Kubernetes API. */
export function createKubernetesSource(options: KubernetesSourceOptions = {}): KubernetesSource {
  const config = loadKubeConfig(options);
  const logger = options.logger;
  let handler: SourceHandler | undefined;
  let stopped = false;
  const synced = new Set<ObjectKind>();

  const warn = (spec: KindSpec, message: string, err?: unknown): void => {
    if (stopped) return;
    logger?.warn({ kind: spec.kind, err }, message);
    try {
      handler?.onWarning?.(message, err);
    } catch (cause) {
      logger?.warn({ err: cause }, 'the source handler threw in onWarning');
    }
  };

  const ctx: SourceContext = {
    silentWatchTimeoutMs: options.silentWatchTimeoutMs ?? DefaultSilentWatchTimeoutMs,
    watchTimeoutSeconds: options.watchTimeoutSeconds,
    listTimeoutMs: options.listTimeoutMs ?? DefaultListTimeoutMs,
    retryInitialMs: options.retryInitialMs ?? DefaultRetryInitialMs,
    retryMaxMs: options.retryMaxMs ?? DefaultRetryMaxMs,
    emit(spec, type, object) {
      if (stopped || handler === undefined) return;
      const wire: KubeObject =
        object.kind === spec.kind && object.apiVersion === spec.apiVersion
          ? object
          : { ...object, kind: spec.kind, apiVersion: spec.apiVersion };
      let eventType = type;
      if (type === EventType.Upsert) {
        // The loader's checks, as for a manifest: an object the API server should never have admitted (or that
        // a newer API accepts and kpx cannot read) is reported and handled as gone, so no earlier version of it
        // stays programmed.
        const checked = checkObject(wire);
        if (!checked.ok) {
          for (const d of checked.diagnostics)
            if (d.severity === Severity.Error) warn(spec, `${formatDiagnostic(d)}; handled as deleted`);
          eventType = EventType.Delete;
        }
      }
      const event: SourceEvent = { kind: spec.kind, type: eventType, object: wire, observedAt: Date.now() };
      try {
        handler.onEvent(event);
      } catch (err) {
        logger?.warn({ kind: spec.kind, err }, 'the source handler threw in onEvent');
      }
    },
    warn,
    synced(spec) {
      if (stopped || synced.has(spec.kind)) return;
      synced.add(spec.kind);
      logger?.info({ kind: spec.kind }, `${spec.kind} informer synced`);
      if (synced.size === informers.length) {
        try {
          handler?.onSynced();
        } catch (err) {
          logger?.warn({ err }, 'the source handler threw in onSynced');
        }
      }
    },
  };
  const informers = kindSpecs(config).map((spec) => new KindInformer(spec, config, ctx));

  return {
    start(h: SourceHandler): Promise<void> {
      if (handler !== undefined || stopped) return Promise.reject(new Error('a Kubernetes source starts once'));
      handler = h;
      for (const informer of informers) informer.start();
      return Promise.resolve();
    },
    async stop(): Promise<void> {
      if (stopped) return;
      stopped = true;
      await Promise.all(informers.map((i) => i.stop()));
    },
    list(kind: ObjectKind): KubeObject[] {
      const informer = informers.find((i) => i.spec.kind === kind);
      return informer === undefined ? [] : informer.informer.list().map((o) => ({ ...o }));
    },
  };
}
