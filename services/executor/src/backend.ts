// What the executor programs: one Backend per IP family (iptables / ip6tables; later IPVS, nftables).
import type { ObjectRef } from '@kpx/proto';
import type { HashedObject, RuleState } from '@kpx/ruleset';

/** One applied delta, as a backend needs it: what changed and what the changed objects were before. */
export interface AppliedChange {
  readonly upserts: readonly HashedObject[];
  readonly deletes: readonly ObjectRef[];
  /** The objects of every changed id before the delta (undefined: the object did not exist). */
  readonly previous: ReadonlyMap<string, HashedObject | undefined>;
}

/** What the kernel holds, compared with what the executor applied. */
export interface ReadBack {
  /** Digest of kpx's objects as read from the kernel. */
  readonly digest: string;
  /** Differences from the applied state, one line each (empty when the digest matches). */
  readonly drift: readonly string[];
}

export interface Backend {
  /** Backend name for logs and metrics labels, e.g. `iptables`, `ip6tables`, `dry-run`. */
  readonly name: string;
  /** Converges the kernel to exactly `state` for kpx's own objects, leaving everything else alone. */
  restore(state: RuleState): Promise<void>;
  /** Applies one delta in one kernel transaction. `state` is the state after the delta. On error nothing changed. */
  apply(state: RuleState, change: AppliedChange): Promise<void>;
  /** Reads the kernel back and compares it with `state`. */
  readBack(state: RuleState): Promise<ReadBack>;
}

/** `--dry-run`: applies to memory only (scale tests). The kernel always "matches". */
export class MemoryBackend implements Backend {
  readonly name = 'dry-run';
  restores = 0;
  applies = 0;
  restore(): Promise<void> {
    this.restores++;
    return Promise.resolve();
  }
  apply(): Promise<void> {
    this.applies++;
    return Promise.resolve();
  }
  readBack(state: RuleState): Promise<ReadBack> {
    return Promise.resolve({ digest: state.digest, drift: [] });
  }
}
