// kpx audit: what should each node have, does it, and why — from the controller (status, rules) and JetStream
// (the audit log, the generation that produced a rule).
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { stringify } from 'yaml';
import type { RuleObject, StatusResponse } from '@kpx/proto';
import { IptablesState, isIptablesObject, planFullRestore, ruleTarget } from '@kpx/kernel';
import { replayTo } from '@kpx/replay';
import {
  type AuditRecord,
  ControllerClient,
  type FetchedSnapshot,
  readAudit,
  readDeltas,
  type TlsMaterial,
  type Verifier,
} from '@kpx/transport';
import { UsageError } from './errors.js';
import {
  generationOf,
  IpFamilyFlag,
  ipFamilyOf,
  OutputFlag,
  OutputFormat,
  outputFormat,
  parseDuration,
  parseFlags,
} from './flags.js';
import { formatTable, shortDigest } from './format.js';
import type { Io } from './io.js';
import { fetchStatus } from './status.js';
import { CLIENT_TLS_USAGE, clientTls, clientTlsOptions } from './tls-flags.js';
import {
  connectOperator,
  loadVerifier,
  NatsAuthFlags,
  NatsAuthUsage,
  VerifyFlags,
  VerifyUsage,
} from './security-flags.js';

export const AUDIT_USAGE = `usage: kpx audit --controller HOST:PORT [--node N] [-o table|json|yaml]
       kpx audit --controller HOST:PORT --node N --rules [--ip-family ipv4|ipv6]
       kpx audit --controller HOST:PORT --nats URL --node N --explain TARGET [-o table|json]
       kpx audit --nats URL --node N --generation G [-o table|json]
       kpx audit log --nats URL [--service NS/NAME] [--node N] [--since DURATION] [-o table|json]

  (default)          per node and family: desired generation and digest, acked, the kernel's digest, in sync,
                     drift, last error. -o json: {"nodes":[{"node","ipFamily","desiredGeneration","desiredDigest",
                     "ackedGeneration","ackedDigest","actualDigest","inSync","drift","driftRepairs","lastError"}]}
  --rules            the node's desired rules, as iptables-restore input
  --explain TARGET   which Service / EndpointSlice (namespace/name, resourceVersion) and which generation produced
                     TARGET on the node: a chain (KUBE-SVC-…, nat/KUBE-SERVICES), a ClusterIP:port, or rule text
  --generation G     the node's desired digest at generation G, rebuilt from JetStream (the controller need not run)
  log                the audit log: every generation with its causes, nodes and bytes, and the drift and failures
                     executors reported; --since 1h, --service NS/NAME, --node N narrow it

with a controller serving mTLS (an operator's certificate: any CN but system:node:*):
${CLIENT_TLS_USAGE}
${VerifyUsage}
${NatsAuthUsage}`;

/** The stable JSON of `kpx audit -o json`. */
export function auditJson(res: StatusResponse): { nodes: unknown[] } {
  return {
    nodes: res.nodes.map((n) => ({
      node: n.node,
      ipFamily: n.ipFamily,
      desiredGeneration: n.desiredGeneration,
      desiredDigest: n.desiredDigest,
      ackedGeneration: n.ackedGeneration,
      ackedDigest: n.ackedDigest,
      actualDigest: n.actualDigest,
      inSync: n.inSync && (n.actualDigest === '' || n.actualDigest === n.desiredDigest),
      drift: n.lastDrift,
      driftRepairs: n.driftRepairs,
      lastError: n.lastError,
    })),
  };
}

async function snapshotOf(
  address: string,
  node: string,
  family: string,
  tls: TlsMaterial | undefined,
): Promise<FetchedSnapshot> {
  const client = new ControllerClient(address, { deadlineMs: 60_000, ...(tls ? { tls } : {}) });
  try {
    const snap = await client.snapshot(node, 'iptables', family);
    if (!snap) throw new Error(`the controller has no ${family} rules for node ${node}`);
    return snap;
  } finally {
    client.close();
  }
}

/** Chains of one service port, named by kube-proxy's hash of it: they belong to the port whose fragment jumps in. */
const ServicePortChain = /^KUBE-(SVC|SVL|EXT|FW|SEP)-/;

