// The cluster-wide generation counter, persisted in a JetStream KV bucket so that a restarted controller (or
// a second one racing it) never reuses a generation: every reservation is a compare-and-set on the key.
import { JetStreamApiCodes, JetStreamApiError, type JetStreamClient } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { GenerationKey, StateBucket } from './subjects.js';

export interface GenerationCounter {
  /** The last generation reserved (0 if none). */
  current(): number;
  /** Reserves the next generation; resolves once it is stored. */
  next(): Promise<number>;
  /** Moves the stored counter to at least `floor` (a generation found in use), so no later reservation reuses it. */
  fence(floor: number): Promise<void>;
}

const decode = (v: Uint8Array | undefined): number => {
  const n = v ? Number(new TextDecoder().decode(v)) : 0;
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
};

/** The compare-and-set lost: the key's revision is not the one read. */
function isCasConflict(err: unknown): boolean {
  const code = err instanceof JetStreamApiError ? err.code : undefined;
  return code === JetStreamApiCodes.StreamWrongLastSequence || code === JetStreamApiCodes.StreamWrongLastSequenceUnknown;
}

export async function openGenerationCounter(js: JetStreamClient, opts: { replicas?: number } = {}): Promise<GenerationCounter> {
  const kv: KV = await new Kvm(js).create(StateBucket, { history: 1, ...(opts.replicas ? { replicas: opts.replicas } : {}) });
  let entry = await kv.get(GenerationKey);
  let value = decode(entry?.value);
  let revision = entry?.revision ?? 0;
  /** Never below what this process reserved or was fenced to, whatever the bucket says later. */
  let floor = value;
  /** Stores max(stored, floor) + step with a compare-and-set on the revision read; reloads and retries on a race. */
  const advance = async (step: number): Promise<number> => {
    for (let attempt = 0; ; attempt++) {
      const want = Math.max(value, floor) + step;
      if (want === value && revision !== 0) return want;
      try {
        revision = revision === 0 ? await kv.create(GenerationKey, String(want)) : await kv.update(GenerationKey, String(want), revision);
        value = want;
        floor = Math.max(floor, want);
        return want;
      } catch (err) {
        // Someone else moved the counter (or the bucket was rewritten): reload and retry from there. Any other
        // error (NATS down, a timeout) is the caller's to retry.
        if (attempt >= 20 || !isCasConflict(err)) throw err;
        entry = await kv.get(GenerationKey);
        value = decode(entry?.value);
        revision = entry?.revision ?? 0;
      }
    }
  };
  return {
    current: () => Math.max(value, floor),
    next: () => advance(1),
    async fence(at: number): Promise<void> {
      if (at <= Math.max(value, floor)) return;
      floor = at;
      await advance(0);
    },
  };
}
