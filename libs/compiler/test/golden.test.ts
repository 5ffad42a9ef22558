// Golden dumps: the whole restore input for the example cluster. Regenerate with UPDATE_GOLDEN=1 after
// reviewing the diff; a change here is a change in what nodes get programmed with.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { IPFamily, loadClusterState, readManifestDir } from '@kpx/model';
import { examplesState, goldenDir, readGolden, render, repoRoot } from './helpers.js';

const cases = [
  { node: 'node-a', family: IPFamily.IPv4 },
  { node: 'node-b', family: IPFamily.IPv4 },
  { node: 'node-c', family: IPFamily.IPv4 },
  { node: 'node-a', family: IPFamily.IPv6 },
];

for (const { node, family } of cases) {
  test(`golden: examples, ${node}, ${family}`, async () => {
    const name = `examples-${node}-${family.toLowerCase()}.rules`;
    const got = render(await examplesState(), node, { family });
    if (process.env.UPDATE_GOLDEN) writeFileSync(new URL(name, goldenDir), got);
    const want = readGolden(name);
    assert.ok(want !== undefined, `missing golden file ${name}: run with UPDATE_GOLDEN=1`);
    assert.equal(got, want);
  });
}

test('output is deterministic whatever the input order', async () => {
  const objects = await readManifestDir(new URL('examples/', repoRoot).pathname);
  const a = render(loadClusterState(objects).state, 'node-a');
  const shuffled = [...objects].reverse();
  const b = render(loadClusterState(shuffled).state, 'node-a');
  assert.equal(a, b);
});
