// The iptables applier on the real kernel, inside network namespaces the tests create (never the root one).
// Uses the machine's `iptables` (Debian bookworm: iptables-nft), and iptables-legacy where it is installed.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { IPFamily } from '@kpx/model';
import type { RuleObject } from '@kpx/proto';
import { RuleState, diffStates, digestOf } from '@kpx/ruleset';
import {
  IptablesRestoreError,
  IptablesVariant,
  createCommandRunner,
  createIptablesApplier,
  diffActual,
  ruleTarget,
  type CommandRunner,
  type IptablesApplier,
} from '../src/index.js';
import {
  chainsOfChange,
  clusterOf,
  compileNode,
  dumpTable,
  exampleManifests,
  makeNetns,
  nftHandles,
  withEndpointAddress,
  withoutService,
} from './helpers.js';

/** The change that turns `before` into `after`, as a delta carries it. */
function changeOf(
  before: RuleObject[],
  after: RuleObject[],
): { upserts: RuleObject[]; deletes: { kind: string; key: string }[] } {
  const c = diffStates(RuleState.from(before).objects, RuleState.from(after).objects);
  return { upserts: c.upserts.map((u) => u.wire), deletes: [...c.deletes] };
}

async function restoreRaw(runner: CommandRunner, restore: string, text: string): Promise<void> {
  await runner.run({ file: restore, args: ['-w', '5', '--noflush'], input: text });
}

async function setup(
  t: TestContext,
  family: IPFamily = IPFamily.IPv4,
  variant: IptablesVariant = IptablesVariant.System,
): Promise<{ runner: CommandRunner; applier: IptablesApplier }> {
  const { runner } = await makeNetns(t);
  return { runner, applier: createIptablesApplier({ family, runner, variant }) };
}

async function usesNft(runner: CommandRunner, iptables: string): Promise<boolean> {
  const { stdout } = await runner.run({ file: iptables, args: ['-V'] });
  return stdout.includes('nf_tables');
}

test('a delta changing one endpoint rewrites only the chains it changes, and reads back at the desired digest', async (t) => {
  const { runner, applier } = await setup(t);
  const manifests = await exampleManifests();
  const before = compileNode(clusterOf(manifests), 'node-a');
  const after = compileNode(clusterOf(withEndpointAddress(manifests, '10.244.2.10', '10.244.2.11')), 'node-a');
  await applier.fullRestore(before);
  assert.equal((await applier.readBack()).digest, digestOf(before));

  const { save } = applier.commands;
  const nft = await usesNft(runner, applier.commands.iptables);
  const natBefore = await dumpTable(runner, save, 'nat');
  const filterBefore = await dumpTable(runner, save, 'filter');
  const handlesBefore = nft ? await nftHandles(runner, 'ip', 'nat') : undefined;

  const change = changeOf(before, after);
  const expected = chainsOfChange(change.upserts, change.deletes);
  assert.ok(expected.size >= 2 && expected.size < natBefore.size / 2, `a small change: ${[...expected].join(' ')}`);
  const result = await applier.applyDelta(change);
  const declared = new Set([...result.chainsWritten, ...result.chainsDeleted].map((r) => r.split('/')[1]));
  assert.deepEqual([...declared].sort(), [...expected].sort());
  assert.deepEqual(result.jumpsAdded, []);
  assert.deepEqual(result.jumpsDeleted, []);

  const natAfter = await dumpTable(runner, save, 'nat');
  const changedInKernel = new Set<string>();
  for (const name of new Set([...natBefore.keys(), ...natAfter.keys()])) {
    if (JSON.stringify(natBefore.get(name)) !== JSON.stringify(natAfter.get(name))) changedInKernel.add(name);
  }
  for (const name of changedInKernel) assert.ok(expected.has(name), `chain ${name} changed but is not in the delta`);
  assert.ok(changedInKernel.size > 0);
  assert.deepEqual(await dumpTable(runner, save, 'filter'), filterBefore);
  if (handlesBefore) {
    // nf_tables gives rewritten rules new handles: every chain outside the delta kept its rule objects.
    const handlesAfter = await nftHandles(runner, 'ip', 'nat');
    for (const [chain, handles] of handlesBefore) {
      if (!expected.has(chain)) assert.equal(handlesAfter.get(chain), handles, `chain ${chain} was rewritten`);
    }
  }
  const rb = await applier.readBack();
  assert.equal(rb.digest, digestOf(after));
  assert.ok(diffActual(after, rb.objects).inSync);
});

