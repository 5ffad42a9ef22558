// The chaos schedule: a pure function of (seed, number of changes, number of faults). It interleaves manifest
// changes with faults on a time line (ms from the start of the churn). Every fault has a start and an end step;
// two faults never hold the same target at once (one NATS fault at a time, one controller kill at a time, one
// fault per node), and a node never leaves while a fault holds it. Every fault ends before the schedule does.
import { Prng } from './prng.js';
import {
  DryRunNodePool,
  EndpointState,
  MaxEndpoints,
  MaxSlots,
  NetnsNodes,
  PodNames,
  ServiceType,
  WebService,
  applyChange,
  nodesOf,
  type Change,
  type ChangeKind,
  type ClusterModel,
  type EndpointSpec,
  type ServiceSpec,
} from './model.js';

export const FaultKind = {
  /** SIGKILL the controller; start it again at the end. */
  ControllerKill: 'controller-kill',
  /** SIGKILL an executor; start it again at the end. */
  ExecutorKill: 'executor-kill',
  /** SIGKILL nats-server; restart it on the same store and port at the end. */
  NatsKill: 'nats-kill',
  /** Stop nats-server (SIGTERM) for longer than the controller's publish timeout (5 s); restart it at the end. */
  NatsStop: 'nats-stop',
  /** Cut an executor's NATS and controller connections (its loopback proxies); restore them at the end. */
  ExecutorCut: 'executor-cut',
  /** Make a netns executor's next `failures` iptables-restore --noflush runs fail; disarm at the end. */
  IptablesFail: 'iptables-fail',
} as const;
export type FaultKind = (typeof FaultKind)[keyof typeof FaultKind];

export interface Fault {
  readonly id: number;
  readonly kind: FaultKind;
  /** The node of executor faults; "nats" or "controller" for the others. */
  readonly target: string;
  readonly durationMs: number;
  /** IptablesFail: how many restores fail. */
  readonly failures?: number;
}

export type Action =
  | { readonly type: 'change'; readonly change: Change }
  | { readonly type: 'fault-start'; readonly fault: Fault }
  | { readonly type: 'fault-end'; readonly fault: Fault };

export interface Step {
  /** ms from the start of the churn. */
  readonly at: number;
  readonly action: Action;
}

export interface Schedule {
  readonly seed: number;
  readonly initial: ClusterModel;
  readonly steps: readonly Step[];
  readonly final: ClusterModel;
  readonly changes: number;
  readonly faults: number;
  /** When the last step runs (ms). */
  readonly durationMs: number;
}

export interface ScheduleOptions {
  readonly seed: number;
  readonly changes: number;
  readonly faults: number;
  /** Pause between two steps (ms); default 150–900. */
  readonly gapMs?: readonly [number, number];
}

const FaultWeights: Readonly<Record<FaultKind, number>> = {
  [FaultKind.ExecutorKill]: 25,
  [FaultKind.ExecutorCut]: 20,
  [FaultKind.IptablesFail]: 15,
  [FaultKind.ControllerKill]: 15,
  [FaultKind.NatsKill]: 12,
  [FaultKind.NatsStop]: 8,
};

/** How long each kind of fault lasts (ms). NatsStop outlasts the JetStream publish timeout (5 s). */
const FaultDurations: Readonly<Record<FaultKind, readonly [number, number]>> = {
  [FaultKind.ControllerKill]: [300, 3000],
  [FaultKind.ExecutorKill]: [300, 3000],
  [FaultKind.NatsKill]: [300, 2500],
  [FaultKind.NatsStop]: [6500, 8000],
  [FaultKind.ExecutorCut]: [1500, 6000],
  [FaultKind.IptablesFail]: [3000, 8000],
};

const ChangeWeights: Readonly<Record<ChangeKind, number>> = {
  'endpoint-add': 30,
  'endpoint-remove': 20,
  'endpoint-terminate': 12,
  'service-add': 12,
  'service-delete': 10,
  'node-join': 8,
  'node-leave': 8,
};

const InitialServices = 4;
const InitialDryRunNodes = 3;

export function buildSchedule(options: ScheduleOptions): Schedule {
  const rng = new Prng(options.seed);
  const [gapMin, gapMax] = options.gapMs ?? [150, 900];
  let model = initialModel(rng);
  const initial = model;
  const steps: Step[] = [];
  /** Targets held by a running fault, until when. */
  const busyUntil = new Map<string, number>();
  const busy = (target: string, t: number): boolean => (busyUntil.get(target) ?? -1) >= t;
  let t = 0;
  let changes = 0;
  let faults = 0;
  while (changes < options.changes || faults < options.faults) {
    t += rng.int(gapMin, gapMax);
    const faultsLeft = options.faults - faults;
    const changesLeft = options.changes - changes;
    const wantFault = changesLeft <= 0 || (faultsLeft > 0 && rng.next() < faultsLeft / (faultsLeft + changesLeft));
    if (wantFault) {
      const fault = pickFault(rng, model, faults, (target) => busy(target, t));
      if (fault) {
        busyUntil.set(fault.target, t + fault.durationMs);
        steps.push(
          { at: t, action: { type: 'fault-start', fault } },
          { at: t + fault.durationMs, action: { type: 'fault-end', fault } },
        );
        faults++;
        continue;
      }
      if (changesLeft <= 0) continue; // every target is held: wait for one to end
    }
    const change = pickChange(rng, model, (target) => busy(target, t));
    model = applyChange(model, change);
    steps.push({ at: t, action: { type: 'change', change } });
    changes++;
  }
  // Stable: steps at the same time keep their order of creation.
  steps.sort((a, b) => a.at - b.at);
  return { seed: options.seed, initial, steps, final: model, changes, faults, durationMs: steps.at(-1)?.at ?? 0 };
}

