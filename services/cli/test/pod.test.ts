// What running in a pod needs from the command line: the executor's node from $NODE_NAME (else the hostname), and
// the version from `kpx --version` and `kpx <command> --version`.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { defaultNodeName } from '../src/node-name.js';
import { runKpx } from './io.js';

const version = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

test('the executor node defaults to $NODE_NAME, else the hostname lower-cased', () => {
  assert.equal(
    defaultNodeName({ NODE_NAME: 'node-a' }, () => 'ignored'),
    'node-a',
  );
  assert.equal(
    defaultNodeName({ NODE_NAME: ' ' }, () => 'Worker-1'),
    'worker-1',
  );
  assert.equal(
    defaultNodeName({}, () => 'Worker-1'),
    'worker-1',
  );
});

test('kpx --version and kpx <command> --version print the package version', async () => {
  for (const argv of [
    ['--version'],
    ['version'],
    ['controller', '--version'],
    ['executor', '--version'],
    ['render', '--version'],
  ]) {
    const r = await runKpx(...argv);
    assert.equal(r.code, 0, argv.join(' '));
    assert.equal(r.out, `kpx ${version}\n`);
  }
});
