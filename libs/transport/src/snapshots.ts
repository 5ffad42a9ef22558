// Snapshots of a node's whole rule set in the JetStream object store (bucket KPX_SNAPSHOTS). The object store
// splits an object into chunks below max_payload (128 KiB by default) and checks a SHA-256 digest on read, so
// a snapshot of any size never needs one message above max_payload, and it survives restarts (file storage).
//
// Layout per node and IP family:
// - `<node token>/<family>/<generation, 20 digits>`: one object per retained generation, the protobuf
//   encoding of the NodeRuleSet, with node, family, mode, generation and digest in its metadata.
// - `<node token>/<family>`: the head, an empty object whose metadata holds the latest generation and every
//   retained generation (newest first). getSnapshot reads it with one lookup; it is replaced with an
//   expected-revision check, so concurrent writers cannot lose each other's generations.
//
// putSnapshot writes the new object first, then the head, then deletes generations beyond the retention. A
// crash between the first two steps leaves an object no head names (putting that generation again replaces it).
import { NodeRuleSet } from '@kpx/proto';
import { JetStreamApiCodes, JetStreamApiError, StorageType, type JetStreamClient } from '@nats-io/jetstream';
import { Objm, setSha256Backend, type ObjectInfo, type ObjectStore } from '@nats-io/obj';
import { DecodeError, SignatureError, SnapshotError } from './errors.js';
import { snapshotSigningInput, type Signer, type Verifier } from './signing.js';
import {
  encodeNodeToken,
  SnapshotBucket,
  SnapshotFamilies,
  SnapshotMeta,
  snapshotHeadName,
  snapshotObjectName,
} from './subjects.js';

// The object store checks every snapshot's SHA-256; node:crypto does it in a fraction of the pure-JS default's time
// (0.5 s of CPU per 30 MiB snapshot). Process-wide, and every kpx process that reads snapshots loads this module.
setSha256Backend('native');

export interface SnapshotStoreOptions {
  /** Replicas (clustered JetStream); default 1. */
  replicas?: number;
  /** Upper bound of the bucket's size in bytes; default unlimited. */
  maxBytes?: number;
}

/** Creates the KPX_SNAPSHOTS object store bucket (file storage) if it does not exist. Idempotent. */
export async function ensureSnapshotStore(js: JetStreamClient, options: SnapshotStoreOptions = {}): Promise<void> {
  await new Objm(js).create(SnapshotBucket, {
    storage: StorageType.File,
    replicas: options.replicas ?? 1,
    ...(options.maxBytes === undefined ? {} : { max_bytes: options.maxBytes }),
  });
}

export interface PutSnapshotOptions {
  /** How many generations older than the latest to keep per node and family (default 2; 0 keeps only the latest). */
  keepOlder?: number;
  /** Signs the encoded snapshot (metadata kpx-key-id, kpx-signature); unsigned without. */
  signer?: Signer;
}

/** Where a stored snapshot is and what it holds. */
export interface SnapshotInfo {
  node: string;
  ipFamily: string;
  mode: string;
  generation: number;
  digest: string;
  /** Encoded size in bytes. */
  size: number;
  /** Object store chunks it was split into. */
  chunks: number;
  /** The object name in the bucket. */
  object: string;
}

/** One retained snapshot generation of a node. */
export interface SnapshotRef {
  node: string;
  ipFamily: string;
  generation: number;
  /** True for the generation getSnapshot returns by default. */
  latest: boolean;
}

const DefaultKeepOlder = 2;
const HeadUpdateAttempts = 8;

/**
 * Stores the complete rule set of a node and family at its generation, makes it the latest one (unless a
 * newer generation is already stored), and deletes generations beyond `keepOlder`. Returns where it is.
 */
