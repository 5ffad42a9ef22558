// Stale UDP conntrack cleanup: the deletions derived from real compiler output before and after a change, the
// conntrack command lines they become, and the cleaner's handling of conntrack's answers (with a fake runner).
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { CommandError, type Command, type CommandResult, type CommandRunner } from '@kpx/kernel';
import { IPFamily, loadClusterState, parseManifests } from '@kpx/model';
import { compileIptables, compileIpvs, defaultIptablesOptions, defaultIpvsOptions, toWire } from '@kpx/compiler';
import { RuleState, diffStates, objectIdOf, type HashedObject } from '@kpx/ruleset';
import { MetricName, createLogger, createMetrics, executorMetrics, type Registry } from '@kpx/telemetry';
import type { AppliedChange } from '../src/backend.js';
import {
  StaleFlows,
  createConntrackCleaner,
  deleteCommand,
  deletionsForChange,
  deletionsForRestore,
  listCommand,
  parseConntrackList,
  staleReplySources,
  type ConntrackDeletion,
} from '../src/conntrack.js';

const examples = new URL('../../../../examples/', import.meta.url).pathname;

const nodesYaml = [1, 2]
  .map(
    (i) => `apiVersion: v1
kind: Node
metadata: { name: n${i}, labels: { kubernetes.io/hostname: n${i} } }
spec: { podCIDR: 10.244.${i}.0/24, podCIDRs: [10.244.${i}.0/24, "fd00:10:244:${i}::/64"] }
status: { addresses: [{ type: InternalIP, address: 10.0.0.1${i} }, { type: InternalIP, address: "fd00::1${i}" }] }
`,
  )
  .join('---\n');

interface SvcOptions {
  readonly endpoints?: readonly string[];
  readonly externalIPs?: readonly string[];
  readonly itp?: 'Local' | 'Cluster';
  readonly type?: 'ClusterIP' | 'LoadBalancer';
  readonly targetPort?: number;
}

/** A dual-protocol DNS service (UDP and TCP 53), endpoints on n1 (10.244.1.x) and n2 (10.244.2.x). */
function dnsYaml(o: SvcOptions = {}): string {
  const type = o.type ?? 'LoadBalancer';
  const lb = type === 'LoadBalancer';
  const target = o.targetPort ?? 8053;
  const svc = `apiVersion: v1
kind: Service
metadata: { name: dns, namespace: e2e }
spec:
  type: ${type}
  clusterIP: 10.96.0.53
  clusterIPs: [10.96.0.53]
  ipFamilies: [IPv4]
  internalTrafficPolicy: ${o.itp ?? 'Cluster'}
  externalIPs: [${(o.externalIPs ?? ['192.0.2.53']).join(', ')}]
  ports:
    - { name: dns, protocol: UDP, port: 53, targetPort: ${target}${lb ? ', nodePort: 30053' : ''} }
    - { name: dns-tcp, protocol: TCP, port: 53, targetPort: ${target}${lb ? ', nodePort: 30054' : ''} }
${lb ? 'status: { loadBalancer: { ingress: [{ ip: 198.51.100.53 }] } }' : ''}
`;
  const eps = o.endpoints ?? ['10.244.1.10', '10.244.2.10'];
  if (eps.length === 0) return svc;
  return `${svc}---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: dns-1, namespace: e2e, labels: { kubernetes.io/service-name: dns } }
addressType: IPv4
ports: [{ name: dns, protocol: UDP, port: ${target} }, { name: dns-tcp, protocol: TCP, port: ${target} }]
endpoints:
${eps.map((ip) => `  - { addresses: [${ip}], nodeName: n${ip.split('.')[2]}, conditions: { ready: true } }`).join('\n')}
`;
}

/** An IPv6 single-stack UDP NodePort service. */
function dns6Yaml(endpoints: readonly string[]): string {
  return `apiVersion: v1
kind: Service
metadata: { name: dns6, namespace: e2e }
spec:
  type: NodePort
  clusterIP: "fd00:96::53"
  clusterIPs: ["fd00:96::53"]
  ipFamilies: [IPv6]
  ports: [{ name: dns, protocol: UDP, port: 53, targetPort: 8053, nodePort: 30063 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: dns6-1, namespace: e2e, labels: { kubernetes.io/service-name: dns6 } }
addressType: IPv6
ports: [{ name: dns, protocol: UDP, port: 8053 }]
endpoints:
${endpoints.map((ip) => `  - { addresses: ["${ip}"], nodeName: n${ip.split(':')[3]}, conditions: { ready: true } }`).join('\n')}
`;
}

