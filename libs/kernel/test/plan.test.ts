// Planning without a kernel: the transactions planDelta and planFullRestore write, read-back splitting, and the
// applier's commands against a fake runner. The kernel tests (iptables-kernel.test.ts) are the real proof.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RuleObject } from '@kpx/proto';
import { digestOf } from '@kpx/ruleset';
import {
  CommandError,
  InvalidRuleObjectError,
  IptablesRestoreError,
  IptablesState,
  createIptablesApplier,
  diffActual,
  parseSave,
  planDelta,
  planFullRestore,
  readBackObjects,
  ruleTarget,
  splitArgs,
  type Command,
  type CommandRunner,
} from '../src/index.js';

const chain = (table: string, name: string, rules: string[]): RuleObject => ({
  kind: 'iptables.chain',
  key: `${table}/${name}`,
  payload: { $case: 'iptablesChain', value: { table, name, rules } },
});
const frag = (table: string, name: string, owner: string, rules: string[], position = 0): RuleObject => ({
  kind: 'iptables.rules',
  key: `${table}/${name}/${owner}`,
  payload: { $case: 'iptablesRules', value: { table, chain: name, rules, position } },
});
const jump = (
  table: string,
  builtin: string,
  target: string,
  rule: string,
  prepend = true,
  position = 0,
): RuleObject => ({
  kind: 'iptables.jump',
  key: `${table}/${builtin}/${target}`,
  payload: { $case: 'iptablesJump', value: { table, chain: builtin, target, rule, prepend, position } },
});

const SVC_A = '-m comment --comment "ns/a cluster IP" -m tcp -p tcp -d 10.96.0.1 --dport 80 -j KUBE-SVC-A';
const SVC_B = '-m comment --comment "ns/b cluster IP" -m tcp -p tcp -d 10.96.0.2 --dport 80 -j KUBE-SVC-B';
const NODEPORTS = '-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS';

