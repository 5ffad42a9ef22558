// What the executor programs: one Backend per IP family (iptables / ip6tables; later IPVS, nftables).
import { Digest, type RuleState, type UndoToken } from '@kpx/ruleset';

/**
 * One applied delta, as a backend needs it: what changed (upserts hashed) and what the changed objects were before
 * (undefined: the object did not exist). RuleState.apply's undo token is one.
 */
export type AppliedChange = Pick<UndoToken, 'upserts' | 'deletes' | 'previous'>;

/** What the kernel holds, compared with what the executor applied. */
export interface ReadBack {
  /** Digest of kpx's objects as read from the kernel. */
  readonly digest: string;
  /** Differences from the applied state, one line each (empty when the digest matches). */
  readonly drift: readonly string[];
}

/**
 * The digest of the whole applied state as a backend reads it back: what the kernel holds of the backend's own
 * kinds (`kernelDigest`) plus the applied state's objects that are no kernel object of this backend (e.g.
 * healthcheck.service, a node duty). Equal to `state.digest` exactly when the kernel matches.
 */
export function readBackDigest(
  kernelDigest: string,
  state: RuleState,
  isKernelObject: (o: { kind: string }) => boolean,
): string {
  const d = new Digest();
  d.merge(BigInt(`0x${kernelDigest}`));
  for (const o of state.objects.values()) if (!isKernelObject(o.wire)) d.add(o.hash);
  return d.hex();
}

export interface Backend {
  /** Backend name for logs and metrics labels, e.g. `iptables`, `ip6tables`, `dry-run`. */
  readonly name: string;
  /** The proxy mode of the rule sets it programs ("iptables" when absent, "ipvs" for the IPVS backend). */
  readonly mode?: string;
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
