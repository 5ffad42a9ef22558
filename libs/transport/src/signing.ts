// Ed25519 signatures of deltas and snapshots (issue #15): the controller signs, executors and replay verify.
//
// What is signed is the exact payload bytes bound to the node and generation (and, for a snapshot, the IP family):
// `kpx.delta.v1\0<node>\0<generation>\0<payload>` and `kpx.snapshot.v1\0<node>\0<family>\0<generation>\0<payload>`.
// A signature therefore cannot be moved to another node's subject or to another generation. The key id is the
// first 16 hex digits of the SHA-256 of the public key (SPKI DER); a verifier holds several keys, so a key is
// rotated by listing the new one next to the old one on every node before the controller switches.
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { SignatureError } from './errors.js';

/** Signs with one Ed25519 private key. */
export interface Signer {
  readonly keyId: string;
  /** The base64 signature of `data`. */
  sign(data: Uint8Array): string;
}

/** Verifies with any of its Ed25519 public keys. */
export interface Verifier {
  readonly keyIds: readonly string[];
  /** Why `signature` (base64) by `keyId` over `data` is not valid, or undefined when it is. */
  check(keyId: string | undefined, signature: string | undefined, data: Uint8Array): string | undefined;
}

/** The key id of an Ed25519 public key: first 16 hex digits of the SHA-256 of its SPKI DER encoding. */
export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex')
    .slice(0, 16);
}

/** A signer of a PEM PKCS#8 Ed25519 private key. Throws SignatureError for anything else. */
export function signerFromPem(pem: string): Signer {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (cause) {
    throw new SignatureError('the signing key is not a PEM private key', { cause });
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new SignatureError(`the signing key is ${key.asymmetricKeyType ?? 'not asymmetric'}, not Ed25519`);
  const keyId = keyIdOf(createPublicKey(key));
  return { keyId, sign: (data) => sign(null, data, key).toString('base64') };
}

const PemBlock = /-----BEGIN ([A-Z ]+)-----[\s\S]+?-----END \1-----/g;

/**
 * A verifier of every Ed25519 key in `pem` (one or more PEM blocks, PUBLIC KEY or, for convenience, PRIVATE KEY
 * whose public half is taken). Throws SignatureError when there is none or a block is not an Ed25519 key.
 */
export function verifierFromPem(pem: string): Verifier {
  const keys = new Map<string, KeyObject>();
  for (const m of pem.matchAll(PemBlock)) {
    let key: KeyObject;
    try {
      key = createPublicKey(m[0]);
    } catch (cause) {
      throw new SignatureError(`a ${m[1] ?? ''} block of the verify keys is not a key`, { cause });
    }
    if (key.asymmetricKeyType !== 'ed25519')
      throw new SignatureError(`a verify key is ${key.asymmetricKeyType ?? 'not asymmetric'}, not Ed25519`);
    keys.set(keyIdOf(key), key);
  }
  if (keys.size === 0) throw new SignatureError('no PEM public key found in the verify keys');
  return {
    keyIds: [...keys.keys()],
    check(keyId, signature, data) {
      if (keyId === undefined || keyId === '' || signature === undefined || signature === '') return 'unsigned';
      const key = keys.get(keyId);
      if (!key) return `signed with unknown key ${JSON.stringify(keyId)}`;
      let ok = false;
      try {
        ok = verify(null, data, key, Buffer.from(signature, 'base64'));
      } catch {
        ok = false;
      }
      return ok ? undefined : `signature by key ${keyId} does not match`;
    },
  };
}

const encoder = new TextEncoder();

function framed(label: string, fields: readonly string[], payload: Uint8Array): Uint8Array {
  const head = encoder.encode(`${label}\0${fields.join('\0')}\0`);
  const out = new Uint8Array(head.length + payload.length);
  out.set(head, 0);
  out.set(payload, head.length);
  return out;
}

/** What a delta's signature covers. */
export function deltaSigningInput(node: string, generation: string, payload: Uint8Array): Uint8Array {
  return framed('kpx.delta.v1', [node, generation], payload);
}

/** What a snapshot's signature covers. */
export function snapshotSigningInput(
  node: string,
  ipFamily: string,
  generation: string,
  payload: Uint8Array,
): Uint8Array {
  return framed('kpx.snapshot.v1', [node, ipFamily, generation], payload);
}