export async function putSnapshot(
  js: JetStreamClient,
  ruleSet: NodeRuleSet,
  options: PutSnapshotOptions = {},
): Promise<SnapshotInfo> {
  const keepOlder = options.keepOlder ?? DefaultKeepOlder;
  if (!Number.isInteger(keepOlder) || keepOlder < 0)
    throw new RangeError(`keepOlder must be a non-negative integer, got ${keepOlder}`);
  checkFamily(ruleSet.ipFamily);
  if (!Number.isSafeInteger(ruleSet.generation) || ruleSet.generation < 0) {
    throw new RangeError(`generation must be a non-negative integer, got ${ruleSet.generation}`);
  }
  const object = snapshotObjectName(ruleSet.node, ruleSet.ipFamily, ruleSet.generation);
  const head = snapshotHeadName(ruleSet.node, ruleSet.ipFamily);
  const data = NodeRuleSet.encode(ruleSet).finish();
  const os = await openStore(js);
  const signature: Record<string, string> = options.signer
    ? {
        [SnapshotMeta.KeyId]: options.signer.keyId,
        [SnapshotMeta.Signature]: options.signer.sign(
          snapshotSigningInput(ruleSet.node, ruleSet.ipFamily, String(ruleSet.generation), data),
        ),
      }
    : {};

  let stored: ObjectInfo;
  try {
    stored = await os.putBlob(
      {
        name: object,
        metadata: {
          [SnapshotMeta.Node]: ruleSet.node,
          [SnapshotMeta.IpFamily]: ruleSet.ipFamily,
          [SnapshotMeta.Mode]: ruleSet.mode,
          [SnapshotMeta.Generation]: String(ruleSet.generation),
          [SnapshotMeta.Digest]: ruleSet.digest,
          ...signature,
        },
      },
      data,
    );
  } catch (cause) {
    throw new SnapshotError(
      `storing snapshot ${object} in bucket ${SnapshotBucket} failed (does the bucket exist? see ensureSnapshotStore)`,
      { cause },
    );
  }

  const dropped = await updateHead(os, head, ruleSet.generation, keepOlder);
  for (const generation of dropped) {
    await os.delete(snapshotObjectName(ruleSet.node, ruleSet.ipFamily, generation));
  }
  return {
    node: ruleSet.node,
    ipFamily: ruleSet.ipFamily,
    mode: ruleSet.mode,
    generation: ruleSet.generation,
    digest: ruleSet.digest,
    size: stored.size,
    chunks: stored.chunks,
    object,
  };
}

/** Adds `generation` to the head's retained list (read-modify-write with an expected revision); returns the generations dropped. */
async function updateHead(os: ObjectStore, head: string, generation: number, keepOlder: number): Promise<number[]> {
  for (let attempt = 1; ; attempt++) {
    const current = await os.info(head);
    const known = current === null || current.deleted ? [] : headGenerations(current);
    const all = [...new Set([generation, ...known])].sort((a, b) => b - a);
    const retained = all.slice(0, keepOlder + 1);
    const dropped = all.slice(keepOlder + 1);
    try {
      await os.putBlob(
        {
          name: head,
          metadata: {
            [SnapshotMeta.Generation]: String(retained[0] ?? generation),
            [SnapshotMeta.Generations]: retained.join(','),
          },
        },
        new Uint8Array(0),
        { previousRevision: current?.revision ?? 0 },
      );
      return dropped;
    } catch (error) {
      const conflict = error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamWrongLastSequence;
      if (!conflict || attempt >= HeadUpdateAttempts) {
        throw new SnapshotError(
          `updating snapshot head ${head} failed${conflict ? ` after ${attempt} conflicting writes` : ''}`,
          { cause: error },
        );
      }
    }
  }
}

function headGenerations(info: ObjectInfo): number[] {
  const list = info.metadata?.[SnapshotMeta.Generations] ?? '';
  if (list === '') return [];
  return list.split(',').map((text) => {
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < 0)
      throw new DecodeError(`snapshot head ${info.name}: bad generation list "${list}"`);
    return value;
  });
}

export interface GetSnapshotOptions {
  /** A retained generation; default the latest. */
  generation?: number;
  /** Verify the snapshot's signature with these keys: SignatureError when it does not verify. */
  verifier?: Verifier;
}

/**
 * The stored rule set of a node: the latest one, or the given generation. Without `ipFamily` the node must
 * have snapshots of exactly one family (SnapshotError for a dual-stack node). Undefined when there is none
 * (or the bucket does not exist).
 */
