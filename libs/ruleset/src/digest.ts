// The digest of a rule set: the sum, modulo 2^256, of the SHA-256 of each object's protobuf encoding.
// Order-independent and incremental: adding or removing an object is one addition or subtraction, so the
// controller, the executors and replay keep it up to date in O(change) and compare it cheaply.
import { createHash } from 'node:crypto';
import { RuleObject as WireObject } from '@kpx/proto';

const MOD = 1n << 256n;

/** SHA-256 of the object's wire encoding, as a 256-bit integer. */
export function objectHash(o: WireObject): bigint {
  return BigInt(`0x${createHash('sha256').update(WireObject.encode(o).finish()).digest('hex')}`);
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
