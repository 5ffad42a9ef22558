#!/usr/bin/env node
// Probe client for the netns e2e harness. Run inside a namespace:
//   node probe-client.mjs '<json>'
//   with json = [{ proto, host, port, count?, timeoutMs?, messages?, stopOnFailure? }, ...]
// Runs the requests one after another (count connections/datagrams each, sequentially; with stopOnFailure, the
// rest of a request's count is skipped after the first outcome that is not a reply) and prints on stdout one
// JSON array holding, per request, an array of outcomes:
//   { kind: 'reply', pod, clientIP, replies }   every message got an answer ("<pod> <clientIP>")
//   { kind: 'refused' }                          ECONNREFUSED: TCP RST or ICMP port unreachable (REJECT)
//   { kind: 'timeout' }                          no answer within timeoutMs (what DROP looks like)
//   { kind: 'unreachable', code }                ICMP net/host unreachable (EHOSTUNREACH, ENETUNREACH)
//   { kind: 'error', code }                      anything else (never expected by a test)
import net from 'node:net';
import dgram from 'node:dgram';

const UNREACHABLE = new Set(['EHOSTUNREACH', 'ENETUNREACH']);

function classify(err) {
  const code = err && typeof err === 'object' && 'code' in err ? String(err.code) : String(err);
  if (code === 'ECONNREFUSED') return { kind: 'refused' };
  if (UNREACHABLE.has(code)) return { kind: 'unreachable', code };
  return { kind: 'error', code };
}

function parseReply(line) {
  const [pod = '', clientIP = ''] = line.trim().split(/\s+/);
  return { pod, clientIP };
}

function tcpOnce(req) {
  return new Promise((resolve) => {
    const messages = req.messages ?? 1;
    let settled = false;
    let buffered = '';
    const replies = [];
    const sock = net.connect({ host: req.host, port: req.port });
    const finish = (result) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish({ kind: 'timeout' }), req.timeoutMs ?? 2000);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`hello 1\n`));
    sock.on('data', (chunk) => {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        replies.push(parseReply(buffered.slice(0, nl)));
        buffered = buffered.slice(nl + 1);
        if (replies.length < messages) {
          sock.write(`hello ${replies.length + 1}\n`);
        } else {
          const first = replies[0];
          const same = replies.every((r) => r.pod === first.pod && r.clientIP === first.clientIP);
          finish(
            same
              ? { kind: 'reply', pod: first.pod, clientIP: first.clientIP, replies: replies.length }
              : { kind: 'error', code: `replies changed mid-connection: ${JSON.stringify(replies)}` },
          );
        }
      }
    });
    sock.on('error', (err) => finish(classify(err)));
    sock.on('close', () => finish({ kind: 'error', code: `closed after ${replies.length} replies` }));
  });
}

function udpOnce(req) {
  return new Promise((resolve) => {
    const sock = dgram.createSocket(net.isIPv6(req.host) ? 'udp6' : 'udp4');
    let settled = false;
    const finish = (result) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.close();
      resolve(result);
    };
    const timer = setTimeout(() => finish({ kind: 'timeout' }), req.timeoutMs ?? 2000);
    sock.on('error', (err) => finish(classify(err)));
    sock.on('message', (msg) => {
      const { pod, clientIP } = parseReply(msg.toString('utf8'));
      finish({ kind: 'reply', pod, clientIP, replies: 1 });
    });
    sock.connect(req.port, req.host, () => sock.send('hello 1\n'));
  });
}

const requests = JSON.parse(process.argv[2] ?? '[]');
const results = [];
for (const req of requests) {
  const outcomes = [];
  const count = req.count ?? 1;
  for (let i = 0; i < count; i++) {
    const outcome = await (req.proto === 'udp' ? udpOnce(req) : tcpOnce(req));
    outcomes.push(outcome);
    if (req.stopOnFailure === true && outcome.kind !== 'reply') break;
  }
  results.push(outcomes);
}
process.stdout.write(`${JSON.stringify(results)}\n`);