function compile(
  yaml: string,
  { node = 'n1', family = IPFamily.IPv4, ipvs = false }: { node?: string; family?: IPFamily; ipvs?: boolean } = {},
): RuleState {
  const { state } = loadClusterState(parseManifests(yaml ? `${nodesYaml}---\n${yaml}` : nodesYaml, 'test.yaml'));
  const rs = ipvs
    ? compileIpvs({ state, nodeName: node, options: defaultIpvsOptions(family) })
    : compileIptables({ state, nodeName: node, options: defaultIptablesOptions(family) });
  return RuleState.from(rs.objects.map(toWire));
}

/** The change the executor would apply from `before` to `after`, with its `previous` map. */
function changeBetween(before: RuleState, after: RuleState): AppliedChange {
  const { upserts, deletes } = diffStates(before.objects, after.objects);
  const previous = new Map<string, HashedObject | undefined>();
  for (const ref of deletes) previous.set(objectIdOf(ref), before.objects.get(objectIdOf(ref)));
  for (const u of upserts) previous.set(u.id, before.objects.get(u.id));
  return { upserts, deletes, previous };
}

function derive(
  before: string,
  after: string,
  opts: { node?: string; family?: IPFamily; ipvs?: boolean } = {},
): ConntrackDeletion[] {
  const a = compile(after, opts);
  return deletionsForChange(opts.family ?? 'IPv4', a, changeBetween(compile(before, opts), a));
}

/** One line per deletion: the conntrack -D for a gone endpoint, `new <frontend> keep <endpoints>` otherwise. */
function show(ds: readonly ConntrackDeletion[]): string[] {
  return ds
    .map((d) =>
      d.kind === StaleFlows.GoneEndpoint
        ? `conntrack ${deleteCommand(d.family, d.frontend, d.endpoint).args.join(' ')}`
        : `new ${d.frontend.ip ?? '*'}:${d.frontend.port} keep ${d.keep.join(',')}`,
    )
    .sort();
}

