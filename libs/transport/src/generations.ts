// The cluster-wide generation counter, persisted in a JetStream KV bucket so that a restarted controller (or
// a second one racing it) never reuses a generation: every reservation is a compare-and-set on the key.
//
// Fencing for leader election: the value may carry the epoch (lease term) of the leader that wrote it,
// `{"generation":G,"epoch":E}`. A counter that `claim`ed epoch E refuses to reserve or fence (FencedError) once the
// stored epoch is newer: a deposed leader can never obtain a generation after its successor claimed the counter.
// A value without an epoch (the plain decimal every earlier version wrote) is epoch 0, and a counter that never
// claimed an epoch writes the stored epoch back unchanged: without leader election nothing changes.
import { JetStreamApiCodes, JetStreamApiError, type JetStreamClient } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { FencedError } from './errors.js';
import { GenerationKey, StateBucket } from './subjects.js';

export interface GenerationCounter {
  /** The last generation reserved (0 if none). */
  current(): number;
  /** Reserves the next generation; resolves once it is stored. */
  next(): Promise<number>;
  /** Moves the stored counter to at least `floor` (a generation found in use), so no later reservation reuses it. */
  fence(floor: number): Promise<void>;
  /**
   * Makes this counter a leader's of `epoch`: stores the epoch with the counter (compare-and-set), after which
   * every reservation refuses with FencedError once a newer epoch is stored. Rejects with FencedError if the
   * stored epoch is already newer.
   */
  claim(epoch: number): Promise<void>;
}

interface Stored {
  readonly generation: number;
  readonly epoch: number;
}

const natural = (n: unknown): number => (typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : 0);

/** `123` (earlier versions, epoch 0) or `{"generation":123,"epoch":4}`; anything else reads as 0. */
export function decodeCounter(v: Uint8Array | undefined): Stored {
  const text = v ? new TextDecoder().decode(v).trim() : '';
  if (text.startsWith('{')) {
    try {
      const o = JSON.parse(text) as { generation?: unknown; epoch?: unknown };
      return { generation: natural(o.generation), epoch: natural(o.epoch) };
    } catch {
      return { generation: 0, epoch: 0 };
    }
  }
  return { generation: natural(text === '' ? 0 : Number(text)), epoch: 0 };
}

/** Epoch 0 keeps the format earlier versions read. */
export function encodeCounter(s: Stored): string {
  return s.epoch === 0 ? String(s.generation) : JSON.stringify({ generation: s.generation, epoch: s.epoch });
}

/** The compare-and-set lost: the key's revision is not the one read. */
function isCasConflict(err: unknown): boolean {
  const code = err instanceof JetStreamApiError ? err.code : undefined;
  return (
    code === JetStreamApiCodes.StreamWrongLastSequence || code === JetStreamApiCodes.StreamWrongLastSequenceUnknown
  );
}

export async function openGenerationCounter(
  js: JetStreamClient,
  opts: { replicas?: number } = {},
): Promise<GenerationCounter> {
  const kv: KV = await new Kvm(js).create(StateBucket, {
    history: 1,
    ...(opts.replicas ? { replicas: opts.replicas } : {}),
  });
  let entry = await kv.get(GenerationKey);
  let { generation: value, epoch: storedEpoch } = decodeCounter(entry?.value);
  let revision = entry?.revision ?? 0;
  /** Never below what this process reserved or was fenced to, whatever the bucket says later. */
  let floor = value;
  /** The epoch this counter claimed (undefined: no leader election, the stored epoch is kept as it is). */
  let epoch: number | undefined;
  const refuseIfDeposed = (): void => {
    if (epoch !== undefined && storedEpoch > epoch) throw new FencedError({ epoch, storedEpoch });
  };
  /**
   * Stores max(stored, floor) + step with a compare-and-set on the revision read; reloads and retries on a race.
   * `write` forces a write even when the value would not change (a claim stores its epoch).
   */
  const advance = async (step: number, write = false): Promise<number> => {
    for (let attempt = 0; ; attempt++) {
      refuseIfDeposed();
      const want = Math.max(value, floor) + step;
      const wantEpoch = epoch ?? storedEpoch;
      if (want === value && wantEpoch === storedEpoch && revision !== 0 && !write) return want;
      const text = encodeCounter({ generation: want, epoch: wantEpoch });
      try {
        revision =
          revision === 0 ? await kv.create(GenerationKey, text) : await kv.update(GenerationKey, text, revision);
        value = want;
        storedEpoch = wantEpoch;
        floor = Math.max(floor, want);
        return want;
      } catch (err) {
        // Someone else moved the counter (or the bucket was rewritten): reload and retry from there. Any other
        // error (NATS down, a timeout) is the caller's to retry.
        if (attempt >= 20 || !isCasConflict(err)) throw err;
        entry = await kv.get(GenerationKey);
        ({ generation: value, epoch: storedEpoch } = decodeCounter(entry?.value));
        revision = entry?.revision ?? 0;
      }
    }
  };
  return {
    current: () => Math.max(value, floor),
    next: () => advance(1),
    async fence(at: number): Promise<void> {
      refuseIfDeposed();
      if (at <= Math.max(value, floor)) return;
      floor = at;
      await advance(0);
    },
    async claim(e: number): Promise<void> {
      // Read afresh: the claim must see (and refuse) a newer epoch stored since this counter was opened.
      entry = await kv.get(GenerationKey);
      ({ generation: value, epoch: storedEpoch } = decodeCounter(entry?.value));
      revision = entry?.revision ?? 0;
      epoch = e;
      await advance(0, true);
    },
  };
}
