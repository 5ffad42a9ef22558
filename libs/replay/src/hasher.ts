// Hashing many rule objects in a row, as replay does for a whole snapshot (~124,000 objects at 10,000 services).
// The hash is @kpx/ruleset's objectHash — the SHA-256 of the object's protobuf encoding, as a 256-bit integer —
// computed with one protobuf writer reused for every object and node:crypto's one-shot hash. objectHash
// allocates a writer (and grows its buffer) and a Hash object per object: that was two thirds of the time of
// RuleState.from on a snapshot (profile in docs/benchmarks.md, "Replay (issue #6)"). A snapshot whose objects
// do not reach its digest, or a delta that does not reach the one it announces, is refused, so a hash that
// differed from objectHash could not go unnoticed; test/hasher.test.ts compares the two.
import * as crypto from 'node:crypto';
import { RuleObject } from '@kpx/proto';
import { RuleState, objectIdOf, type HashedObject } from '@kpx/ruleset';

type Writer = ReturnType<typeof RuleObject.encode>;

/** node:crypto's one-shot `hash` (Node 20.12+), else a Hash object per call. */
const sha256Hex: (data: Uint8Array) => string =
  typeof crypto.hash === 'function'
    ? (data) => crypto.hash('sha256', data, 'hex')
    : (data) => crypto.createHash('sha256').update(data).digest('hex');

/** Hashes rule objects one after another with one reused protobuf writer. Not for concurrent use. */
export class ObjectHasher {
  private writer: Writer | undefined;

  /** The object with its id and hash, equal to @kpx/ruleset's `hashed(wire)`. */
  hashed(wire: RuleObject): HashedObject {
    const writer = RuleObject.encode(wire, this.writer);
    this.writer = writer;
    // finish() copies the bytes written and rewinds the writer; its buffer is kept for the next object.
    return { id: objectIdOf(wire), wire, hash: BigInt(`0x${sha256Hex(writer.finish())}`) };
  }

  /** A RuleState holding `objects` at `generation` (RuleState.from, hashing with this hasher). */
  stateOf(objects: Iterable<RuleObject>, generation: number): RuleState {
    const state = new RuleState();
    for (const o of objects) state.upsert(this.hashed(o));
    state.generation = generation;
    return state;
  }
}