/**
 * The service port (`ns/name:port/PROTOCOL`) each object of a node's rules belongs to, by id, from object keys:
 * the owner in the key of a fragment (`table/CHAIN/OWNER`), of set entries (`SET/OWNER`) and of a conntrack.port
 * duty; a port's own chains (KUBE-SVC/SVL/EXT/FW/SEP) get the owner of the fragment that jumps into them,
 * following jumps. Objects of no single port (node-wide chains, IPVS virtual servers) have none.
 */
export function ownersOf(objects: readonly RuleObject[]): Map<string, string> {
  const owners = new Map<string, string>();
  const chains = new Map<string, RuleObject>();
  const id = (o: { kind: string; key: string }): string => `${o.kind}\u0000${o.key}`;
  for (const o of objects) {
    const p = o.payload;
    if (p?.$case === 'iptablesChain') chains.set(`${p.value.table}/${p.value.name}`, o);
  }
  const claim = (table: string, rules: readonly string[], owner: string): void => {
    const queue = [...rules];
    for (let r = queue.pop(); r !== undefined; r = queue.pop()) {
      const target = ruleTarget(r);
      const chain =
        target !== undefined && ServicePortChain.test(target) ? chains.get(`${table}/${target}`) : undefined;
      if (chain?.payload?.$case !== 'iptablesChain' || owners.has(id(chain))) continue;
      owners.set(id(chain), owner);
      queue.push(...chain.payload.value.rules);
    }
  };
  for (const o of objects) {
    const p = o.payload;
    if (p?.$case === 'iptablesRules') {
      const owner = o.key.split('/').slice(2).join('/');
      owners.set(id(o), owner);
      claim(p.value.table, p.value.rules, owner);
    } else if (p?.$case === 'ipsetEntries') owners.set(id(o), o.key.slice(p.value.set.length + 1));
    else if (p?.$case === 'conntrackPort') owners.set(id(o), o.key);
  }
  return owners;
}

const rulesOf = (o: RuleObject): string[] => {
  const p = o.payload;
  if (p?.$case === 'iptablesChain') return p.value.rules;
  if (p?.$case === 'iptablesRules') return p.value.rules;
  if (p?.$case === 'iptablesJump') return [p.value.rule];
  return [];
};

/** Objects of the node matching TARGET: a chain name, `table/CHAIN`, `IP:port`, or a piece of rule text. */
export function matchTarget(objects: readonly RuleObject[], target: string): RuleObject[] {
  const ipPort = /^\[?([0-9a-fA-F:.]+?)\]?:(\d+)$/.exec(target);
  if (ipPort && (target.includes('.') || target.startsWith('['))) {
    const [, ip, port] = ipPort;
    const dest = new RegExp(`-d ${ip!.replace(/[.]/g, '\\.')}(/(32|128))? .*--dport ${port}( |$)`);
    return objects.filter((o) => rulesOf(o).some((r) => dest.test(r)));
  }
  if (/^(KUBE|kube)-|^(nat|filter)\//.test(target)) {
    const chain = target.includes('/') ? target : undefined;
    return objects.filter((o) => {
      const p = o.payload;
      const name =
        p?.$case === 'iptablesChain'
          ? p.value.name
          : p?.$case === 'iptablesRules'
            ? p.value.chain
            : p?.$case === 'iptablesJump'
              ? p.value.target
              : '';
      const table =
        p?.$case === 'iptablesChain' || p?.$case === 'iptablesRules' || p?.$case === 'iptablesJump'
          ? p.value.table
          : '';
      return chain ? `${table}/${name}` === chain || o.key === chain : name === target;
    });
  }
  return objects.filter((o) => rulesOf(o).some((r) => r.includes(target)));
}

interface Explanation {
  kind: string;
  key: string;
  owner: string;
  generation: number;
  snapshot: boolean;
  causes: { kind: string; namespace: string; name: string; resourceVersion: string }[];
}

