// npm start: the whole of kpx on one machine, on the manifests in examples/ (or the directory given).
//   nats-server with JetStream on loopback, the controller watching the directory, and one `kpx executor` per
//   node of the manifests. As root each executor programs its own network namespace (kpx-up-<node>, created
//   here, loopback only, never linked to the root namespace); otherwise the executors run with --dry-run.
// Everything runs secured (issue #15) with throwaway secrets: gRPC mTLS, NATS users per role, signed deltas.
// Ctrl-C stops everything and removes the namespaces and the secrets.
import { execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { defaultKubeProxyConfig, readManifestDir } from '@kpx/model';
import { ManifestsDirSource, runController } from '@kpx/controller';
import { createTestPki, startNatsServer } from '@kpx/testing';
import { natsServerAuthConfig, NatsRole, newNkeyUser, signerFromPem } from '@kpx/transport';

const dir = process.argv[2] ?? 'examples';
const grpcListen = process.env.KPX_GRPC_LISTEN ?? '127.0.0.1:10260';
const metricsListen = process.env.KPX_METRICS_LISTEN ?? '127.0.0.1:10249';
const root = process.getuid?.() === 0;
const kpx = new URL('../services/cli/bin/kpx.js', import.meta.url).pathname;

const nodes = (await readManifestDir(dir))
  .filter((m) => m.object.kind === 'Node')
  .map((m) => m.object.metadata?.name ?? '')
  .filter(Boolean);
if (nodes.length === 0) {
  console.error(`kpx: no Node objects in ${dir}/: nothing to run`);
  process.exit(1);
}

const cleanups = [];
let stopping = false;
async function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  console.log('\nkpx: stopping');
  for (const c of cleanups.reverse()) {
    try {
      await c();
    } catch (err) {
      console.error(`kpx: while stopping: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  process.exit(code);
}
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());

/**
 * Throwaway secrets (issue #15), in a temporary directory removed on exit: an Ed25519 signing key (the controller
 * signs every delta and snapshot, the executors verify), one nkey per NATS user with least privilege per role, and
 * a CA (openssl) with the controller's server certificate (IP 127.0.0.1), one client certificate per node
 * (CN=system:node:<node>, O=system:nodes) and an operator's (kpx status, kpx audit).
 */
async function demoSecrets() {
  const secrets = await mkdtemp(path.join(tmpdir(), 'kpx-up-'));
  cleanups.push(() => rm(secrets, { recursive: true, force: true }));
  const file = async (name, text) => {
    const f = path.join(secrets, name);
    await writeFile(f, text, { mode: 0o600 });
    return f;
  };
  const keys = generateKeyPairSync('ed25519');
  const signingPem = keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const verifyKeys = await file('verify.pem', keys.publicKey.export({ type: 'spki', format: 'pem' }).toString());
  const users = [
    { role: NatsRole.Controller, name: 'controller' },
    { role: NatsRole.Operator, name: 'operator' },
    ...nodes.map((node) => ({ role: NatsRole.Node, node, name: `node-${node}` })),
  ];
  const creds = {};
  const specs = [];
  for (const u of users) {
    const k = newNkeyUser();
    creds[u.name] = await file(`${u.name}.nk`, `${k.seed}\n`);
    specs.push({ role: u.role, nkey: k.publicKey, ...(u.node ? { node: u.node } : {}) });
  }
  const pki = createTestPki(
    {
      operator: { cn: 'kpx-operator' },
      ...Object.fromEntries(nodes.map((node) => [`node-${node}`, { cn: `system:node:${node}`, o: ['system:nodes'] }])),
    },
    { dir: secrets },
  );
  const clientTls = (name) => [
    '--tls-cert-file',
    pki.clients[name].certFile,
    '--tls-private-key-file',
    pki.clients[name].keyFile,
    '--ca-file',
    pki.caFile,
  ];
  return {
    dir: secrets,
    signer: signerFromPem(signingPem),
    verifyKeys,
    creds,
    natsConfig: natsServerAuthConfig(specs),
    grpcTls: { certFile: pki.server.certFile, keyFile: pki.server.keyFile, caFile: pki.caFile },
    clientTls,
  };
}

try {
  const secrets = await demoSecrets();
  const nats = await startNatsServer({ jetstream: true, extraConfig: secrets.natsConfig });
  cleanups.push(() => nats.stop());
  const controller = await runController({
    source: new ManifestsDirSource({ dir }),
    sourceName: `manifests ${dir}`,
    natsUrl: nats.url,
    grpcListen,
    metricsListen,
    config: defaultKubeProxyConfig(),
    logLevel: process.env.KPX_LOG_LEVEL ?? 'warn',
    natsAuth: { credsFile: secrets.creds.controller },
    signer: secrets.signer,
    grpcTls: secrets.grpcTls,
  });
  cleanups.push(() => controller.stop());

  // Clients dial a name of the server certificate (DNS:localhost; an IP SAN works, but Node warns about it).
  const dial = controller.grpcAddress.replace(/^127\.0\.0\.1:/, 'localhost:');
  const executors = [];
  for (const [i, node] of nodes.entries()) {
    const args = [
      'executor',
      '--node',
      node,
      '--nats',
      nats.url,
      '--controller',
      dial,
      '--healthz-listen',
      `127.0.0.1:${10256 + 10 * (i + 1)}`,
      '--metrics-listen',
      `127.0.0.1:${10257 + 10 * (i + 1)}`,
      '--log-level',
      process.env.KPX_LOG_LEVEL ?? 'warn',
      '--nats-creds',
      secrets.creds[`node-${node}`],
      '--verify-keys',
      secrets.verifyKeys,
      ...secrets.clientTls(`node-${node}`),
    ];
    if (root) {
      const ns = `kpx-up-${node}`.slice(0, 15);
      execFileSync('ip', ['netns', 'add', ns]);
      cleanups.push(() => execFileSync('ip', ['netns', 'del', ns]));
      execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      args.push('--netns', ns);
    } else {
      args.push('--dry-run');
    }
    const child = spawn(process.execPath, [kpx, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    cleanups.push(async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    });
    child.on('exit', (code, signal) => {
      if (!stopping) console.error(`kpx: executor of ${node} exited (${signal ?? code})`);
    });
    executors.push({ node, args });
  }

  console.log(`kpx is running on ${dir}/ (${nodes.length} nodes, ${root ? 'each executor in its own network namespace' : 'executors in --dry-run: run as root to program namespaces'})

  NATS JetStream      ${nats.url}
  controller gRPC     ${controller.grpcAddress}
  controller metrics  ${controller.metricsUrl}/metrics  ${controller.metricsUrl}/healthz
${executors.map((e) => `  executor ${e.node.padEnd(10)} ${e.args.includes('--netns') ? `netns ${e.args[e.args.indexOf('--netns') + 1]}`.padEnd(18) : 'dry-run'.padEnd(18)} http://${e.args[e.args.indexOf('--healthz-listen') + 1]}/healthz  http://${e.args[e.args.indexOf('--metrics-listen') + 1]}/metrics`).join('\n')}

  status:   npx kpx status --controller ${dial} ${secrets.clientTls('operator').join(' ')}
  audit:    npx kpx audit --controller ${dial} ${secrets.clientTls('operator').join(' ')}
  replay:   npx kpx replay --nats ${nats.url} --nats-creds ${secrets.creds.operator} --verify-keys ${secrets.verifyKeys} --node ${nodes[0]}
  secrets:  ${secrets.dir} (throwaway: a signing key, its public key, one NATS nkey per role, a CA, the controller's,
            each node's and an operator's certificate; removed on exit)
  rules:    ${root ? `ip netns exec kpx-up-${nodes[0]} iptables-save -t nat` : `npx kpx render --manifests ${dir} --node ${nodes[0]}`}
  change:   edit a file in ${dir}/ and watch the generation move in kpx status

Ctrl-C stops everything${root ? ' and removes the namespaces' : ''}.`);
} catch (err) {
  console.error(`kpx: ${err instanceof Error ? err.message : String(err)}`);
  await stop(1);
}