test('deleting a service removes its chains and its rules in the shared chains', async (t) => {
  const { runner, applier } = await setup(t);
  const manifests = await exampleManifests();
  const before = compileNode(clusterOf(manifests), 'node-a');
  const after = compileNode(clusterOf(withoutService(manifests, 'shop', 'web')), 'node-a');
  await applier.fullRestore(before);
  const natBefore = await dumpTable(runner, applier.commands.save, 'nat');

  const gone = new Set(
    before.filter((o) => o.kind === 'iptables.chain' && !after.some((a) => a.key === o.key)).map((o) => o.key),
  );
  assert.ok(gone.size >= 4, `web has chains: ${[...gone].join(' ')}`);
  const result = await applier.applyDelta(changeOf(before, after));
  assert.deepEqual(new Set(result.chainsDeleted), gone);
  assert.deepEqual(result.chainsKept, []);

  const nat = await dumpTable(runner, applier.commands.save, 'nat');
  for (const key of gone) {
    const name = key.split('/')[1] ?? '';
    assert.ok(natBefore.has(name) && !nat.has(name), `${name} is still there`);
  }
  assert.ok(!(nat.get('KUBE-SERVICES') ?? []).some((r) => r.includes('shop/web')));
  assert.ok((nat.get('KUBE-SERVICES') ?? []).some((r) => r.includes('kube-system/kube-dns')));
  assert.equal((await applier.readBack()).digest, digestOf(after));
});

test('a full restore converges kpx chains and jumps and leaves others alone', async (t) => {
  const { runner, applier } = await setup(t);
  const { restore, save } = applier.commands;
  const stale = 'KUBE-SVC-AAAAAAAAAAAAAAAA';
  const pinned = 'KUBE-SEP-BBBBBBBBBBBBBBBB';
  await restoreRaw(
    runner,
    restore,
    [
      '*nat',
      ':FOREIGN-CHAIN - [0:0]',
      `:${stale} - [0:0]`,
      `:${pinned} - [0:0]`,
      ':KUBE-SERVICES - [0:0]',
      '-A FOREIGN-CHAIN -p udp -j RETURN',
      `-A FOREIGN-CHAIN -p tcp --dport 1 -j ${pinned}`,
      `-A ${stale} -j ${pinned}`,
      `-A ${pinned} -j RETURN`,
      '-A KUBE-SERVICES -p tcp -j KUBE-SVC-AAAAAAAAAAAAAAAA',
      '-A PREROUTING -p tcp --dport 9999 -j FOREIGN-CHAIN',
      `-A PREROUTING -p tcp --dport 8888 -j ${stale}`,
      '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
      '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
      'COMMIT',
      '*filter',
      '-A INPUT -i lo -j ACCEPT',
      'COMMIT',
      '',
    ].join('\n'),
  );
  const desired = compileNode(clusterOf(await exampleManifests()), 'node-a');
  const result = await applier.fullRestore(desired);
  assert.ok(result.chainsDeleted.includes(`nat/${stale}`));
  assert.deepEqual(result.chainsKept, [`nat/${pinned}`]);

  const nat = await dumpTable(runner, save, 'nat');
  assert.deepEqual(nat.get('FOREIGN-CHAIN'), ['-p udp -j RETURN', `-p tcp -m tcp --dport 1 -j ${pinned}`]);
  assert.ok(!nat.has(stale));
  assert.deepEqual(nat.get(pinned), [], 'a kpx chain someone else jumps to is flushed but kept');
  assert.deepEqual(nat.get('PREROUTING'), [
    '-p tcp -m tcp --dport 9999 -j FOREIGN-CHAIN',
    '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
  ]);
  const filter = await dumpTable(runner, save, 'filter');
  assert.equal(filter.get('INPUT')?.at(-1), '-i lo -j ACCEPT', 'the foreign INPUT rule stays, after kpx jumps');
  // kube-proxy's order of the jumps on a fresh node.
  assert.deepEqual(
    filter
      .get('INPUT')
      ?.slice(0, 4)
      .map((r) => ruleTarget(r)),
    ['KUBE-FIREWALL', 'KUBE-PROXY-FIREWALL', 'KUBE-NODEPORTS', 'KUBE-EXTERNAL-SERVICES'],
  );
  const rb = await applier.readBack();
  assert.equal(rb.digest, digestOf(desired));

  // Idempotent: a second full restore adds no jump and deletes none.
  const again = await applier.fullRestore(desired);
  assert.deepEqual([again.jumpsAdded, again.jumpsDeleted], [[], []]);
  assert.deepEqual(await dumpTable(runner, save, 'filter'), filter);
});

