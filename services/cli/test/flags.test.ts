// The flags every command shares (flags.ts): one wording of each usage error, exit status 2, and --help.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runKpx } from './io.js';

const usageErrors: { argv: string[]; err: string }[] = [
  {
    argv: ['status', '--controller', '127.0.0.1:1', '-o', 'xml'],
    err: 'kpx: -o must be table, json or yaml, not "xml"\n',
  },
  {
    argv: ['audit', '--controller', '127.0.0.1:1', '-o', 'xml'],
    err: 'kpx: -o must be table, json or yaml, not "xml"\n',
  },
  {
    argv: ['replay', '--nats', 'nats://127.0.0.1:1', '--node', 'n1', '-o', 'yaml'],
    err: 'kpx: -o must be table or json, not "yaml"\n',
  },
  {
    argv: ['audit', '--controller', '127.0.0.1:1', '--ip-family', 'ipv5'],
    err: 'kpx: --ip-family must be ipv4 or ipv6, not "ipv5"\n',
  },
  {
    argv: ['replay', '--nats', 'nats://127.0.0.1:1', '--node', 'n1', '--ip-family', 'IPv4'],
    err: 'kpx: --ip-family must be ipv4 or ipv6, not "IPv4"\n',
  },
  {
    argv: ['render', '--manifests', '.', '--node', 'n1', '--ip-family', 'v6'],
    err: 'kpx: --ip-family must be ipv4 or ipv6, not "v6"\n',
  },
  {
    argv: ['replay', '--nats', 'nats://127.0.0.1:1', '--node', 'n1', '--to=-1'],
    err: 'kpx: --to must be a generation number, not "-1"\n',
  },
  {
    argv: ['audit', '--nats', 'nats://127.0.0.1:1', '--node', 'n1', '--generation', '1.5'],
    err: 'kpx: --generation must be a generation number, not "1.5"\n',
  },
  {
    argv: [
      'executor',
      '--node',
      'n1',
      '--nats',
      'nats://127.0.0.1:1',
      '--controller',
      '127.0.0.1:1',
      '--drift-check',
      '1w',
    ],
    err: 'kpx: --drift-check must be a duration like 90s, 15m or 24h, not "1w"\n',
  },
];

test('shared flags: the same usage error from every command, exit status 2', async () => {
  for (const { argv, err } of usageErrors) {
    const r = await runKpx(...argv);
    assert.deepEqual({ code: r.code, out: r.out, err: r.err }, { code: 2, out: '', err }, `kpx ${argv.join(' ')}`);
  }
});

test('a required flag missing, an unknown flag: the reason, then the command usage', async () => {
  for (const [argv, reason, usage] of [
    [['status'], '--controller is required', 'usage: kpx status'],
    [['replay', '--nats', 'nats://127.0.0.1:1'], '--node is required', 'usage: kpx replay'],
    [['render', '--node', 'n1'], '--manifests is required', 'usage: kpx render'],
    [['nats-config'], '--nkeys-dir is required', 'usage: kpx nats-config'],
    [['status', '--bogus'], "Unknown option '--bogus'", 'usage: kpx status'],
    [['render', '--node'], "Option '--node <value>' argument missing", 'usage: kpx render'],
  ] as const) {
    const r = await runKpx(...argv);
    assert.equal(r.code, 2, `kpx ${argv.join(' ')}`);
    assert.ok(r.err.startsWith(`kpx: ${reason}`), `kpx ${argv.join(' ')}: ${r.err.split('\n')[0]}`);
    assert.ok(r.err.includes(`\n${usage}`), `kpx ${argv.join(' ')}: the usage follows`);
  }
});

test('-h and --help print the usage on stdout and exit 0', async () => {
  for (const command of ['render', 'controller', 'executor', 'audit', 'replay', 'status', 'nats-config']) {
    for (const help of ['-h', '--help']) {
      const r = await runKpx(command, help);
      assert.equal(r.code, 0, `kpx ${command} ${help}`);
      assert.ok(r.out.startsWith(`usage: kpx ${command}`), `kpx ${command} ${help}`);
      assert.equal(r.err, '');
    }
  }
});
