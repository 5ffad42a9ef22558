// The Kubernetes Lease store through client-node against a minimal coordination.k8s.io/v1 endpoint that checks
// resourceVersions as kube-apiserver does (409 Conflict on a stale one): create, read, renew, a lost
// compare-and-set, and two electors where only one leads.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { kubernetesLeaseStore, LeaseConflictError, LeaderElector } from '../src/index.js';

interface StoredLease {
  metadata: { name: string; namespace: string; resourceVersion: string };
  spec: Record<string, unknown>;
}

// client-node accepts plain http only with insecure-skip-tls-verify (see libs/testing's kubeconfig).
const kubeconfig = (server: string): string =>
  `apiVersion: v1\nkind: Config\nclusters: [{name: t, cluster: {server: '${server}', insecure-skip-tls-verify: true}}]\nusers: [{name: t, user: {token: t}}]\ncontexts: [{name: t, context: {cluster: t, user: t}}]\ncurrent-context: t\n`;

async function leaseServer(): Promise<{ url: string; leases: Map<string, StoredLease>; close: () => Promise<void> }> {
  const leases = new Map<string, StoredLease>();
  let rv = 100;
  const send = (res: ServerResponse, code: number, body: unknown): void => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const status = (code: number, reason: string): object => ({
    kind: 'Status',
    apiVersion: 'v1',
    status: 'Failure',
    code,
    reason,
    message: reason,
  });
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let text = '';
    req.on('data', (b: Buffer) => (text += b.toString()));
    req.on('end', () => {
      const m = /^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/leases(?:\/([^/?]+))?/.exec(req.url ?? '');
      if (!m) return send(res, 404, status(404, 'NotFound'));
      const [, ns, name] = m;
      const body = text ? (JSON.parse(text) as StoredLease) : undefined;
      const key = `${ns}/${name ?? body?.metadata.name}`;
      const have = leases.get(key);
      const stored = (): StoredLease => ({
        metadata: { name: body!.metadata.name, namespace: ns!, resourceVersion: String(++rv) },
        spec: body!.spec,
      });
      if (req.method === 'GET')
        return have
          ? send(res, 200, { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', ...have })
          : send(res, 404, status(404, 'NotFound'));
      if (req.method === 'POST') {
        if (have) return send(res, 409, status(409, 'AlreadyExists'));
        leases.set(key, stored());
        return send(res, 201, leases.get(key));
      }
      if (req.method === 'PUT') {
        if (!have) return send(res, 404, status(404, 'NotFound'));
        if (body?.metadata.resourceVersion !== have.metadata.resourceVersion)
          return send(res, 409, status(409, 'Conflict'));
        leases.set(key, stored());
        return send(res, 200, leases.get(key));
      }
      return send(res, 405, status(405, 'MethodNotAllowed'));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    leases,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

test('the Lease store: create, read, renew with resourceVersion; a stale one is a conflict; micro times on the wire', async (t) => {
  const api = await leaseServer();
  const dir = await mkdtemp(join(tmpdir(), 'kpx-lease-'));
  t.after(async () => {
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });
  const kubeconfigPath = join(dir, 'kubeconfig');
  await writeFile(kubeconfigPath, kubeconfig(api.url));
  const store = kubernetesLeaseStore({ kubeconfigPath, name: 'kpx-controller', namespace: 'kpx-system' });
  assert.equal(await store.get(), undefined);
  const t0 = '2026-12-05T01:00:00.123Z';
  const v1 = await store.create({ holder: 'a', epoch: 1, leaseDurationMs: 15_000, acquireTime: t0, renewTime: t0 });
  const wire = api.leases.get('kpx-system/kpx-controller')!;
  assert.deepEqual(wire.spec, {
    holderIdentity: 'a',
    leaseDurationSeconds: 15,
    leaseTransitions: 1,
    acquireTime: '2026-12-05T01:00:00.123000Z',
    renewTime: '2026-12-05T01:00:00.123000Z',
  });
  const got = await store.get();
  assert.equal(got?.version, v1);
  assert.deepEqual(got?.record, { holder: 'a', epoch: 1, leaseDurationMs: 15_000, acquireTime: t0, renewTime: t0 });
  const v2 = await store.update({ ...got.record, renewTime: '2026-12-05T01:00:02.000Z' }, v1);
  assert.notEqual(v2, v1);
  await assert.rejects(store.update({ ...got.record, holder: 'b' }, v1), LeaseConflictError);
  await assert.rejects(store.create({ ...got.record, holder: 'b' }), LeaseConflictError);

  // Two electors on one Lease: exactly one leads.
  const started: string[] = [];
  const electors = ['x', 'y'].map(
    (id) =>
      new LeaderElector({
        store: kubernetesLeaseStore({ kubeconfigPath, name: 'two', namespace: 'kpx-system' }),
        identity: id,
        leaseDurationMs: 3000,
        renewDeadlineMs: 2000,
        retryPeriodMs: 200,
        logger: { info: () => undefined, warn: () => undefined },
        onStartedLeading: () => started.push(id),
        onStoppedLeading: () => undefined,
      }),
  );
  for (const e of electors) e.start();
  await new Promise((r) => setTimeout(r, 1200));
  assert.equal(started.length, 1, `one leader: ${started.join(',')}`);
  assert.equal(electors.filter((e) => e.isLeader()).length, 1);
  assert.equal(api.leases.get('kpx-system/two')?.spec['holderIdentity'], started[0]);
  for (const e of electors) await e.stop();
});