/** For each matched object: the newest retained delta of the node that wrote it, and that delta's causes. */
async function explain(
  js: JetStreamClient,
  node: string,
  family: string,
  matched: readonly RuleObject[],
  owners: ReadonlyMap<string, string>,
  verifier: Verifier | undefined,
): Promise<Explanation[]> {
  const ownerOf = (o: RuleObject): string => owners.get(`${o.kind}\u0000${o.key}`) ?? '';
  const wanted = new Map(matched.map((o) => [`${o.kind}\u0000${o.key}`, o]));
  const found = new Map<string, Explanation>();
  for await (const rec of readDeltas(js, node, { ipFamily: family, ...(verifier ? { verifier } : {}) })) {
    const d = rec.delta;
    const hit = (kind: string, key: string): void => {
      const id = `${kind}\u0000${key}`;
      const o = wanted.get(id);
      if (o)
        found.set(id, {
          kind,
          key,
          owner: ownerOf(o),
          generation: d.generation,
          snapshot: d.snapshot,
          causes: d.cause.map((c) => ({ ...c })),
        });
    };
    if (d.snapshot) for (const o of wanted.values()) hit(o.kind, o.key);
    else for (const u of d.upserts) hit(u.kind, u.key);
  }
  return matched.map(
    (o) =>
      found.get(`${o.kind}\u0000${o.key}`) ?? {
        kind: o.kind,
        key: o.key,
        owner: ownerOf(o),
        generation: 0,
        snapshot: false,
        causes: [],
      },
  );
}

const fmtCauses = (
  cs: readonly { kind: string; namespace: string; name: string; resourceVersion: string }[],
): string =>
  cs.length === 0
    ? '-'
    : cs
        .map(
          (c) =>
            `${c.kind} ${c.namespace ? `${c.namespace}/` : ''}${c.name}${c.resourceVersion ? `@${c.resourceVersion}` : ''}`,
        )
        .join(', ');

function matchesService(r: AuditRecord, service: string): boolean {
  if (r.type !== 'generation') return false;
  return (
    r.services.includes(service) || r.causes.some((c) => c.kind === 'Service' && `${c.namespace}/${c.name}` === service)
  );
}

function formatRecord(r: AuditRecord): string {
  if (r.type === 'generation') {
    const nodes =
      r.nodes.length === r.nodesTotal
        ? r.nodes.map((n) => `${n.node}/${n.ipFamily}${n.snapshot ? '(snapshot)' : ''}`).join(' ')
        : `${r.nodesTotal} nodes`;
    const more = r.causesTotal > r.causes.length ? ` (+${r.causesTotal - r.causes.length} more)` : '';
    return `${r.time}  generation ${r.generation}  ${r.bytes} B  causes: ${fmtCauses(r.causes)}${more}  nodes: ${nodes}\n`;
  }
  return `${r.time}  ${r.type} on ${r.node}/${r.ipFamily} at generation ${r.generation}: ${r.details.join('; ')}\n`;
}

