// Helpers of the IPVS suite (runs under a real IPVS kernel: `npm run test:ipvs` boots tools/ipvs-vm/vm-run).
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { IpvsRealServer, RuleObject } from '@kpx/proto';
import { RuleKind } from '@kpx/proto';

export function svc(
  protocol: 'TCP' | 'UDP',
  address: string,
  port: number,
  servers: [string, number][],
  extra: { flags?: number; timeoutSeconds?: number; scheduler?: string } = {},
): RuleObject {
  const realServers: IpvsRealServer[] = servers.map(([a, p]) => ({ address: a, port: p, weight: 1 }));
  const value = {
    protocol,
    address,
    port,
    scheduler: extra.scheduler ?? 'rr',
    flags: extra.flags ?? 0,
    timeoutSeconds: extra.timeoutSeconds ?? 0,
    realServers,
  };
  const key = `${protocol}/${address.includes(':') ? `[${address}]` : address}:${port}`;
  return { kind: RuleKind.IpvsService, key, payload: { $case: 'ipvsService', value } };
}

export function vip(address: string): RuleObject {
  return {
    kind: RuleKind.IpvsAddress,
    key: `kube-ipvs0/${address}`,
    payload: { $case: 'ipvsAddress', value: { interface: 'kube-ipvs0', address } },
  };
}

export function ipset(name: string, type: string, entries: string[] = []): RuleObject {
  return {
    kind: RuleKind.IpsetSet,
    key: name,
    payload: {
      $case: 'ipsetSet',
      value: { name, type, family: 'inet', comment: 'test', hashSize: 1024, maxElem: 65536, portRange: '', entries },
    },
  };
}

export function members(set: string, owner: string, entries: string[]): RuleObject {
  return {
    kind: RuleKind.IpsetEntries,
    key: `${set}/${owner}`,
    payload: { $case: 'ipsetEntries', value: { set, entries } },
  };
}

/** A TCP connection held open from inside a namespace: send a line, get the server's reply line. */
export interface HeldConnection {
  exchange(): Promise<string>;
  close(): Promise<void>;
}

const HoldScript = `
const net = require('node:net');
const rl = require('node:readline');
const s = net.connect({ host: process.argv[1], port: Number(process.argv[2]) });
s.setEncoding('utf8');
let buf = '';
s.on('data', (d) => { buf += d; let i; while ((i = buf.indexOf('\\n')) >= 0) { process.stdout.write(buf.slice(0, i + 1)); buf = buf.slice(i + 1); } });
s.on('error', (e) => { process.stdout.write('ERROR ' + e.code + '\\n'); process.exit(1); });
rl.createInterface({ input: process.stdin }).on('line', () => s.write('x\\n')).on('close', () => { s.end(); s.on('close', () => process.exit(0)); });
`;

export function holdConnection(netns: string, host: string, port: number): HeldConnection {
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', HoldScript, host, String(port)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  const waiters: ((l: string) => void)[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => {
    const w = waiters.shift();
    if (w) w(l);
    else lines.push(l);
  });
  return {
    exchange: () => {
      child.stdin.write('x\n');
      const ready = lines.shift();
      if (ready !== undefined) return Promise.resolve(ready);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no reply on the held connection')), 5000);
        waiters.push((l) => {
          clearTimeout(t);
          resolve(l);
        });
      });
    },
    close: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.stdin.end();
      }),
  };
}
