// A delta the kernel refuses: the executor undoes it in its state (RuleState.undo), so the failed ack names exactly
// the generation and digest the kernel still holds, then resyncs. Real nats-server, real controller, a dry-run
// backend that refuses one apply.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RuleState } from '@kpx/ruleset';
import { MemoryBackend, type AppliedChange } from '../src/index.js';
import { newExecutor, setUp, waitFor } from './harness.js';

/** MemoryBackend that refuses the next apply once asked to, noting the state it was handed. */
class RefusingBackend extends MemoryBackend {
  refuseNext = false;
  refused: { generation: number; previous: number } | undefined;
  override apply(state?: RuleState, change?: AppliedChange): Promise<void> {
    if (!this.refuseNext) return super.apply();
    this.refuseNext = false;
    this.refused = { generation: state!.generation, previous: change!.previous.size };
    return Promise.reject(new Error('iptables-restore: line 3 failed'));
  }
}

test(
  'a delta the kernel refuses is undone: the failed ack carries the generation and digest before it, then the node resyncs',
  { timeout: 60_000 },
  async () => {
    const s = await setUp();
    const backend = new RefusingBackend();
    const e = newExecutor(s, backend);
    try {
      await e.executor.start();
      const before = s.desired()!;
      await waitFor(() => e.executor.status()[0]?.generation === before.generation, 'the first state');
      assert.equal(e.executor.status()[0]?.digest, before.digest);
      backend.refuseNext = true;
      const acks = e.client.acks.length;
      await s.change();
      const want = s.desired()!;
      await waitFor(() => e.client.acks.slice(acks).some((a) => a.error !== ''), 'the failed ack');
      const failed = e.client.acks.slice(acks).find((a) => a.error !== '')!;
      assert.match(
        failed.error,
        new RegExp(`^applying delta ${want.generation} failed: iptables-restore: line 3 failed$`),
      );
      assert.equal(backend.refused?.generation, want.generation, 'the backend was handed the state after the delta');
      assert.ok((backend.refused?.previous ?? 0) > 0, 'and what the delta changed');
      assert.equal(failed.generation, before.generation, 'the state went back to the generation before the delta');
      assert.equal(failed.digest, before.digest, 'and to its digest');
      // The resync that follows brings the node to the controller's newest state.
      await waitFor(() => e.executor.status()[0]?.generation === want.generation, 'the resync');
      assert.equal(e.executor.status()[0]?.digest, want.digest);
      assert.ok(e.logs.some((l) => l.msg === 'apply failed; the old rules stay; resyncing'));
    } finally {
      await e.close();
      await s.close();
    }
  },
);
