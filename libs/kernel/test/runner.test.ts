// The command runner: output, failures, and the stack limit the iptables tools get.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CommandError, createCommandRunner } from '../src/index.js';

test('a command gets an unlimited stack where the limits allow it (iptables-save of a 10,000-service nat table needs it)', async () => {
  const hard = (await createCommandRunner().run({ file: 'sh', args: ['-c', 'ulimit -H -s'] })).stdout.trim();
  const soft = (await createCommandRunner().run({ file: 'sh', args: ['-c', 'ulimit -s'] })).stdout.trim();
  // The runner raises the soft limit to the hard one when that is unlimited (root, or a default hard limit).
  if (hard === 'unlimited') assert.equal(soft, 'unlimited');
  else assert.notEqual(soft, '');
});

test('stdin, stdout and a failing command: CommandError names the command, not the wrapper', async () => {
  const r = createCommandRunner();
  assert.equal((await r.run({ file: 'cat', args: [], input: 'abc' })).stdout, 'abc');
  await assert.rejects(
    r.run({ file: 'sh', args: ['-c', 'echo oops >&2; exit 3'] }),
    (err: unknown) =>
      err instanceof CommandError &&
      err.exitCode === 3 &&
      err.stderr === 'oops\n' &&
      err.command === 'sh -c echo oops >&2; exit 3',
  );
});
