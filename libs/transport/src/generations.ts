// The cluster-wide generation counter, persisted in a JetStream KV bucket so that a restarted controller (or
// a second one racing it) never reuses a generation: every reservation is a compare-and-set on the key.
import type { JetStreamClient } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { GenerationKey, StateBucket } from './subjects.js';

export interface GenerationCounter {
  /** The last generation reserved (0 if none). */
  current(): number;
  /** Reserves the next generation; resolves once it is stored. */
  next(): Promise<number>;
}

const decode = (v: Uint8Array | undefined): number => {
  const n = v ? Number(new TextDecoder().decode(v)) : 0;
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
};

export async function openGenerationCounter(js: JetStreamClient, opts: { replicas?: number } = {}): Promise<GenerationCounter> {
  const kv: KV = await new Kvm(js).create(StateBucket, { history: 1, ...(opts.replicas ? { replicas: opts.replicas } : {}) });
  let entry = await kv.get(GenerationKey);
  let value = decode(entry?.value);
  let revision = entry?.revision ?? 0;
  return {
    current: () => value,
    async next(): Promise<number> {
      for (let attempt = 0; ; attempt++) {
        const want = value + 1;
        try {
          revision = revision === 0 ? await kv.create(GenerationKey, String(want)) : await kv.update(GenerationKey, String(want), revision);
          value = want;
          return want;
        } catch (err) {
          // Someone else moved the counter: reload and retry from there.
          if (attempt >= 20) throw err;
          entry = await kv.get(GenerationKey);
          value = decode(entry?.value);
          revision = entry?.revision ?? 0;
        }
      }
    },
  };
}
