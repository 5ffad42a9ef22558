// Dependencies point one way (model -> compiler -> ruleset -> transport/kernel -> services): this package never
// links the compiler, neither as a dependency nor by an import in its sources.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';

const root = new URL('../../', import.meta.url);

test('no dependency on @kpx/compiler', () => {
  const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { dependencies?: Record<string, string> };
  assert.equal(pkg.dependencies?.['@kpx/compiler'], undefined);
  const sources = readdirSync(new URL('src/', root), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
  assert.ok(sources.length > 0);
  for (const f of sources) assert.doesNotMatch(readFileSync(new URL(`src/${f}`, root), 'utf8'), /from '@kpx\/compiler'/, f);
});
