// Ed25519 signing of deltas and snapshots (issue #15): key ids, several verify keys, what a signature binds.
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import {
  deltaSigningInput,
  keyIdOf,
  SignatureError,
  signerFromPem,
  snapshotSigningInput,
  verifierFromPem,
} from '../src/index.js';

const pair = (): { priv: string; pub: string; id: string } => {
  const k = generateKeyPairSync('ed25519');
  const id = createHash('sha256')
    .update(k.publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex')
    .slice(0, 16);
  return {
    priv: k.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    pub: k.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    id,
  };
};

test('key ids, rotation with several keys, and what a signature binds', () => {
  const a = pair();
  const b = pair();
  const signer = signerFromPem(a.priv);
  assert.equal(signer.keyId, a.id);
  assert.equal(keyIdOf(generateKeyPairSync('ed25519').publicKey).length, 16);
  const verifier = verifierFromPem(`${b.pub}\n${a.pub}`);
  assert.deepEqual([...verifier.keyIds].sort(), [a.id, b.id].sort());
  const payload = new Uint8Array([1, 2, 3]);
  const sig = signer.sign(deltaSigningInput('n1', '7', payload));
  assert.equal(verifier.check(a.id, sig, deltaSigningInput('n1', '7', payload)), undefined);
  // Another node, generation or payload, a snapshot's framing: not the same signature.
  assert.match(verifier.check(a.id, sig, deltaSigningInput('n2', '7', payload)) ?? '', /does not match/);
  assert.match(verifier.check(a.id, sig, deltaSigningInput('n1', '8', payload)) ?? '', /does not match/);
  assert.match(verifier.check(a.id, sig, deltaSigningInput('n1', '7', new Uint8Array([1, 2]))) ?? '', /does not match/);
  assert.match(verifier.check(a.id, sig, snapshotSigningInput('n1', 'IPv4', '7', payload)) ?? '', /does not match/);
  assert.match(verifier.check(b.id, sig, deltaSigningInput('n1', '7', payload)) ?? '', /does not match/);
  assert.equal(verifier.check(undefined, undefined, payload), 'unsigned');
  assert.match(verifier.check('0123456789abcdef', sig, payload) ?? '', /unknown key/);
  assert.match(verifier.check(a.id, 'not base64 at all!', payload) ?? '', /does not match/);
});

test('keys that are not Ed25519, or no key, are refused', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
  assert.throws(
    () => signerFromPem(rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()),
    SignatureError,
  );
  assert.throws(
    () => verifierFromPem(rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString()),
    SignatureError,
  );
  assert.throws(() => verifierFromPem('nothing here'), /no PEM public key/);
  assert.throws(() => signerFromPem('nothing here'), SignatureError);
});
