// deploy/: every object of the base and every overlay, as `kubectl kustomize` builds them, validated against the
// Kubernetes OpenAPI schemas (kubernetes-models: validators compiled from the API's schemas, offline; CRDs are
// checked by apiVersion/kind only), then the properties kpx promises: least-privilege RBAC, pinned images, probes
// and resources on every container, the executor where kube-proxy runs, and alerts on metrics kpx exports.
// Without kubectl (>= 1.21, whose kustomize knows `patches` and `labels`) the builds are skipped, said so, and
// only the files themselves are validated.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { MetricName } from '@kpx/telemetry';

const root = new URL('../../../', import.meta.url).pathname;
const Builds = ['base', 'overlays/ipvs', 'overlays/dev', 'overlays/cert-manager'];
/** CRDs: not in the Kubernetes schemas; their apiVersion and kind are checked. */
const Crds: Record<string, readonly string[]> = {
  'monitoring.coreos.com/v1': ['ServiceMonitor', 'PrometheusRule'],
  'cert-manager.io/v1': ['Issuer', 'Certificate'],
};

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; [k: string]: unknown };
// Manifest objects are untyped JSON, read through `any`: a wrong path fails the assertion that reads it.
/* eslint-disable @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-return */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

function kubectlKustomize(): string | undefined {
  const v = spawnSync('kubectl', ['version', '--client', '-o', 'json'], { encoding: 'utf8' });
  if (v.status !== 0) return 'kubectl is not installed';
  const minor = Number(/"minor":\s*"(\d+)/.exec(v.stdout)?.[1] ?? 0);
  if (minor < 21) return `kubectl 1.${minor} embeds a kustomize without patches/labels (needs 1.21+)`;
  return undefined;
}
const skipBuild = kubectlKustomize();

function build(dir: string): Obj[] {
  const text = execFileSync('kubectl', ['kustomize', join(root, 'deploy', dir)], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  return parseAllDocuments(text)
    .map((d) => d.toJS() as Obj)
    .filter(Boolean);
}

/** Validates an object against the Kubernetes schema of its apiVersion and kind; returns the problem, if any. */
async function validate(o: Obj): Promise<string | undefined> {
  const crd = Crds[o.apiVersion];
  if (crd) return crd.includes(o.kind) ? undefined : `${o.apiVersion} has no kind ${o.kind} kpx uses`;
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  let mod: Record<string, new (data: unknown) => { validate(): void }>;
  try {
    mod = (await import(`kubernetes-models/${group ? `${group}/` : ''}${version}/${o.kind}`)) as typeof mod;
  } catch {
    return `no schema for ${o.apiVersion} ${o.kind}`;
  }
  const Model = mod[o.kind];
  if (!Model) return `no model ${o.kind}`;
  try {
    new Model(o).validate();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

function podSpecs(objs: Obj[]): { owner: string; spec: Any }[] {
  return objs
    .filter((o) => ['Deployment', 'DaemonSet', 'StatefulSet'].includes(o.kind))
    .map((o) => ({ owner: `${o.kind}/${o.metadata.name}`, spec: (o as Any).spec.template.spec }));
}

test('every file under deploy/ holds objects valid against the Kubernetes schemas (without kustomize)', async () => {
  const files: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (/\.ya?ml$/.test(e.name) && e.name !== 'kustomization.yaml' && !e.name.startsWith('kube-proxy-config'))
        files.push(join(d, e.name));
    }
  };
  walk(join(root, 'deploy/base'));
  walk(join(root, 'deploy/overlays'));
  const problems: string[] = [];
  for (const f of files) {
    for (const doc of parseAllDocuments(readFileSync(f, 'utf8'))) {
      const o = doc.toJS() as Obj | null;
      if (!o) continue;
      // Strategic-merge patches are partial objects: only their apiVersion and kind can be checked.
      if (f.includes('/overlays/')) continue;
      const p = await validate(o);
      if (p) problems.push(`${f} ${o.kind}/${o.metadata.name}: ${p}`);
    }
  }
  assert.deepEqual(problems, []);
  assert.ok(files.length >= 6, `${files.length} files`);
});

for (const dir of Builds) {
  test(
    `kubectl kustomize deploy/${dir}: schema-valid; RBAC, images, probes, resources`,
    { skip: skipBuild && `${skipBuild}: only the files were validated` },
    async () => {
      const objs = build(dir);
      const problems: string[] = [];
      for (const o of objs) {
        const p = await validate(o);
        if (p) problems.push(`${o.kind}/${o.metadata.name}: ${p}`);
        if (o.kind !== 'Namespace' && !o.kind.startsWith('Cluster') && o.metadata.namespace !== 'kpx-system')
          problems.push(`${o.kind}/${o.metadata.name} is not in kpx-system`);
      }
      assert.deepEqual(problems, []);

      // RBAC: no wildcards; the controller reads what kube-proxy reads and holds a Lease; the executor has nothing.
      for (const r of objs.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role')) {
        for (const rule of (r as Any).rules as Any[]) {
          for (const f of ['verbs', 'resources', 'apiGroups'])
            assert.ok(!(rule[f] as string[]).includes('*'), `${r.kind}/${r.metadata.name}: wildcard ${f}`);
          assert.ok(
            !(rule.verbs as string[]).some((v) =>
              ['delete', 'deletecollection', 'patch', 'escalate', 'bind', 'impersonate'].includes(v),
            ),
            `${r.kind}/${r.metadata.name}: ${rule.verbs}`,
          );
        }
      }
      const rules = (kind: string): string[] =>
        ((objs.find((o) => o.kind === kind && o.metadata.name === 'kpx-controller') as Any).rules as Any[])
          .flatMap((r) => (r.resources as string[]).flatMap((res) => (r.verbs as string[]).map((v) => `${res}:${v}`)))
          .sort();
      assert.deepEqual(rules('ClusterRole'), [
        'endpointslices:get',
        'endpointslices:list',
        'endpointslices:watch',
        'nodes:get',
        'nodes:list',
        'nodes:watch',
        'services:get',
        'services:list',
        'services:watch',
      ]);
      assert.deepEqual(rules('Role'), ['events:create', 'leases:create', 'leases:get', 'leases:update']);
      const bound = objs
        .filter((o) => o.kind.endsWith('Binding'))
        .flatMap((b) => ((b as Any).subjects as Any[]).map((s) => s.name as string));
      assert.ok(!bound.includes('kpx-executor'), 'the executor has no RBAC');

      // Every container: a pinned image, probes, requests and a memory limit.
      for (const { owner, spec } of podSpecs(objs)) {
        for (const c of spec.containers as Any[]) {
          const image = c.image as string;
          assert.match(
            image,
            /^[\w.\-/]+:[\w.-]+(@sha256:[0-9a-f]{64})?$/,
            `${owner} ${c.name}: image ${image} has a tag`,
          );
          assert.ok(!image.endsWith(':latest'), `${owner} ${c.name}: ${image}`);
          assert.ok(c.livenessProbe && c.readinessProbe, `${owner} ${c.name}: liveness and readiness probes`);
          assert.ok(
            c.resources?.requests?.cpu && c.resources?.requests?.memory && c.resources?.limits?.memory,
            `${owner} ${c.name}: resources`,
          );
        }
      }

      // The executor, where and as kube-proxy runs.
      const ds = (objs.find((o) => o.kind === 'DaemonSet') as Any).spec.template.spec;
      assert.equal(ds.hostNetwork, true);
      assert.equal(ds.priorityClassName, 'system-node-critical');
      assert.ok((ds.tolerations as Any[]).some((t) => t.operator === 'Exists' && !t.key));
      const ex = ds.containers[0];
      assert.deepEqual(
        (ex.volumeMounts as Any[])
          .map((m) => m.mountPath)
          .filter((p: string) => ['/run/xtables.lock', '/lib/modules'].includes(p))
          .sort(),
        ['/lib/modules', '/run/xtables.lock'],
      );
      assert.deepEqual((ex.env as Any[]).find((e) => e.name === 'NODE_NAME')?.valueFrom, {
        fieldRef: { fieldPath: 'spec.nodeName' },
      });
      assert.deepEqual(ex.livenessProbe.httpGet, { path: '/healthz', port: 10256 });
      // /metrics is not on the healthz port: the executor Service (scraped) points at --metrics-listen's port.
      assert.ok((ex.args as string[]).includes('--metrics-listen=$(HOST_IP):10249'));
      const exSvc = objs.find((o) => o.kind === 'Service' && o.metadata.name === 'kpx-executor') as Any;
      assert.deepEqual(
        (exSvc.spec.ports as Any[]).map((p) => p.port),
        [10249],
      );
      assert.ok(
        ex.securityContext.privileged === true &&
          ['NET_ADMIN', 'NET_RAW'].every((c) => (ex.securityContext.capabilities.add as string[]).includes(c)),
      );
      assert.equal(ds.automountServiceAccountToken, false);

      // The controller: leader election, replicas, probes on its metrics port, non-root.
      const dep = (objs.find((o) => o.kind === 'Deployment') as Any).spec;
      const ctl = dep.template.spec.containers[0];
      assert.ok((ctl.args as string[]).includes('--leader-elect'));
      assert.equal(ctl.livenessProbe.httpGet.path, '/livez');
      assert.equal(ctl.readinessProbe.httpGet.path, '/healthz');
      assert.equal(dep.template.spec.securityContext.runAsNonRoot, true);
      const natsReplicas = (objs.find((o) => o.kind === 'StatefulSet') as Any).spec.replicas as number;
      const streamReplicas = (ctl.env as Any[]).find((e) => e.name === 'KPX_NATS_REPLICAS')?.value as string;
      assert.equal(Number(streamReplicas), natsReplicas, 'stream replicas = NATS servers');
      if (dir === 'overlays/dev') assert.deepEqual([dep.replicas, natsReplicas], [1, 1]);
      else assert.deepEqual([dep.replicas, natsReplicas], [2, 3]);
      assert.ok(objs.some((o) => o.kind === 'PodDisruptionBudget' && o.metadata.name === 'kpx-controller'));
      if (dir === 'overlays/ipvs') assert.ok((ex.args as string[]).includes('--backend=ipvs'));
      if (dir === 'overlays/cert-manager')
        assert.deepEqual(
          objs
            .filter((o) => o.kind === 'Certificate')
            .map((o) => o.metadata.name)
            .sort(),
          ['kpx-ca', 'kpx-controller-tls', 'kpx-executor-tls', 'kpx-nats-tls'],
        );
    },
  );
}

test('alerts and the dashboard use metrics kpx exports', () => {
  const known = new Set<string>(Object.values(MetricName));
  const used = (text: string): string[] => [
    ...new Set(
      [...text.matchAll(/\b((?:kpx|kubeproxy)_[a-z_]+)/g)].map((m) => m[1]!.replace(/_(bucket|count|sum)$/, '')),
    ),
  ];
  const rules = readFileSync(join(root, 'deploy/base/monitoring.yaml'), 'utf8');
  const dashboard = readFileSync(join(root, 'deploy/base/dashboards/kpx.json'), 'utf8');
  JSON.parse(dashboard);
  for (const m of [...used(rules), ...used(dashboard)]) assert.ok(known.has(m), `${m} is not a metric kpx exports`);
  for (const m of [
    'kpx_controller_nodes_in_sync',
    'kpx_controller_nodes_pending',
    'kpx_controller_nodes_stale',
    'kubeproxy_network_programming_duration_seconds',
    'kubeproxy_sync_proxy_rules_iptables_restore_failures_total',
    'kpx_controller_unpublished_seconds',
    'kpx_controller_sync_failures_total',
  ]) {
    assert.ok(rules.includes(m), `an alert on ${m}`);
  }
});
