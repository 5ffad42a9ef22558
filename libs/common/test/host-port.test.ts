import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parsePort, splitHostPort } from '../src/host-port.js';

test('splitHostPort reads host:port as Go net.SplitHostPort', () => {
  const ok: [string, string, string][] = [
    ['127.0.0.1:80', '127.0.0.1', '80'],
    ['[::1]:0', '::1', '0'],
    ['[fd00::10:1]:65535', 'fd00::10:1', '65535'],
    [':9090', '', '9090'],
    ['localhost:http', 'localhost', 'http'],
    ['127.0.0.1:', '127.0.0.1', ''],
    ['[1.2.3.4]:80', '1.2.3.4', '80'],
  ];
  for (const [s, host, port] of ok) assert.deepEqual(splitHostPort(s), { host, port }, s);
  const bad: [string, RegExp][] = [
    ['', /missing ":port"/],
    ['127.0.0.1', /missing ":port"/],
    ['::1:80', /brackets/],
    ['[::1]', /missing ":port"/],
    ['[::1]80', /after "\]"/],
    ['[::1:0', /missing "\]"/],
    ['[::1]:80:90', /too many colons/],
    ['a]b:80', /unexpected "\]"/],
    ['a[b:80', /unexpected "\["/],
  ];
  for (const [s, reason] of bad) {
    const r = splitHostPort(s);
    assert.match(r.error ?? '', reason, s);
  }
});

test('parsePort: decimal 0-65535 only', () => {
  assert.equal(parsePort('0'), 0);
  assert.equal(parsePort('65535'), 65535);
  for (const bad of ['', '65536', '-1', '1e3', ' 80', 'http', '080808']) assert.equal(parsePort(bad), undefined, bad);
});
