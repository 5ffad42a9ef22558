import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canonicalIP, cidrContains, ipFamilyOf, joinHostPort, parseCidr } from '../src/ip.js';

test('canonicalIP normalises like Go net.IP.String()', () => {
  assert.equal(canonicalIP('10.0.0.1'), '10.0.0.1');
  assert.equal(canonicalIP('FD00:0:0:0:0:0:0:1'), 'fd00::1');
  assert.equal(canonicalIP('fd00:10:244:1:0:0:0:10'), 'fd00:10:244:1::10');
  assert.equal(canonicalIP('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
  assert.equal(canonicalIP('::ffff:10.1.2.3'), '10.1.2.3');
  assert.equal(canonicalIP('::'), '::');
  assert.equal(canonicalIP('1::'), '1::');
  assert.equal(canonicalIP('1:0:1:0:1:0:1:0'), '1:0:1:0:1:0:1:0');
  for (const bad of ['', '10.0.0', '10.0.0.256', 'fd00::1::2', 'abc', '10.0.0.1/24', 'fe80::1%eth0']) {
    assert.equal(canonicalIP(bad), undefined, bad);
  }
});

test('ipFamilyOf', () => {
  assert.equal(ipFamilyOf('10.0.0.1'), 'IPv4');
  assert.equal(ipFamilyOf('fd00::1'), 'IPv6');
  assert.equal(ipFamilyOf('nope'), undefined);
});

test('parseCidr clears host bits and rejects junk', () => {
  assert.deepEqual(parseCidr('10.244.1.7/16'), {
    family: 'IPv4',
    address: '10.244.0.0',
    prefix: 16,
    text: '10.244.0.0/16',
  });
  assert.equal(parseCidr('fd00:10:244::1/56')?.text, 'fd00:10:244::/56');
  assert.equal(parseCidr(' 203.0.113.0/24 ')?.text, '203.0.113.0/24');
  for (const bad of ['10.0.0.0', '10.0.0.0/33', 'fd00::/129', '10.0.0.0/-1', 'x/8', '10.0.0.0/8/8']) {
    assert.equal(parseCidr(bad), undefined, bad);
  }
});

test('cidrContains', () => {
  const c = parseCidr('10.244.0.0/16');
  assert.ok(c);
  assert.ok(cidrContains(c, '10.244.3.2'));
  assert.ok(!cidrContains(c, '10.245.0.1'));
  assert.ok(!cidrContains(c, 'fd00::1'));
  const all = parseCidr('0.0.0.0/0');
  assert.ok(all && cidrContains(all, '127.0.0.1'));
  const v6 = parseCidr('fd00:10:244::/56');
  assert.ok(v6 && cidrContains(v6, 'fd00:10:244:3::10') && !cidrContains(v6, 'fd00:10:245::1'));
});

test('joinHostPort brackets IPv6', () => {
  assert.equal(joinHostPort('10.0.0.1', 80), '10.0.0.1:80');
  assert.equal(joinHostPort('fd00::1', 80), '[fd00::1]:80');
});