function initialModel(rng: Prng): ClusterModel {
  const services = new Map<string, ServiceSpec>();
  services.set(WebService, {
    name: WebService,
    slot: 0,
    type: ServiceType.ClusterIP,
    endpoints: [
      { pod: 'p1a', state: EndpointState.Ready },
      { pod: 'p2a', state: EndpointState.Ready },
    ],
  });
  for (let slot = 1; slot <= InitialServices; slot++) {
    const s = newService(rng, slot);
    services.set(s.name, s);
  }
  return { services, dryRunNodes: new Set(DryRunNodePool.slice(0, InitialDryRunNodes)) };
}

function newService(rng: Prng, slot: number): ServiceSpec {
  const pods = [...PodNames];
  const endpoints: EndpointSpec[] = [];
  const n = rng.int(1, 3);
  for (let i = 0; i < n; i++) {
    const pod = pods.splice(rng.int(0, pods.length - 1), 1)[0];
    if (pod) endpoints.push({ pod, state: rng.next() < 0.85 ? EndpointState.Ready : EndpointState.NotReady });
  }
  return {
    name: `svc-${slot}`,
    slot,
    type: rng.next() < 0.5 ? ServiceType.ClusterIP : ServiceType.NodePort,
    endpoints,
  };
}

/** A change valid in `model` (the kind is drawn by weight among the kinds possible now). */
function pickChange(rng: Prng, model: ClusterModel, held: (target: string) => boolean): Change {
  const services = [...model.services.values()].sort((a, b) => a.slot - b.slot);
  const notFull = services.filter((s) => s.endpoints.length < MaxEndpoints);
  const withEndpoints = services.filter((s) => s.endpoints.length > 0);
  const withReady = services.filter((s) => s.endpoints.some((e) => e.state === EndpointState.Ready));
  const freeSlots = Array.from({ length: MaxSlots }, (_, i) => i + 1).filter(
    (slot) => !model.services.has(`svc-${slot}`),
  );
  const deletable = services.filter((s) => s.name !== WebService);
  const joinable = DryRunNodePool.filter((n) => !model.dryRunNodes.has(n) && !held(n));
  const leavable = [...model.dryRunNodes].sort().filter((n) => !held(n));
  const possible: Record<ChangeKind, boolean> = {
    'endpoint-add': notFull.length > 0,
    'endpoint-remove': withEndpoints.length > 0,
    'endpoint-terminate': withReady.length > 0,
    'service-add': freeSlots.length > 0,
    'service-delete': deletable.length > 0,
    'node-join': joinable.length > 0,
    'node-leave': leavable.length > 0,
  };
  const kind = rng.weighted(
    Object.fromEntries(Object.entries(ChangeWeights).map(([k, w]) => [k, possible[k as ChangeKind] ? w : 0])) as Record<
      ChangeKind,
      number
    >,
  );
  switch (kind) {
    case 'endpoint-add': {
      const s = rng.pick(notFull);
      const pod = rng.pick(PodNames.filter((p) => !s.endpoints.some((e) => e.pod === p)));
      return {
        kind,
        service: s.name,
        endpoint: { pod, state: rng.next() < 0.85 ? EndpointState.Ready : EndpointState.NotReady },
      };
    }
    case 'endpoint-remove': {
      const s = rng.pick(withEndpoints);
      return { kind, service: s.name, pod: rng.pick(s.endpoints).pod };
    }
    case 'endpoint-terminate': {
      const s = rng.pick(withReady);
      return { kind, service: s.name, pod: rng.pick(s.endpoints.filter((e) => e.state === EndpointState.Ready)).pod };
    }
    case 'service-add':
      return { kind, service: newService(rng, rng.pick(freeSlots)) };
    case 'service-delete':
      return { kind, service: rng.pick(deletable).name };
    case 'node-join':
      return { kind, node: rng.pick(joinable) };
    case 'node-leave':
      return { kind, node: rng.pick(leavable) };
  }
}

/** A fault on a free target, or undefined when every target of every kind is held. */
function pickFault(rng: Prng, model: ClusterModel, id: number, held: (target: string) => boolean): Fault | undefined {
  const executors = nodesOf(model).filter((n) => !held(n));
  const netns = NetnsNodes.filter((n) => !held(n));
  const targets: Record<FaultKind, readonly string[]> = {
    [FaultKind.ControllerKill]: held('controller') ? [] : ['controller'],
    [FaultKind.NatsKill]: held('nats') ? [] : ['nats'],
    [FaultKind.NatsStop]: held('nats') ? [] : ['nats'],
    [FaultKind.ExecutorKill]: executors,
    [FaultKind.ExecutorCut]: executors,
    [FaultKind.IptablesFail]: netns,
  };
  const weights = Object.fromEntries(
    Object.entries(FaultWeights).map(([k, w]) => [k, targets[k as FaultKind].length > 0 ? w : 0]),
  ) as Record<FaultKind, number>;
  if (Object.values(weights).every((w) => w === 0)) return undefined;
  const kind = rng.weighted(weights);
  const [min, max] = FaultDurations[kind];
  return {
    id,
    kind,
    target: rng.pick(targets[kind]),
    durationMs: rng.int(min, max),
    ...(kind === FaultKind.IptablesFail ? { failures: rng.int(1, 3) } : {}),
  };
}

/** One line per step, for logs and for comparing two schedules. */
export function describeStep(step: Step): string {
  const a = step.action;
  const at = `${(step.at / 1000).toFixed(3)}s`;
  if (a.type === 'change') return `${at} change ${JSON.stringify(a.change)}`;
  const f = a.fault;
  return `${at} ${a.type} #${f.id} ${f.kind} ${f.target}${f.failures !== undefined ? ` x${f.failures}` : ''} (${f.durationMs} ms)`;
}