export async function auditCommand(argv: readonly string[], io: Io): Promise<number> {
  const isLog = argv[0] === 'log';
  const values = parseFlags(
    isLog ? argv.slice(1) : argv,
    {
      controller: { type: 'string' },
      nats: { type: 'string' },
      node: { type: 'string', default: '' },
      generation: { type: 'string' },
      rules: { type: 'boolean' },
      explain: { type: 'string' },
      service: { type: 'string' },
      since: { type: 'string' },
      ...IpFamilyFlag,
      ...OutputFlag,
      ...clientTlsOptions,
      ...NatsAuthFlags,
      ...VerifyFlags,
    },
    AUDIT_USAGE,
    io,
  );
  if (!values) return 0;
  const format = outputFormat(values.output, [OutputFormat.Table, OutputFormat.Json, OutputFormat.Yaml]);
  const family = ipFamilyOf(values['ip-family']);
  const node = values.node;
  const needs = (flag: 'controller' | 'nats' | 'node', why: string): string => {
    const v = values[flag];
    if (!v) throw new UsageError(`${why} needs --${flag}\n${AUDIT_USAGE}`);
    return v;
  };

  if (isLog) {
    const nc = await connectOperator(needs('nats', 'kpx audit log'), values, 'kpx-audit');
    try {
      const since =
        values.since !== undefined ? new Date(Date.now() - parseDuration(values.since, '--since')) : undefined;
      const out: AuditRecord[] = [];
      for await (const e of readAudit(jetstream(nc), since ? { since } : {})) {
        const r = e.record;
        if (values.service && !matchesService(r, values.service)) continue;
        if (node && (r.type === 'generation' ? !r.nodes.some((n) => n.node === node) : r.node !== node)) continue;
        if (format === 'table') io.stdout(formatRecord(r));
        else out.push(r);
      }
      if (format === 'json') io.stdout(`${JSON.stringify({ records: out }, null, 2)}\n`);
      if (format === 'yaml') io.stdout(stringify({ records: out }));
      return 0;
    } finally {
      await nc.close();
    }
  }

  const g = generationOf(values.generation, '--generation');
  if (g !== undefined) {
    const verifier = await loadVerifier(values['verify-keys']);
    const nc = await connectOperator(needs('nats', '--generation'), values, 'kpx-audit');
    try {
      const r = await replayTo(jetstream(nc), { node: needs('node', '--generation'), family, to: g, verifier });
      const j = {
        node: r.node,
        ipFamily: r.family,
        generation: r.generation,
        digest: r.digest,
        objects: r.state.objects.size,
      };
      io.stdout(
        format === 'table'
          ? `node ${j.node} ${j.ipFamily} at generation ${g}: state of generation ${j.generation}, digest ${j.digest}, ${j.objects} objects\n`
          : format === 'json'
            ? `${JSON.stringify(j, null, 2)}\n`
            : stringify(j),
      );
      return 0;
    } finally {
      await nc.close();
    }
  }

  const controller = needs('controller', 'kpx audit');
  const tls = clientTls(values, io);
  if (values.rules) {
    const snap = await snapshotOf(controller, needs('node', '--rules'), family, tls);
    io.stdout(`# node ${node} ${family} generation ${snap.generation} digest ${snap.digest}\n`);
    // Rules only: the state also holds node duties (healthcheck.service objects).
    io.stdout(planFullRestore(IptablesState.from(snap.objects.filter(isIptablesObject)), new Map()).text);
    return 0;
  }
  if (values.explain !== undefined) {
    const target = values.explain;
    const snap = await snapshotOf(controller, needs('node', '--explain'), family, tls);
    const matched = matchTarget(snap.objects, target);
    if (matched.length === 0) {
      io.stderr(
        `kpx: nothing in node ${node}'s ${family} rules (generation ${snap.generation}) matches ${JSON.stringify(target)}\n`,
      );
      return 1;
    }
    const nc = await connectOperator(needs('nats', '--explain'), values, 'kpx-audit');
    try {
      const ex = await explain(
        jetstream(nc),
        node,
        family,
        matched,
        ownersOf(snap.objects),
        await loadVerifier(values['verify-keys']),
      );
      if (format === 'table') {
        for (const e of ex) {
          io.stdout(
            `${e.kind} ${e.key}\n  service port: ${e.owner || '-'}\n  written by generation ${e.generation || '? (older than the retained deltas)'}${e.snapshot ? " (a snapshot: the node's initial state)" : ''}\n  causes: ${fmtCauses(e.causes)}\n`,
          );
        }
      } else {
        const j = { node, ipFamily: family, generation: snap.generation, target, objects: ex };
        io.stdout(format === 'json' ? `${JSON.stringify(j, null, 2)}\n` : stringify(j));
      }
      return 0;
    } finally {
      await nc.close();
    }
  }
  const res = await fetchStatus(controller, node, tls);
  const j = auditJson(res);
  if (format === 'json') io.stdout(`${JSON.stringify(j, null, 2)}\n`);
  else if (format === 'yaml') io.stdout(stringify(j));
  else {
    const rows = [
      [
        'NODE',
        'FAMILY',
        'DESIRED',
        'DIGEST',
        'ACKED',
        'ACKED-DIGEST',
        'KERNEL-DIGEST',
        'IN-SYNC',
        'DRIFT-REPAIRS',
        'LAST-DRIFT',
        'LAST-ERROR',
      ],
    ];
    for (const n of res.nodes) {
      rows.push([
        n.node,
        n.ipFamily,
        String(n.desiredGeneration),
        shortDigest(n.desiredDigest),
        String(n.ackedGeneration),
        shortDigest(n.ackedDigest),
        shortDigest(n.actualDigest),
        n.inSync ? 'yes' : 'no',
        String(n.driftRepairs),
        n.lastDrift.slice(0, 2).join('; ') || '-',
        n.lastError || '-',
      ]);
    }
    io.stdout(formatTable(rows));
  }
  return res.nodes.every((n) => n.inSync) ? 0 : 3;
}
