// Node-name encoding in subjects and the names derived from it (no server needed).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  decodeNodeToken,
  deltaMsgId,
  deltaSubject,
  encodeNodeToken,
  InvalidNodeNameError,
  isValidNodeName,
  nodeOfDeltaSubject,
  snapshotHeadName,
  snapshotObjectName,
} from '../src/index.js';

describe('node names in subjects', () => {
  it('encodes dots reversibly and keeps the token a single subject token', () => {
    for (const node of [
      'n1',
      'ip-10-0-0-1.ec2.internal',
      'a',
      'worker-1.zone-b.example.com',
      '0.0.0.0',
      'a'.repeat(253),
    ]) {
      const token = encodeNodeToken(node);
      assert.ok(!token.includes('.'), token);
      assert.equal(decodeNodeToken(token), node);
      const subject = deltaSubject(node);
      assert.equal(subject.split('.').length, 3, subject);
      assert.equal(nodeOfDeltaSubject(subject), node);
    }
    assert.equal(deltaSubject('ip-10-0-0-1.ec2.internal'), 'kpx.delta.ip-10-0-0-1_ec2_internal');
  });

  it('keeps distinct node names distinct', () => {
    // "a.b" and "a-b" and "a_b" (invalid) must never share a subject.
    assert.notEqual(encodeNodeToken('a.b'), encodeNodeToken('a-b'));
    assert.throws(() => encodeNodeToken('a_b'), InvalidNodeNameError);
  });

  it('rejects names that are not DNS-1123 subdomains', () => {
    for (const bad of [
      '',
      'A',
      'node_1',
      '-a',
      'a-',
      'a..b',
      '.a',
      'a.',
      'a*',
      'a>',
      'a b',
      'ä',
      'a'.repeat(254),
      'a.-b',
    ]) {
      assert.equal(isValidNodeName(bad), false, bad);
      assert.throws(() => encodeNodeToken(bad), InvalidNodeNameError, bad);
    }
  });

  it('rejects tokens that no valid node name encodes to', () => {
    for (const bad of ['', 'a.b', 'a__b', '_a', 'a_', 'A', 'a_-b', 'a*']) {
      assert.throws(() => decodeNodeToken(bad), InvalidNodeNameError, bad);
    }
    assert.throws(() => nodeOfDeltaSubject('kpx.other.n1'), InvalidNodeNameError);
  });

  it('names msg ids and snapshot objects', () => {
    assert.equal(deltaMsgId('n1.example', 'IPv6', 42), 'n1.example:IPv6:42');
    assert.equal(snapshotHeadName('n1.example', 'IPv4'), 'n1_example/IPv4');
    assert.equal(snapshotObjectName('n1.example', 'IPv4', 42), 'n1_example/IPv4/00000000000000000042');
  });
});