function base(): RuleObject[] {
  return [
    chain('nat', 'KUBE-SERVICES', []),
    chain('nat', 'KUBE-NODEPORTS', []),
    chain('nat', 'KUBE-MARK-MASQ', ['-j MARK --or-mark 0x004000']),
    frag('nat', 'KUBE-SERVICES', 'nodeports', [NODEPORTS], 1),
    frag('nat', 'KUBE-SERVICES', 'ns/b:http/TCP', [SVC_B]),
    frag('nat', 'KUBE-SERVICES', 'ns/a:http/TCP', [SVC_A]),
    chain('nat', 'KUBE-SVC-A', ['-j KUBE-SEP-A1']),
    chain('nat', 'KUBE-SEP-A1', [
      '-s 10.244.1.1 -j KUBE-MARK-MASQ',
      '-m tcp -p tcp -j DNAT --to-destination 10.244.1.1:80',
    ]),
    chain('nat', 'KUBE-SVC-B', ['-j KUBE-SEP-B1']),
    chain('nat', 'KUBE-SEP-B1', ['-m tcp -p tcp -j DNAT --to-destination 10.244.1.2:80']),
    jump('nat', 'PREROUTING', 'KUBE-SERVICES', '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
  ];
}

test('planDelta rewrites only the chain a fragment change touches, with all its fragments in order', () => {
  const before = IptablesState.from(base());
  const changed = frag('nat', 'KUBE-SERVICES', 'ns/b:http/TCP', [SVC_B.replace('10.96.0.2', '10.96.0.3')]);
  const plan = planDelta(before, { upserts: [changed], deletes: [] });
  assert.equal(
    plan.text,
    [
      '*nat',
      ':KUBE-SERVICES - [0:0]',
      `-A KUBE-SERVICES ${SVC_A}`,
      `-A KUBE-SERVICES ${SVC_B.replace('10.96.0.2', '10.96.0.3')}`,
      `-A KUBE-SERVICES ${NODEPORTS}`,
      'COMMIT',
      '',
    ].join('\n'),
  );
  assert.deepEqual(plan.chainsWritten, ['nat/KUBE-SERVICES']);
  // An upsert equal to what is there plans nothing.
  assert.equal(planDelta(before, { upserts: [base()[6] as RuleObject], deletes: [] }).text, '');
});

test('deleting a service: chains are flushed first and deleted last, after the rules that jumped to them', () => {
  const before = IptablesState.from(base());
  const plan = planDelta(before, {
    upserts: [],
    deletes: [
      { kind: 'iptables.chain', key: 'nat/KUBE-SVC-B' },
      { kind: 'iptables.chain', key: 'nat/KUBE-SEP-B1' },
      { kind: 'iptables.rules', key: 'nat/KUBE-SERVICES/ns/b:http/TCP' },
    ],
  });
  const lines = plan.text.trim().split('\n');
  assert.deepEqual(lines, [
    '*nat',
    ':KUBE-SERVICES - [0:0]',
    ':KUBE-SEP-B1 - [0:0]',
    ':KUBE-SVC-B - [0:0]',
    `-A KUBE-SERVICES ${SVC_A}`,
    `-A KUBE-SERVICES ${NODEPORTS}`,
    '-X KUBE-SEP-B1',
    '-X KUBE-SVC-B',
    'COMMIT',
  ]);
  assert.deepEqual(plan.chainsDeleted, ['nat/KUBE-SEP-B1', 'nat/KUBE-SVC-B']);
});

test('a deleted chain that a remaining chain still jumps to is only flushed, and deleted once nothing does', () => {
  const state = IptablesState.from(base());
  const change = { upserts: [], deletes: [{ kind: 'iptables.chain', key: 'nat/KUBE-SEP-A1' }] };
  const plan = planDelta(state, change);
  assert.equal(plan.text, '*nat\n:KUBE-SEP-A1 - [0:0]\nCOMMIT\n');
  assert.deepEqual(plan.chainsKept, ['nat/KUBE-SEP-A1']);
  assert.deepEqual([...plan.keptAfter], ['nat/KUBE-SEP-A1']);
  // Commit it as the applier does, then drop the reference.
  state.apply(change);
  for (const ref of plan.keptAfter) state.keptChains.add(ref);
  const next = planDelta(state, { upserts: [chain('nat', 'KUBE-SVC-A', ['-j KUBE-MARK-MASQ'])], deletes: [] });
  assert.deepEqual(next.text.trim().split('\n'), [
    '*nat',
    ':KUBE-SVC-A - [0:0]',
    ':KUBE-SEP-A1 - [0:0]',
    '-A KUBE-SVC-A -j KUBE-MARK-MASQ',
    '-X KUBE-SEP-A1',
    'COMMIT',
  ]);
  assert.deepEqual([...next.keptAfter], []);
});

test('jumps: stale and doubled kpx jumps are deleted by spec, a missing one goes between its neighbours, foreign rules stay', () => {
  const PF =
    '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL';
  const NP = '-m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS';
  const ES =
    '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES';
  const objects = [
    ...base(),
    chain('filter', 'KUBE-PROXY-FIREWALL', []),
    chain('filter', 'KUBE-NODEPORTS', []),
    chain('filter', 'KUBE-EXTERNAL-SERVICES', []),
    // The compiler's positions (KUBE-FIREWALL is first, at 0): the kernel orders jumps by them.
    jump('filter', 'INPUT', 'KUBE-PROXY-FIREWALL', PF, true, 1),
    jump('filter', 'INPUT', 'KUBE-EXTERNAL-SERVICES', ES, true, 3),
  ];
  const before = IptablesState.from(objects);
  const observed = ['-s 192.0.2.1/32 -j DROP', PF, '-j KUBE-OLD', ES, ES];
  const plan = planDelta(
    before,
    { upserts: [jump('filter', 'INPUT', 'KUBE-NODEPORTS', NP, true, 2)], deletes: [] },
    { builtinRules: new Map([['filter/INPUT', observed]]) },
  );
  assert.deepEqual(plan.text.trim().split('\n'), [
    '*filter',
    '-D INPUT -j KUBE-OLD',
    `-D INPUT ${ES}`,
    `-I INPUT 3 ${NP}`,
    'COMMIT',
  ]);
  assert.deepEqual(plan.jumpsAdded, ['filter/INPUT/KUBE-NODEPORTS']);

  // Without what the kernel holds, planDelta trusts `before`: a changed jump is deleted by its old rule and re-added.
  const retext = jump('nat', 'PREROUTING', 'KUBE-SERVICES', '-j KUBE-SERVICES');
  const blind = planDelta(IptablesState.from(base()), { upserts: [retext], deletes: [] });
  assert.deepEqual(blind.text.trim().split('\n'), [
    '*nat',
    '-D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-I PREROUTING 1 -j KUBE-SERVICES',
    'COMMIT',
  ]);
  // An append jump goes at the end.
  const tail = planDelta(IptablesState.from(base()), {
    upserts: [jump('nat', 'OUTPUT', 'KUBE-SERVICES', '-j KUBE-SERVICES', false)],
    deletes: [],
  });
  assert.equal(tail.text, '*nat\n-A OUTPUT -j KUBE-SERVICES\nCOMMIT\n');
});

test('planDelta leaves `before` as it was, and takes a whole state as `after`', () => {
  const before = IptablesState.from(base());
  const digest = digestOf([...before.objects()]);
  const after = IptablesState.from(base().filter((o) => o.key !== 'nat/KUBE-SERVICES/ns/a:http/TCP'));
  const plan = planDelta(before, after);
  assert.deepEqual(plan.chainsWritten, ['nat/KUBE-SERVICES']);
  assert.equal(digestOf([...before.objects()]), digest);
  assert.equal(before.fragments('nat/KUBE-SERVICES').length, 3);
});

test('invalid objects are rejected before the state changes', () => {
  const state = IptablesState.from(base());
  const bad: RuleObject[] = [
    { ...chain('nat', 'KUBE-X', []), kind: 'iptables.rules' },
    chain('nat', 'PREROUTING', []),
    { ...chain('nat', 'KUBE-X', []), key: 'nat/KUBE-Y' },
    chain('nat', 'KUBE-WAY-TOO-LONG-FOR-IPTABLES-CHAIN', []),
    jump('nat', 'KUBE-SERVICES', 'KUBE-X', '-j KUBE-X'),
    jump('nat', 'PREROUTING', 'KUBE-X', '-j KUBE-Y'),
    chain('nat', 'KUBE-X', ['-j RETURN\n-A PREROUTING -j DROP']),
    {
      kind: 'ipvs.address',
      key: 'kube-ipvs0/10.0.0.1',
      payload: { $case: 'ipvsAddress', value: { interface: 'kube-ipvs0', address: '10.0.0.1' } },
    },
  ];
  for (const o of bad) {
    assert.throws(
      () => state.apply({ upserts: [chain('nat', 'KUBE-OK', []), o], deletes: [] }),
      InvalidRuleObjectError,
      o.key,
    );
    assert.equal(state.chain('nat/KUBE-OK'), undefined);
  }
});

test('a full restore plan flushes and deletes stale kpx chains, keeps those someone else jumps to', () => {
  const saved = parseSave(
    [
      '*nat',
      ':PREROUTING ACCEPT [0:0]',
      ':FOREIGN - [0:0]',
      ':KUBE-SVC-OLD - [0:0]',
      ':KUBE-SEP-PINNED - [0:0]',
      ':KUBE-KUBELET-CANARY - [0:0]',
      '-A PREROUTING -j FOREIGN',
      '-A PREROUTING -j KUBE-SVC-OLD',
      '-A FOREIGN -j KUBE-SEP-PINNED',
      'COMMIT',
    ].join('\n'),
  );
  const desired = IptablesState.from(base());
  const plan = planFullRestore(desired, saved);
  const lines = plan.text.trim().split('\n');
  assert.ok(lines.includes(':KUBE-SVC-OLD - [0:0]') && lines.includes('-X KUBE-SVC-OLD'));
  assert.ok(lines.includes(':KUBE-SEP-PINNED - [0:0]') && !lines.includes('-X KUBE-SEP-PINNED'));
  assert.ok(!lines.some((l) => l.includes('KUBE-KUBELET-CANARY') || l.includes('FOREIGN')));
  assert.ok(lines.indexOf('-D PREROUTING -j KUBE-SVC-OLD') < lines.indexOf('-X KUBE-SVC-OLD'));
  assert.ok(lines.includes('-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'));
  assert.deepEqual(plan.chainsKept, ['nat/KUBE-SEP-PINNED']);
  assert.deepEqual(plan.chainsDeleted, ['nat/KUBE-SVC-OLD']);
});

function savedOf(nat: Record<string, string[]>, prerouting: string[]): ReturnType<typeof parseSave> {
  const lines = [
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ...Object.keys(nat).map((c) => `:${c} - [0:0]`),
    ...prerouting.map((r) => `-A PREROUTING ${r}`),
  ];
  for (const [c, rules] of Object.entries(nat)) for (const r of rules) lines.push(`-A ${c} ${r}`);
  return parseSave([...lines, 'COMMIT'].join('\n'));
}

test('read-back splits a chain into its fragments; only the fragment that differs differs', () => {
  const objects = base();
  const desired = IptablesState.from(objects);
  const inSync: Record<string, string[]> = {};
  for (const ref of desired.chainRefs()) inSync[ref.split('/')[1] ?? ''] = desired.chainRules(ref) ?? [];
  const PRE = ['-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'];
  const exact = readBackObjects(savedOf(inSync, PRE), desired);
  assert.equal(digestOf(exact), digestOf(objects));

  const edited: Record<string, string[]> = {
    ...inSync,
    'KUBE-SERVICES': [SVC_A, '-j KUBE-SVC-B', NODEPORTS],
    'KUBE-STALE': ['-j RETURN'],
  };
  delete edited['KUBE-SEP-B1'];
  const got = readBackObjects(savedOf(edited, [...PRE, ...PRE, '-j FOREIGN']), desired);
  const b = got.find((o) => o.key === 'nat/KUBE-SERVICES/ns/b:http/TCP');
  assert.deepEqual(b?.payload?.$case === 'iptablesRules' ? b.payload.value.rules : undefined, ['-j KUBE-SVC-B']);
  assert.ok(got.some((o) => o.key === 'nat/KUBE-SERVICES/ns/a:http/TCP' && o === objects[5]));
  assert.ok(got.some((o) => o.key === 'nat/PREROUTING/KUBE-SERVICES#2'));
  assert.deepEqual(diffActual(objects, got), {
    inSync: false,
    chains: { missing: ['nat/KUBE-SEP-B1'], extra: ['nat/KUBE-STALE'], changed: ['nat/KUBE-SERVICES'] },
    jumps: { missing: [], extra: ['nat/PREROUTING/KUBE-SERVICES#2'], changed: [] },
  });

  // Rules after the last fragment go to it; a chain whose own rules differ takes the lines.
  const trailing = readBackObjects(
    savedOf({ ...inSync, 'KUBE-SERVICES': [SVC_A, SVC_B, NODEPORTS, '-j RETURN'], 'KUBE-MARK-MASQ': [] }, PRE),
    desired,
  );
  const np = trailing.find((o) => o.key === 'nat/KUBE-SERVICES/nodeports');
  assert.deepEqual(np?.payload?.$case === 'iptablesRules' ? np.payload.value.rules : undefined, [
    NODEPORTS,
    '-j RETURN',
  ]);
  const mm = trailing.find((o) => o.key === 'nat/KUBE-MARK-MASQ');
  assert.deepEqual(mm?.payload?.$case === 'iptablesChain' ? mm.payload.value.rules : undefined, []);
});

test('rule text: arguments, quotes and targets', () => {
  assert.deepEqual(splitArgs('-m comment --comment "a \\"b\\" c" -j KUBE-X'), [
    '-m',
    'comment',
    '--comment',
    'a "b" c',
    '-j',
    'KUBE-X',
  ]);
  assert.equal(ruleTarget('-m comment --comment "do not -j KUBE-NO" -j KUBE-YES'), 'KUBE-YES');
  assert.equal(ruleTarget('-m comment --comment "-j KUBE-NO"'), undefined);
  assert.equal(ruleTarget('-p tcp -g KUBE-GOTO'), 'KUBE-GOTO');
});

/** A runner that answers like a kernel holding nothing, and records what it ran. */
function fakeRunner(fail?: (c: Command) => string | undefined): { runner: CommandRunner; ran: Command[] } {
  const ran: Command[] = [];
  return {
    ran,
    runner: {
      netns: undefined,
      run(c) {
        ran.push(c);
        const stderr = fail?.(c);
        if (stderr !== undefined) return Promise.reject(new CommandError({ command: c.file, exitCode: 2, stderr }));
        if (c.args.includes('-S')) return Promise.resolve({ stdout: `-P ${c.args.at(-1)} ACCEPT\n`, stderr: '' });
        return Promise.resolve({ stdout: '', stderr: '' });
      },
    },
  };
}

const identity = { canonicalize: (reqs: readonly { rule: string }[]) => Promise.resolve(reqs.map((r) => r.rule)) };

test('the applier reads the builtin chains a delta changes, runs one restore, and keeps its state on failure', async () => {
  const { runner, ran } = fakeRunner();
  const applier = createIptablesApplier({ family: 'IPv4', runner, canonicalizer: identity });
  await applier.fullRestore(base());
  ran.length = 0;
  const r = await applier.applyDelta({
    upserts: [jump('nat', 'OUTPUT', 'KUBE-SERVICES', '-j KUBE-SERVICES')],
    deletes: [],
  });
  assert.deepEqual(
    ran.map((c) => [c.file, ...c.args].join(' ')),
    ['iptables -w 5 -t nat -S OUTPUT', 'iptables-restore -w 5 --noflush --counters'],
  );
  assert.equal(ran[1]?.input, '*nat\n-I OUTPUT 1 -j KUBE-SERVICES\nCOMMIT\n');
  assert.deepEqual(r.jumpsAdded, ['nat/OUTPUT/KUBE-SERVICES']);

  const failing = fakeRunner((c) =>
    c.file === 'ip6tables-restore' && c.input?.includes('KUBE-SVC-B') ? 'iptables-restore: line 3 failed\n' : undefined,
  );
  const v6 = createIptablesApplier({ family: 'IPv6', runner: failing.runner, canonicalizer: identity });
  await v6.fullRestore(base().filter((o) => !o.key.includes('KUBE-SVC-B') && !o.key.includes('ns/b')));
  const digest = digestOf([...v6.state.objects()]);
  await assert.rejects(
    v6.applyDelta({ upserts: base(), deletes: [] }),
    (err: unknown) => err instanceof IptablesRestoreError && err.line === 3 && err.lineText !== undefined,
  );
  assert.equal(digestOf([...v6.state.objects()]), digest);
});

test('planning is O(change): one service change on a node with 10,000 services', () => {
  const objects: RuleObject[] = [chain('nat', 'KUBE-SERVICES', []), chain('nat', 'KUBE-MARK-MASQ', [])];
  for (let i = 0; i < 10_000; i++) {
    objects.push(frag('nat', 'KUBE-SERVICES', `ns/s${i}:p/TCP`, [`-d 10.96.${i >> 8}.${i & 255} -j KUBE-SVC-${i}`]));
    objects.push(chain('nat', `KUBE-SVC-${i}`, [`-j KUBE-SEP-${i}`]));
    objects.push(chain('nat', `KUBE-SEP-${i}`, [`-j DNAT --to-destination 10.244.0.1:${i}`]));
  }
  const state = IptablesState.from(objects);
  const started = performance.now();
  for (let i = 0; i < 2_000; i++) {
    const plan = planDelta(state, {
      upserts: [chain('nat', `KUBE-SEP-${i}`, [`-j DNAT --to-destination 10.244.0.2:${i}`])],
      deletes: [],
    });
    assert.deepEqual(plan.chainsWritten, [`nat/KUBE-SEP-${i}`]);
  }
  const ms = performance.now() - started;
  assert.ok(ms < 1_000, `2,000 plans took ${ms.toFixed(0)} ms`);
});

test('a full restore plan of a very large state renders without exhausting the call stack', () => {
  // 200,000 rules in one chain: more than a spread into push() can take as arguments.
  const rules = Array.from({ length: 200_000 }, (_, i) => `-m comment --comment "r${i}" -j RETURN`);
  const state = IptablesState.from([chain('nat', 'KUBE-BIG', rules)]);
  const text = planFullRestore(state, new Map()).text;
  assert.equal(text.split('\n').filter((l) => l.startsWith('-A KUBE-BIG ')).length, 200_000);
});

test('a transition undone puts every index back: objects, chain rules with fragments, jumps, references', () => {
  const start = [
    chain('nat', 'KUBE-SERVICES', ['-j KUBE-MARK']),
    frag('nat', 'KUBE-SERVICES', 'ns/a:p/TCP', ['-d 10.0.0.1/32 -j KUBE-SVC-A'], 1),
    chain('nat', 'KUBE-SVC-A', ['-j KUBE-SEP-A']),
    chain('nat', 'KUBE-SEP-A', ['-j DNAT --to-destination 10.244.1.2:80']),
    jump('nat', 'PREROUTING', 'KUBE-SERVICES', '-j KUBE-SERVICES'),
  ];
  const state = IptablesState.from(start);
  const view = (): unknown => ({
    objects: [...state.objects()].map((o) => `${o.kind}:${o.key}`).sort(),
    services: state.chainRules('nat/KUBE-SERVICES'),
    jumps: state.jumpsFrom('nat/PREROUTING').map((j) => j.target),
    svcReferenced: state.isReferenced('nat/KUBE-SVC-A'),
    sepReferenced: state.isReferenced('nat/KUBE-SEP-A'),
  });
  const before = view();
  // Replace a chain, delete one, add a fragment, a chain and a jump, and touch one object twice.
  const tr = state.apply({
    deletes: [
      { kind: 'iptables.chain', key: 'nat/KUBE-SEP-A' },
      { kind: 'iptables.rules', key: 'nat/KUBE-SERVICES/ns/a:p/TCP' },
    ],
    upserts: [
      chain('nat', 'KUBE-SVC-A', ['-j KUBE-SEP-B']),
      chain('nat', 'KUBE-SEP-B', ['-j DNAT --to-destination 10.244.1.3:80']),
      frag('nat', 'KUBE-SERVICES', 'ns/b:p/TCP', ['-d 10.0.0.2/32 -j KUBE-SVC-A'], 2),
      frag('nat', 'KUBE-SERVICES', 'ns/a:p/TCP', ['-d 10.0.0.9/32 -j KUBE-SVC-A'], 1),
      jump('nat', 'OUTPUT', 'KUBE-SERVICES', '-j KUBE-SERVICES'),
    ],
  });
  assert.notDeepEqual(view(), before);
  tr.undo();
  assert.deepEqual(view(), before);
  assert.deepEqual(state.jumpsFrom('nat/OUTPUT'), []);
  assert.deepEqual(
    [...state.objects()].sort((a, b) => (a.key < b.key ? -1 : 1)),
    [...start].sort((a, b) => (a.key < b.key ? -1 : 1)),
  );
});
