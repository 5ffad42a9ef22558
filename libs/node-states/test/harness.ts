// Drives FamilyStates like the controller does and checks it against the reference after every sync: every node's
// state, built only from the deltas it was sent, must equal a from-scratch compile of that node, object for object,
// digest for digest.
import assert from 'node:assert/strict';
import type { ClusterState, IPFamily } from '@kpx/model';
import { toWire, type AnyModeCompiler, type IptablesOptions, type NodeRuleSet } from '@kpx/compiler';
import { RuleState, digestOf } from '@kpx/ruleset';
import { FamilyStates, type NodeChange } from '../src/index.js';

export interface HarnessMode {
  readonly family: IPFamily;
  readonly options: IptablesOptions;
  /** Default: iptables with `options`. */
  readonly compiler?: AnyModeCompiler;
  /** The from-scratch compile of one node. */
  readonly reference: (state: ClusterState, node: string) => NodeRuleSet;
}

export class StatesHarness {
  readonly states: FamilyStates;
  readonly applied = new Map<string, RuleState>();
  generation = 0;
  constructor(
    readonly cluster: ClusterState,
    readonly mode: HarnessMode,
  ) {
    this.states = new FamilyStates({
      family: mode.family,
      options: mode.options,
      ...(mode.compiler ? { compiler: mode.compiler } : {}),
    });
  }

  /** `endpointsOnly`: services whose Service object did not change (as the controller passes them). */
  sync(services: string[], nodes: string[], endpointsOnly: string[] = []): NodeChange[] {
    const changes = this.states.sync({
      state: this.cluster,
      services: new Set(services),
      nodes: new Set(nodes),
      endpointsOnly: new Set(endpointsOnly),
    });
    if (changes.length) this.generation++;
    for (const c of changes) {
      const s = c.initial ? new RuleState() : this.applied.get(c.node);
      assert.ok(s, `no state for ${c.node}`);
      s.apply({
        generation: this.generation,
        prevGeneration: c.initial ? 0 : c.prevGeneration,
        upserts: c.upserts.map((u) => u.wire),
        deletes: c.deletes,
        digest: c.digest,
      });
      this.applied.set(c.node, s);
      this.states.setGeneration(c.node, this.generation);
    }
    for (const n of [...this.applied.keys()]) if (!this.states.nodeNames().includes(n)) this.applied.delete(n);
    this.checkAgainstFullCompile();
    return changes;
  }

  checkAgainstFullCompile(): void {
    assert.deepEqual([...this.applied.keys()].sort(), this.states.nodeNames());
    for (const node of this.states.nodeNames()) {
      const full = this.mode.reference(this.cluster, node).objects.map(toWire);
      const got = this.applied.get(node);
      assert.ok(got);
      assert.deepEqual(
        got.sortedObjects(),
        full.sort((a, b) => (`${a.kind}:${a.key}` < `${b.kind}:${b.key}` ? -1 : 1)),
        `node ${node} differs from a full compile`,
      );
      assert.equal(got.digest, digestOf(full));
      assert.equal(this.states.digest(node), got.digest);
    }
  }
}
