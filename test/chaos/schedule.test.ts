// The schedule alone, no processes: the same seed gives the same schedule; every step is valid where it runs.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Prng } from './prng.js';
import { applyChange, manifestFiles, MaxEndpoints } from './model.js';
import { buildSchedule, describeStep, FaultKind } from './schedule.js';

describe('chaos schedule', () => {
  it('the same seed gives the same schedule; another seed another one', () => {
    const a = buildSchedule({ seed: 42, changes: 200, faults: 20 });
    const b = buildSchedule({ seed: 42, changes: 200, faults: 20 });
    const c = buildSchedule({ seed: 43, changes: 200, faults: 20 });
    assert.deepEqual(a.steps.map(describeStep), b.steps.map(describeStep));
    assert.deepEqual(manifestFiles(a.final), manifestFiles(b.final));
    assert.notDeepEqual(a.steps.map(describeStep), c.steps.map(describeStep));
  });

  it('has the changes and faults asked for, every fault ends, no two faults hold a target at once', () => {
    for (const seed of [1, 2, 3, 1234567, 4294967295]) {
      const s = buildSchedule({ seed, changes: 200, faults: 20 });
      assert.equal(s.steps.filter((x) => x.action.type === 'change').length, 200);
      const starts = s.steps.filter((x) => x.action.type === 'fault-start');
      assert.equal(starts.length, 20);
      assert.equal(s.steps.filter((x) => x.action.type === 'fault-end').length, 20);
      const held = new Map<string, number>();
      let model = s.initial;
      for (const step of s.steps) {
        const a = step.action;
        if (a.type === 'fault-start') {
          assert.ok(!held.has(a.fault.target), `seed ${seed}: ${describeStep(step)} while ${a.fault.target} is held`);
          held.set(a.fault.target, a.fault.id);
          if (a.fault.kind === FaultKind.IptablesFail) assert.match(a.fault.target, /^n\d$/);
        } else if (a.type === 'fault-end') {
          assert.equal(held.get(a.fault.target), a.fault.id);
          held.delete(a.fault.target);
        } else {
          const c = a.change;
          if (c.kind === 'node-leave')
            assert.ok(!held.has(c.node), `seed ${seed}: ${c.node} leaves while a fault holds it`);
          model = applyChange(model, c);
          for (const svc of model.services.values()) assert.ok(svc.endpoints.length <= MaxEndpoints);
        }
      }
      assert.equal(held.size, 0);
      assert.deepEqual(manifestFiles(model), manifestFiles(s.final));
    }
  });

  it('the PRNG is mulberry32: fixed values for a fixed seed', () => {
    const r = new Prng(1);
    const first = [r.next(), r.next(), r.next()];
    assert.deepEqual(
      first.map((x) => Math.floor(x * 1e6)),
      [627073, 2735, 527447],
    );
  });
});
