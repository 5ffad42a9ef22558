import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ListenAddressError, formatListenAddress, parseListenAddress } from '../src/index.js';

test('parses host:port, [ipv6]:port and :port', () => {
  const cases: [string, string, number][] = [
    ['127.0.0.1:10249', '127.0.0.1', 10249],
    ['0.0.0.0:0', '0.0.0.0', 0],
    ['[::1]:0', '::1', 0],
    ['[::]:10256', '::', 10256],
    ['[fd00::10:1]:65535', 'fd00::10:1', 65535],
    [':9090', '127.0.0.1', 9090],
    ['localhost:8080', 'localhost', 8080],
    ['kpx-controller.kube-system.svc:80', 'kpx-controller.kube-system.svc', 80],
  ];
  for (const [input, host, port] of cases) {
    assert.deepEqual(parseListenAddress(input), { host, port }, input);
  }
});

test('bad addresses are ListenAddressErrors naming the value', () => {
  const bad = [
    '',
    '127.0.0.1',
    '::1:80',
    '[::1]',
    '[::1]80',
    '[::1:0',
    '[1.2.3.4]:80',
    '127.0.0.1:',
    '127.0.0.1:x',
    '127.0.0.1:65536',
    '127.0.0.1:-1',
    '127.0.0.1:1e3',
    'bad host:80',
    'under_score:80',
    ' 127.0.0.1:80',
    '127.0.0.1:80 ',
  ];
  for (const value of bad) {
    assert.throws(
      () => parseListenAddress(value),
      (err: unknown) => {
        assert.ok(err instanceof ListenAddressError, `${JSON.stringify(value)} should be refused`);
        assert.equal(err.value, value);
        assert.ok(err.message.includes(JSON.stringify(value)));
        return true;
      },
    );
  }
});

test('formatListenAddress brackets IPv6 and round-trips', () => {
  for (const value of ['127.0.0.1:10249', '[::1]:0', 'localhost:1']) {
    assert.equal(formatListenAddress(parseListenAddress(value)), value);
  }
});
