#!/usr/bin/env node
// Pod server for the netns e2e harness. Run inside a pod namespace:
//   node pod-server.mjs --name <podName> [--tcp <port>]... [--udp <port>]...
// Listens on every address (IPv4 and IPv6, dual-stack sockets bound to ::) and answers
//   - every line received on a TCP connection with one line "<podName> <clientIP>\n" (the connection stays open
//     for as long as the client keeps it open, so long-lived connections and affinity can be tested);
//   - every UDP datagram with one datagram "<podName> <clientIP>\n".
// <clientIP> is the peer address as the pod saw it, without the ::ffff: prefix of v4-mapped addresses.
// Prints "READY" on stdout once every socket is listening; exits on SIGTERM/SIGINT.
import net from 'node:net';
import dgram from 'node:dgram';

function parseArgs(argv) {
  const out = { name: '', tcp: [], udp: [] };
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`missing value for ${flag}`);
    if (flag === '--name') out.name = value;
    else if (flag === '--tcp') out.tcp.push(Number(value));
    else if (flag === '--udp') out.udp.push(Number(value));
    else throw new Error(`unknown flag ${flag}`);
  }
  if (out.name === '') throw new Error('--name is required');
  return out;
}

const unmap = (addr) => (addr.startsWith('::ffff:') ? addr.slice(7) : addr);

function listenTcp(name, port) {
  return new Promise((resolve, reject) => {
    const server = net.createServer((sock) => {
      const client = unmap(sock.remoteAddress ?? '?');
      let buffered = '';
      sock.setEncoding('utf8');
      sock.on('data', (chunk) => {
        buffered += chunk;
        let nl;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          buffered = buffered.slice(nl + 1);
          sock.write(`${name} ${client}\n`);
        }
      });
      sock.on('end', () => sock.end());
      sock.on('error', () => sock.destroy());
    });
    server.once('error', reject);
    server.listen({ port, host: '::', ipv6Only: false }, () => resolve(server));
  });
}

function listenUdp(name, port) {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket({ type: 'udp6', ipv6Only: false });
    sock.on('message', (_msg, rinfo) => {
      sock.send(`${name} ${unmap(rinfo.address)}\n`, rinfo.port, rinfo.address);
    });
    sock.once('error', reject);
    sock.bind(port, '::', () => resolve(sock));
  });
}

const args = parseArgs(process.argv.slice(2));
const sockets = [];
for (const port of args.tcp) sockets.push(await listenTcp(args.name, port));
for (const port of args.udp) sockets.push(await listenUdp(args.name, port));
process.stdout.write('READY\n');
const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