export async function getSnapshot(
  js: JetStreamClient,
  node: string,
  ipFamily?: string,
  options: GetSnapshotOptions = {},
): Promise<NodeRuleSet | undefined> {
  encodeNodeToken(node);
  if (ipFamily !== undefined) checkFamily(ipFamily);
  const os = await openStore(js);
  const families = ipFamily === undefined ? SnapshotFamilies : [ipFamily];
  const heads: { ipFamily: string; generations: number[] }[] = [];
  for (const family of families) {
    const head = await infoOrNull(os, snapshotHeadName(node, family));
    if (head !== null && !head.deleted) heads.push({ ipFamily: family, generations: headGenerations(head) });
  }
  if (heads.length > 1) {
    throw new SnapshotError(
      `node ${node} has snapshots of several IP families (${heads.map((h) => h.ipFamily).join(', ')}); pass one`,
    );
  }
  const found = heads[0];
  if (found === undefined) return undefined;
  const generation = options.generation ?? found.generations[0];
  if (generation === undefined) return undefined;
  const object = snapshotObjectName(node, found.ipFamily, generation);
  let data: Uint8Array | null;
  try {
    data = await os.getBlob(object);
  } catch (cause) {
    throw new SnapshotError(`reading snapshot ${object} failed`, { cause });
  }
  if (data === null) return undefined;
  if (options.verifier) {
    const meta = (await os.info(object))?.metadata ?? {};
    const wrong = options.verifier.check(
      meta[SnapshotMeta.KeyId],
      meta[SnapshotMeta.Signature],
      snapshotSigningInput(node, found.ipFamily, String(generation), data),
    );
    if (wrong !== undefined) throw new SignatureError(`snapshot ${object}: ${wrong}`);
  }
  let ruleSet: NodeRuleSet;
  try {
    ruleSet = NodeRuleSet.decode(data);
  } catch (cause) {
    throw new DecodeError(`snapshot ${object} is not a valid kpx.v1.NodeRuleSet`, { cause });
  }
  if (ruleSet.node !== node || ruleSet.ipFamily !== found.ipFamily || ruleSet.generation !== generation) {
    throw new DecodeError(
      `snapshot ${object} holds node ${ruleSet.node} ${ruleSet.ipFamily} generation ${ruleSet.generation}`,
    );
  }
  return ruleSet;
}

/** The retained snapshot generations of a node, per IP family (IPv4 first), newest first. */
export async function listSnapshots(js: JetStreamClient, node: string): Promise<SnapshotRef[]> {
  encodeNodeToken(node);
  const os = await openStore(js);
  const refs: SnapshotRef[] = [];
  for (const ipFamily of SnapshotFamilies) {
    const head = await infoOrNull(os, snapshotHeadName(node, ipFamily));
    if (head === null || head.deleted) continue;
    headGenerations(head).forEach((generation, index) =>
      refs.push({ node, ipFamily, generation, latest: index === 0 }),
    );
  }
  return refs;
}

/** Deletes every snapshot of a node (e.g. after the Node was deleted); returns how many objects were deleted. */
export async function deleteSnapshots(js: JetStreamClient, node: string): Promise<number> {
  const refs = await listSnapshots(js, node);
  const os = await openStore(js);
  for (const ref of refs) await os.delete(snapshotObjectName(node, ref.ipFamily, ref.generation));
  for (const ipFamily of new Set(refs.map((ref) => ref.ipFamily))) await os.delete(snapshotHeadName(node, ipFamily));
  return refs.length;
}

function checkFamily(ipFamily: string): void {
  if (!(SnapshotFamilies as readonly string[]).includes(ipFamily)) {
    throw new RangeError(`ipFamily must be one of ${SnapshotFamilies.join(', ')}, got "${ipFamily}"`);
  }
}

function openStore(js: JetStreamClient): Promise<ObjectStore> {
  // check=false: no stream lookup here; a missing bucket shows up as "not found" on the first read.
  return new Objm(js).open(SnapshotBucket, false);
}

async function infoOrNull(os: ObjectStore, name: string): Promise<ObjectInfo | null> {
  try {
    return await os.info(name);
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return null;
    throw error;
  }
}
