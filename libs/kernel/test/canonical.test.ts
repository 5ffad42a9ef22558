// The scratch canonicalizer's time limit: the first read-back of a large node asks for every rule at once.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  createScratchCanonicalizer,
  iptablesCommands,
  IptablesVariant,
  type Command,
  type CommandRunner,
} from '../src/index.js';

/** A runner that records each command and answers like `iptables-restore && iptables-save` of its input. */
function echoRunner(seen: Command[]): CommandRunner {
  return {
    netns: undefined,
    run: (command) => {
      seen.push(command);
      return Promise.resolve({ stdout: command.input ?? '', stderr: '' });
    },
  };
}

test('the scratch canonicalizer allows a restore and a save of its input, longer for more rules', async () => {
  const seen: Command[] = [];
  const c = createScratchCanonicalizer({
    runner: echoRunner(seen),
    commands: iptablesCommands('IPv4', IptablesVariant.System),
  });
  const rule = (i: number): string =>
    `-m tcp -p tcp -d 10.96.${i >> 8}.${i & 255}/32 --dport 80 -m comment --comment "ns/svc-${i}:http cluster IP" -j KUBE-SVC-ABCDEFGHIJKLMNOP`;
  const ask = (n: number) =>
    Array.from({ length: n }, (_, i) => ({ table: 'nat', chain: 'KUBE-SERVICES', rule: rule(i) }));
  assert.deepEqual(
    await c.canonicalize(ask(3)),
    ask(3).map((r) => r.rule),
  );
  const small = seen.at(-1)?.timeoutMs ?? 0;
  await c.canonicalize(ask(40_000));
  const large = seen.at(-1)?.timeoutMs ?? 0;
  const bytes = (seen.at(-1)?.input ?? '').length;
  assert.ok(bytes > 4 * 2 ** 20, `${bytes} bytes of input`);
  // At least the time of an iptables-save (5 min) and of a restore of the input (60 s + 30 s per MB beyond one).
  assert.ok(small >= 360_000, `small: ${small} ms`);
  assert.ok(large >= 300_000 + 60_000 + (bytes / 2 ** 20 - 1) * 30_000, `large: ${large} ms`);
});