describe('deriving stale UDP conntrack deletions from a change', () => {
  test('an endpoint removed from a UDP service with endpoints left: its flows on every frontend, not the TCP port', () => {
    const got = show(derive(dnsYaml(), dnsYaml({ endpoints: ['10.244.1.10'] })));
    assert.deepEqual(got, [
      'conntrack -D -f ipv4 -p udp --orig-dst 10.96.0.53 --orig-port-dst 53 --reply-src 10.244.2.10',
      'conntrack -D -f ipv4 -p udp --orig-dst 192.0.2.53 --orig-port-dst 53 --reply-src 10.244.2.10',
      'conntrack -D -f ipv4 -p udp --orig-dst 198.51.100.53 --orig-port-dst 53 --reply-src 10.244.2.10',
      'conntrack -D -f ipv4 -p udp --orig-port-dst 30053 --reply-src 10.244.2.10',
    ]);
  });

  test('IPVS mode: the same deletions from the same change (the conntrack.port duty is the same in every mode)', () => {
    const ipvs = { ipvs: true };
    assert.deepEqual(
      show(derive(dnsYaml(), dnsYaml({ endpoints: ['10.244.1.10'] }), ipvs)),
      show(derive(dnsYaml(), dnsYaml({ endpoints: ['10.244.1.10'] }))),
    );
    assert.equal(derive(dnsYaml(), dnsYaml({ endpoints: ['10.244.1.10'] }), ipvs).length, 4);
    assert.deepEqual(show(derive(dnsYaml({ endpoints: [] }), dnsYaml({ endpoints: ['10.244.2.10'] }), ipvs)), [
      'new *:30053 keep 10.244.2.10',
      'new 10.96.0.53:53 keep 10.244.2.10',
      'new 192.0.2.53:53 keep 10.244.2.10',
      'new 198.51.100.53:53 keep 10.244.2.10',
    ]);
  });

  test('only conntrack.port duties drive the cleanup: a UDP rule without its duty deletes nothing', () => {
    const before = compile(dnsYaml());
    const after = compile(dnsYaml({ endpoints: ['10.244.1.10'] }));
    for (const s of [before, after])
      for (const o of [...s.objects.values()]) if (o.wire.kind === 'conntrack.port') s.delete(o.wire);
    assert.deepEqual(deletionsForChange('IPv4', after, changeBetween(before, after)), []);
  });

  test('the same change on another node (the removed endpoint is remote there too): the same deletions', () => {
    const got = show(derive(dnsYaml(), dnsYaml({ endpoints: ['10.244.2.10'] }), { node: 'n2' }));
    assert.equal(got.length, 4);
    assert.ok(
      got.every((l) => l.endsWith('--reply-src 10.244.1.10')),
      got.join('\n'),
    );
  });

  test('endpoints added only, or only a TCP change: nothing to delete', () => {
    assert.deepEqual(derive(dnsYaml({ endpoints: ['10.244.1.10'] }), dnsYaml()), []);
    // A TCP-only change in the examples (shop/web gets another endpoint).
    const before = compileExamples();
    const after = compileExamples((file, text) =>
      file === 'web.yaml' ? text.replace('10.244.1.10]', '10.244.1.11]') : text,
    );
    assert.notEqual(before.digest, after.digest);
    assert.deepEqual(deletionsForChange('IPv4', after, changeBetween(before, after)), []);
  });

  test('the last endpoint removed (REJECT now): nothing, as kube-proxy leaves a service without endpoints alone', () => {
    assert.deepEqual(derive(dnsYaml({ endpoints: ['10.244.1.10'] }), dnsYaml({ endpoints: [] })), []);
    // The service deleted altogether: nothing either.
    assert.deepEqual(derive(dnsYaml(), ''), []);
  });

  test('a service without endpoints (REJECT) gets one: every flow of each frontend that does not reach it', () => {
    const before = compile(dnsYaml({ endpoints: [] }));
    assert.ok(
      [...before.objects.values()].some(
        (o) => JSON.stringify(o.wire).includes('has no endpoints') && JSON.stringify(o.wire).includes('-j REJECT'),
      ),
      'REJECT rules before',
    );
    const got = show(derive(dnsYaml({ endpoints: [] }), dnsYaml({ endpoints: ['10.244.2.10'] })));
    assert.deepEqual(got, [
      'new *:30053 keep 10.244.2.10',
      'new 10.96.0.53:53 keep 10.244.2.10',
      'new 192.0.2.53:53 keep 10.244.2.10',
      'new 198.51.100.53:53 keep 10.244.2.10',
    ]);
  });

  test('a new UDP service with endpoints, and a new external IP: only the new frontends', () => {
    assert.deepEqual(show(derive('', dnsYaml({ type: 'ClusterIP', externalIPs: [] }))), [
      'new 10.96.0.53:53 keep 10.244.1.10,10.244.2.10',
    ]);
    assert.deepEqual(show(derive(dnsYaml(), dnsYaml({ externalIPs: ['192.0.2.53', '192.0.2.54'] }))), [
      'new 192.0.2.54:53 keep 10.244.1.10,10.244.2.10',
    ]);
  });

  test('an endpoint that only changes its port keeps its flows (kube-proxy compares endpoint IPs)', () => {
    const before = compile(dnsYaml());
    const after = compile(dnsYaml({ targetPort: 9053 }));
    assert.ok(
      changeBetween(before, after).deletes.some((r) => r.key.startsWith('nat/KUBE-SEP-')),
      'the KUBE-SEP chains change',
    );
    assert.deepEqual(deletionsForChange('IPv4', after, changeBetween(before, after)), []);
  });

  test('internalTrafficPolicy Local: the local endpoint goes, the ClusterIP DROPs; its flows still go', () => {
    const yaml = (eps: string[]): string =>
      dnsYaml({ type: 'ClusterIP', externalIPs: [], itp: 'Local', endpoints: eps });
    const after = compile(yaml(['10.244.2.10']));
    assert.ok(
      [...after.objects.values()].some((o) => JSON.stringify(o.wire).includes('-d 10.96.0.53 --dport 53 -j DROP')),
      'DROP for the cluster IP',
    );
    assert.deepEqual(show(derive(yaml(['10.244.1.10', '10.244.2.10']), yaml(['10.244.2.10']))), [
      'conntrack -D -f ipv4 -p udp --orig-dst 10.96.0.53 --orig-port-dst 53 --reply-src 10.244.1.10',
    ]);
  });

  test('IPv6: conntrack -f ipv6 with the addresses as the rules have them', () => {
    const opts = { family: IPFamily.IPv6 };
    assert.deepEqual(
      show(derive(dns6Yaml(['fd00:10:244:1::10', 'fd00:10:244:2::10']), dns6Yaml(['fd00:10:244:1::10']), opts)),
      [
        'conntrack -D -f ipv6 -p udp --orig-dst fd00:96::53 --orig-port-dst 53 --reply-src fd00:10:244:2::10',
        'conntrack -D -f ipv6 -p udp --orig-port-dst 30063 --reply-src fd00:10:244:2::10',
      ],
    );
  });

  test('the examples: kube-dns loses its zone-1 endpoint, node-a falls back to the zone-2 one', () => {
    const before = compileExamples();
    const after = compileExamples((file, text) =>
      file === 'dns.json' ? text.replace(/\{ "addresses": \["10\.244\.1\.2"\][^\n]*\n/, '') : text,
    );
    const got = show(deletionsForChange('IPv4', after, changeBetween(before, after)));
    assert.deepEqual(got, [
      'conntrack -D -f ipv4 -p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --reply-src 10.244.1.2',
    ]);
  });

  test('a restore from an empty state (executor start): every UDP frontend with endpoints is reconciled', () => {
    const state = compileExamples();
    // Every serving endpoint of the port is kept, as kube-proxy's cleanup does, not only those node-a's topology uses.
    assert.deepEqual(show(deletionsForRestore('IPv4', new RuleState(), state)), [
      'new 10.96.0.10:53 keep 10.244.1.2,10.244.3.2',
    ]);
    assert.deepEqual(deletionsForRestore('IPv4', state, state), []);
  });
});

const examplesText = new Map(
  readdirSync(examples)
    .filter((f) => /\.(ya?ml|json)$/.test(f))
    .sort()
    .map((f) => [f, readFileSync(join(examples, f), 'utf8')] as const),
);

/** node-a's IPv4 rules of the examples, each file edited by `edit` first. */
function compileExamples(edit: (file: string, text: string) => string = (_f, t) => t): RuleState {
  const { state } = loadClusterState([...examplesText].flatMap(([f, t]) => parseManifests(edit(f, t), f)));
  return RuleState.from(
    compileIptables({ state, nodeName: 'node-a', options: defaultIptablesOptions(IPFamily.IPv4) }).objects.map(toWire),
  );
}

describe('conntrack output and commands', () => {
  const listing = [
    'udp      17 29 src=10.244.1.11 dst=10.96.0.53 sport=40000 dport=53 [UNREPLIED] src=10.96.0.53 dst=10.244.1.11 sport=53 dport=40000 mark=0 use=1',
    'udp      17 118 src=10.244.1.12 dst=10.96.0.53 sport=40001 dport=53 src=10.244.2.10 dst=10.244.1.12 sport=8053 dport=40001 [ASSURED] mark=0 use=1',
    'udp      17 20 src=10.244.1.13 dst=10.96.0.53 sport=40002 dport=53 src=10.244.9.9 dst=10.244.1.13 sport=8053 dport=40002 mark=0 use=1',
    'udp      17 20 src=10.244.1.13 dst=10.96.0.99 sport=40002 dport=53 src=10.96.0.99 dst=10.244.1.13 sport=53 dport=40002 mark=0 use=1',
    'udp      17 20 src=fd00:10:244:1:0::11 dst=fd00:96::53 sport=40002 dport=53 src=fd00:96:0::53 dst=fd00:10:244:1::11 sport=53 dport=40002 mark=0 use=1',
    '',
  ].join('\n');

  test('parseConntrackList reads the original destination and the reply source', () => {
    const flows = parseConntrackList(listing);
    assert.equal(flows.length, 5);
    assert.deepEqual(flows[1], { origDst: '10.96.0.53', origDstPort: 53, replySrc: '10.244.2.10' });
    assert.deepEqual(flows[4], { origDst: 'fd00:96::53', origDstPort: 53, replySrc: 'fd00:96::53' });
  });

  test('staleReplySources: flows to the frontend that reach none of the endpoints kept', () => {
    const d = {
      kind: StaleFlows.NewFrontend,
      family: 'IPv4',
      servicePort: 'e2e/dns:dns',
      frontend: { ip: '10.96.0.53', port: 53 },
      keep: ['10.244.2.10'],
    } as const;
    assert.deepEqual(staleReplySources(parseConntrackList(listing), d), ['10.244.9.9', '10.96.0.53']);
    assert.deepEqual(staleReplySources(parseConntrackList(listing), { ...d, frontend: { ip: undefined, port: 53 } }), [
      '10.244.9.9',
      '10.96.0.53',
      '10.96.0.99',
      'fd00:96::53',
    ]);
    assert.deepEqual(listCommand('IPv6', { ip: 'fd00:96::53', port: 53 }).args, [
      '-L',
      '-f',
      'ipv6',
      '-p',
      'udp',
      '--orig-dst',
      'fd00:96::53',
      '--orig-port-dst',
      '53',
    ]);
  });
});

/** A runner standing in for `conntrack`: records the commands, answers from a function. */
class FakeRunner implements CommandRunner {
  readonly netns = undefined;
  readonly commands: string[] = [];
  constructor(private readonly answer: (c: Command) => CommandResult) {}
  run(c: Command): Promise<CommandResult> {
    this.commands.push([c.file, ...c.args].join(' '));
    return new Promise((resolve) => resolve(this.answer(c)));
  }
}

const noneDeleted = (c: Command): CommandError =>
  new CommandError({
    command: [c.file, ...c.args].join(' '),
    exitCode: 1,
    stderr: 'conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n',
  });

describe('the conntrack cleaner', () => {
  const logger = createLogger({ name: 'test', level: 'silent' });

  test('gone endpoints: one delete each, counted; "0 flow entries" is no failure', async () => {
    const runner = new FakeRunner((c) => {
      if (c.args.includes('--orig-port-dst') && c.args.includes('30053')) throw noneDeleted(c);
      return { stdout: '', stderr: 'conntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted.\n' };
    });
    const cleaner = createConntrackCleaner({ logger, runner });
    const before = compile(dnsYaml());
    const after = compile(dnsYaml({ endpoints: ['10.244.1.10'] }));
    const r = await cleaner.afterApply('IPv4', after, changeBetween(before, after));
    assert.deepEqual(r, { deletions: 4, commands: 4, deleted: 6, failed: 0 });
    assert.ok(
      runner.commands.every(
        (c) => c.startsWith('conntrack -D -f ipv4 -p udp ') && c.endsWith('--reply-src 10.244.2.10'),
      ),
      runner.commands.join('\n'),
    );
  });

  test('new frontends: listed, then only the stale reply sources deleted', async () => {
    const runner = new FakeRunner((c) => {
      if (c.args[0] === '-L') {
        const vip = c.args.includes('10.96.0.53');
        return {
          stdout: vip
            ? 'udp 17 29 src=10.244.1.11 dst=10.96.0.53 sport=4000 dport=53 [UNREPLIED] src=10.96.0.53 dst=10.244.1.11 sport=53 dport=4000 mark=0 use=1\nudp 17 29 src=10.244.1.12 dst=10.96.0.53 sport=4000 dport=53 src=10.244.2.10 dst=10.244.1.12 sport=8053 dport=4000 mark=0 use=1\n'
            : '',
          stderr: '',
        };
      }
      return { stdout: '', stderr: '1 flow entries have been deleted.\n' };
    });
    const before = compile(dnsYaml({ endpoints: [] }));
    const after = compile(dnsYaml({ endpoints: ['10.244.2.10'] }));
    const r = await createConntrackCleaner({ logger, runner }).afterApply('IPv4', after, changeBetween(before, after));
    assert.equal(runner.commands.filter((c) => c.startsWith('conntrack -L')).length, 4);
    assert.deepEqual(
      runner.commands.filter((c) => c.startsWith('conntrack -D')),
      ['conntrack -D -f ipv4 -p udp --orig-dst 10.96.0.53 --orig-port-dst 53 --reply-src 10.96.0.53'],
    );
    assert.deepEqual(r, { deletions: 4, commands: 5, deleted: 1, failed: 0 });
    // Above the threshold: one listing of the whole family.
    runner.commands.length = 0;
    await createConntrackCleaner({ logger, runner, listAllAbove: 2 }).afterApply(
      'IPv4',
      after,
      changeBetween(before, after),
    );
    assert.deepEqual(
      runner.commands.filter((c) => c.startsWith('conntrack -L')),
      ['conntrack -L -f ipv4 -p udp'],
    );
  });

  test('failures are counted and logged, never thrown; a missing binary too', async () => {
    const before = compile(dnsYaml());
    const after = compile(dnsYaml({ endpoints: ['10.244.1.10'] }));
    const failing = new FakeRunner((c) => {
      throw new CommandError({ command: c.file, exitCode: 2, stderr: 'conntrack: operation failed\n' });
    });
    const r = await createConntrackCleaner({ logger, runner: failing }).afterApply(
      'IPv4',
      after,
      changeBetween(before, after),
    );
    assert.deepEqual(r, { deletions: 4, commands: 4, deleted: 0, failed: 4 });
    const missing = await createConntrackCleaner({
      logger,
      runner: {
        netns: undefined,
        run: () => Promise.reject(new CommandError({ command: 'conntrack', stderr: 'spawn conntrack ENOENT' })),
      },
    }).afterApply('IPv4', after, changeBetween(before, after));
    assert.equal(missing.failed, 4);
    // No UDP change: no command at all.
    const idle = new FakeRunner(() => ({ stdout: '', stderr: '' }));
    await createConntrackCleaner({ logger, runner: idle }).afterApply('IPv4', after, changeBetween(after, after));
    assert.deepEqual(idle.commands, []);
  });

  test('metrics: entries deleted and failed commands, by IP family, on /metrics', async () => {
    const registry = createMetrics();
    const metrics = executorMetrics(registry);
    const value = async (r: Registry, name: string, family: string): Promise<number> => {
      const m = (await r.getMetricsAsJSON()).find((x) => x.name === name);
      return Number(m?.values.find((v) => v.labels.ip_family === family)?.value ?? 0);
    };
    const before = compile(dnsYaml());
    const after = compile(dnsYaml({ endpoints: ['10.244.1.10'] }));
    const deleting = new FakeRunner(() => ({
      stdout: '',
      stderr: 'conntrack v1.4.7 (conntrack-tools): 3 flow entries have been deleted.\n',
    }));
    await createConntrackCleaner({ logger, runner: deleting, metrics }).afterApply(
      'IPv4',
      after,
      changeBetween(before, after),
    );
    assert.equal(
      await value(registry, MetricName.ExecutorConntrackEntriesDeleted, 'IPv4'),
      12,
      'four deletes of three entries',
    );
    assert.equal(await value(registry, MetricName.ExecutorConntrackFailures, 'IPv4'), 0);
    // Half the commands fail, the others find nothing (not a failure, nothing deleted).
    let n = 0;
    const flaky = new FakeRunner((c) => {
      if (n++ % 2 === 0)
        throw new CommandError({ command: c.file, exitCode: 2, stderr: 'conntrack: operation failed\n' });
      throw noneDeleted(c);
    });
    await createConntrackCleaner({ logger, runner: flaky, metrics }).afterApply(
      'IPv4',
      after,
      changeBetween(before, after),
    );
    assert.equal(await value(registry, MetricName.ExecutorConntrackEntriesDeleted, 'IPv4'), 12);
    assert.equal(await value(registry, MetricName.ExecutorConntrackFailures, 'IPv4'), 2);
    assert.equal(await value(registry, MetricName.ExecutorConntrackFailures, 'IPv6'), 0);
    const text = await registry.metrics();
    assert.match(text, /kpx_executor_conntrack_entries_deleted_total\{ip_family="IPv4"\} 12/);
    assert.match(text, /kpx_executor_conntrack_failures_total\{ip_family="IPv4"\} 2/);
  });
});
