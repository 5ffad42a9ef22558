// The digest of a rule set: the sum, modulo 2^256, of the SHA-256 of each object's protobuf encoding.
// Order-independent and incremental: adding or removing an object is one addition or subtraction, so the
// controller, the executors and replay keep it up to date in O(change) and compare it cheaply.
import * as crypto from 'node:crypto';
import { RuleObject as WireObject } from '@kpx/proto';

const MOD = 1n << 256n;

type Writer = ReturnType<typeof WireObject.encode>;

/** node:crypto's one-shot `hash` (Node 20.12+), else a Hash object per call. */
const sha256Hex: (data: Uint8Array) => string =
  typeof crypto.hash === 'function'
    ? (data) => crypto.hash('sha256', data, 'hex')
    : (data) => crypto.createHash('sha256').update(data).digest('hex');

/**
 * One protobuf writer for every object hashed: a writer per object (its buffer grown from 128 bytes each time) and
 * a Hash object per object were two thirds of the time of hashing a snapshot (docs/benchmarks.md, "Replay (issue
 * #6)"). Encoding is synchronous, so objects never share it; an encode that throws leaves it half written, so it is
 * dropped then.
 */
let writer: Writer | undefined;

/** SHA-256 of the object's wire encoding, as a 256-bit integer. */
export function objectHash(o: WireObject): bigint {
  let w: Writer;
  try {
    w = WireObject.encode(o, writer);
  } catch (err) {
    writer = undefined;
    throw err;
  }
  writer = w;
  // finish() copies the bytes written and rewinds the writer; its buffer is kept for the next object.
  return BigInt(`0x${sha256Hex(w.finish())}`);
}

/** Lowercase hex, 64 characters: how digests print everywhere (headers, acks, audit, replay). */
export function formatDigest(sum: bigint): string {
  return (((sum % MOD) + MOD) % MOD).toString(16).padStart(64, '0');
}

export class Digest {
  private sum = 0n;

  add(hash: bigint): void {
    this.sum = (this.sum + hash) % MOD;
  }

  remove(hash: bigint): void {
    this.sum = (this.sum - hash + MOD) % MOD;
  }

  /** Adds another digest's sum (a layer of objects), or subtracts it with sign -1. */
  merge(other: Digest | bigint, sign: 1 | -1 = 1): void {
    const v = typeof other === 'bigint' ? other : other.sum;
    const s = sign === 1 ? this.sum + v : this.sum - v;
    this.sum = s >= 0n && s < MOD ? s : ((s % MOD) + MOD) % MOD;
  }

  get value(): bigint {
    return this.sum;
  }

  hex(): string {
    return formatDigest(this.sum);
  }

  clone(): Digest {
    const d = new Digest();
    d.sum = this.sum;
    return d;
  }
}

export function digestOf(objects: Iterable<WireObject>): string {
  const d = new Digest();
  for (const o of objects) d.add(objectHash(o));
  return d.hex();
}