test('a flushed nat table reads back as drift naming the missing chains and jumps; a full restore repairs it', async (t) => {
  const { runner, applier } = await setup(t);
  const desired = compileNode(clusterOf(await exampleManifests()), 'node-a');
  await applier.fullRestore(desired);
  const { iptables } = applier.commands;
  await runner.run({ file: iptables, args: ['-w', '5', '-t', 'nat', '-F'] });
  await runner.run({ file: iptables, args: ['-w', '5', '-t', 'nat', '-X'] });

  const rb = await applier.readBack();
  assert.notEqual(rb.digest, digestOf(desired));
  const drift = diffActual(desired, rb.objects);
  assert.equal(drift.inSync, false);
  const natChains = desired.filter((o) => o.kind === 'iptables.chain' && o.key.startsWith('nat/')).map((o) => o.key);
  assert.deepEqual(drift.chains.missing, [...natChains].sort());
  assert.deepEqual(drift.jumps.missing, [
    'nat/OUTPUT/KUBE-SERVICES',
    'nat/POSTROUTING/KUBE-POSTROUTING',
    'nat/PREROUTING/KUBE-SERVICES',
  ]);
  assert.deepEqual(
    [drift.chains.extra, drift.chains.changed, drift.jumps.extra, drift.jumps.changed],
    [[], [], [], []],
  );

  await applier.fullRestore(desired);
  const repaired = await applier.readBack();
  assert.equal(repaired.digest, digestOf(desired));
  assert.ok(diffActual(desired, repaired.objects).inSync);
});

test('an edited rule, a deleted jump and a doubled jump are drift; applyDelta re-adds a changed jump in its place', async (t) => {
  const { runner, applier } = await setup(t);
  const desired = compileNode(clusterOf(await exampleManifests()), 'node-a');
  await applier.fullRestore(desired);
  const { iptables, save } = applier.commands;
  const ipt = (...args: string[]): Promise<unknown> => runner.run({ file: iptables, args: ['-w', '5', ...args] });
  await ipt('-t', 'nat', '-R', 'KUBE-SERVICES', '2', '-p', 'tcp', '-d', '10.96.0.99', '-j', 'KUBE-MARK-MASQ');
  await ipt(
    '-t',
    'filter',
    '-D',
    'INPUT',
    '-m',
    'comment',
    '--comment',
    'kubernetes health check service ports',
    '-j',
    'KUBE-NODEPORTS',
  );
  await ipt(
    '-t',
    'nat',
    '-A',
    'OUTPUT',
    '-m',
    'comment',
    '--comment',
    'kubernetes service portals',
    '-j',
    'KUBE-SERVICES',
  );
  await ipt('-t', 'filter', '-I', 'INPUT', '1', '-s', '192.0.2.1', '-j', 'DROP');

  const drift = diffActual(desired, (await applier.readBack()).objects);
  assert.deepEqual(drift.chains, { missing: [], extra: [], changed: ['nat/KUBE-SERVICES'] });
  assert.deepEqual(drift.jumps, {
    missing: ['filter/INPUT/KUBE-NODEPORTS'],
    extra: ['nat/OUTPUT/KUBE-SERVICES#2'],
    changed: [],
  });

  // A change of the deleted jump (new comment): it is inserted between its neighbours, not at the head.
  const jump = desired.find((o) => o.key === 'filter/INPUT/KUBE-NODEPORTS');
  assert.ok(jump?.payload?.$case === 'iptablesJump');
  const changed: RuleObject = {
    ...jump,
    payload: {
      $case: 'iptablesJump',
      value: { ...jump.payload.value, rule: '-m comment --comment "health checks" -j KUBE-NODEPORTS' },
    },
  };
  const result = await applier.applyDelta({ upserts: [changed], deletes: [] });
  assert.deepEqual(result.jumpsAdded, ['filter/INPUT/KUBE-NODEPORTS']);
  assert.deepEqual(result.chainsWritten, []);
  const input = (await dumpTable(runner, save, 'filter')).get('INPUT') ?? [];
  assert.deepEqual(
    input.map((r) => ruleTarget(r)),
    ['DROP', 'KUBE-FIREWALL', 'KUBE-PROXY-FIREWALL', 'KUBE-NODEPORTS', 'KUBE-EXTERNAL-SERVICES'],
  );
  assert.equal(input[3], '-m comment --comment "health checks" -j KUBE-NODEPORTS');

  const now = desired.map((o) => (o.key === changed.key ? changed : o));
  await applier.fullRestore(now);
  const rb = await applier.readBack();
  assert.equal(rb.digest, digestOf(now));
  assert.equal(
    (await dumpTable(runner, save, 'filter')).get('INPUT')?.[0],
    '-s 192.0.2.1/32 -j DROP',
    'the foreign rule stays first',
  );
});

test('a failing restore leaves the old rules in place and raises IptablesRestoreError with stderr', async (t) => {
  const { runner, applier } = await setup(t);
  const manifests = await exampleManifests();
  const before = compileNode(clusterOf(manifests), 'node-a');
  await applier.fullRestore(before);
  const nat = await dumpTable(runner, applier.commands.save, 'nat');
  const after = compileNode(clusterOf(withEndpointAddress(manifests, '10.244.2.10', '10.244.2.11')), 'node-a');
  const change = changeOf(before, after);
  const bad: RuleObject = {
    kind: 'iptables.chain',
    key: 'nat/KUBE-SVC-BROKENBROKENBROK',
    payload: {
      $case: 'iptablesChain',
      value: { table: 'nat', name: 'KUBE-SVC-BROKENBROKENBROK', rules: ['-m nosuchmatch --nosuchoption 1 -j RETURN'] },
    },
  };

  await assert.rejects(
    applier.applyDelta({ upserts: [...change.upserts, bad], deletes: change.deletes }),
    (err: unknown) => {
      assert.ok(err instanceof IptablesRestoreError);
      assert.match(err.stderr, /\S/);
      assert.match(err.lineText ?? '', /nosuchmatch/);
      return true;
    },
  );
  assert.deepEqual(await dumpTable(runner, applier.commands.save, 'nat'), nat);
  assert.equal(digestOf([...applier.state.objects()]), digestOf(before), 'the applied state is unchanged');
  assert.equal((await applier.readBack()).digest, digestOf(before));
  // The same change without the broken chain applies.
  await applier.applyDelta(change);
  assert.equal((await applier.readBack()).digest, digestOf(after));
});

test('IPv6: ip6tables holds the IPv6 rules; the IPv4 tables stay untouched', async (t) => {
  const { runner, applier } = await setup(t, IPFamily.IPv6);
  assert.equal(applier.commands.restore, 'ip6tables-restore');
  const manifests = await exampleManifests();
  const before = compileNode(clusterOf(manifests), 'node-a', IPFamily.IPv6);
  const after = compileNode(
    clusterOf(withEndpointAddress(manifests, 'fd00:10:244:2::10', 'fd00:10:244:2::11')),
    'node-a',
    IPFamily.IPv6,
  );
  assert.ok(changeOf(before, after).upserts.length > 0);
  await applier.fullRestore(before);
  assert.equal((await applier.readBack()).digest, digestOf(before));
  await applier.applyDelta(changeOf(before, after));
  const rb = await applier.readBack();
  assert.equal(rb.digest, digestOf(after));
  const nat6 = await dumpTable(runner, 'ip6tables-save', 'nat');
  assert.ok([...nat6.values()].flat().some((r) => r.includes('[fd00:10:244:2::11]:8080')));
  const nat4 = await dumpTable(runner, 'iptables-save', 'nat');
  assert.ok(![...nat4.keys()].some((c) => c.startsWith('KUBE-')));
});

test('iptables-legacy: the same applier works on the x_tables backend', async (t) => {
  const host = createCommandRunner();
  try {
    await host.run({ file: 'iptables-legacy', args: ['-V'] });
  } catch {
    t.skip('iptables-legacy is not installed');
    return;
  }
  const { runner, applier } = await setup(t, IPFamily.IPv4, IptablesVariant.Legacy);
  const manifests = await exampleManifests();
  const before = compileNode(clusterOf(manifests), 'node-a');
  const after = compileNode(clusterOf(withoutService(manifests, 'shop', 'web')), 'node-a');
  await applier.fullRestore(before);
  assert.equal((await applier.readBack()).digest, digestOf(before));
  await applier.applyDelta(changeOf(before, after));
  assert.equal((await applier.readBack()).digest, digestOf(after));
  const nat = await dumpTable(runner, 'iptables-legacy-save', 'nat');
  assert.ok(nat.has('KUBE-SERVICES'));
  assert.ok(![...nat.keys()].some((c) => c === 'KUBE-SVC-67NZLRHBNDSAWJRO'));
});
