// docker-compose.yml: `docker-compose config` accepts it (when the binary is installed: Debian's docker-compose),
// and what it promises holds: three executors with NET_ADMIN, one per node of examples/, each in its own network
// namespace; Prometheus scrapes the controller and every executor; Grafana gets the kpx dashboard.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';

const root = new URL('../../../', import.meta.url).pathname;
interface Service {
  image?: string;
  command?: string[];
  cap_add?: string[];
  network_mode?: string;
  volumes?: string[];
}
const compose = parse(readFileSync(join(root, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, Service>;
};
const hasCompose = spawnSync('docker-compose', ['version'], { encoding: 'utf8' }).status === 0;

test(
  'docker-compose config accepts docker-compose.yml',
  { skip: !hasCompose && 'docker-compose is not installed (apt-get install docker-compose)' },
  () => {
    const r = spawnSync('docker-compose', ['-f', join(root, 'docker-compose.yml'), 'config', '-q'], {
      encoding: 'utf8',
      cwd: root,
    });
    assert.equal(r.status, 0, r.stderr);
  },
);

test('three executors, one per node of examples/, with NET_ADMIN in their own netns; every image pinned', () => {
  const nodes = parseAllDocuments(readFileSync(join(root, 'examples/nodes.yaml'), 'utf8'))
    .map((d) => (d.toJS() as { metadata: { name: string } }).metadata.name)
    .sort();
  const executors = Object.entries(compose.services).filter(([name]) => name.startsWith('executor-'));
  assert.equal(executors.length, 3);
  const served = executors.map(([, s]) => s.command?.[s.command.indexOf('--node') + 1]).sort();
  assert.deepEqual(served, nodes);
  for (const [name, s] of executors) {
    assert.ok(s.cap_add?.includes('NET_ADMIN'), `${name}: NET_ADMIN`);
    assert.equal(s.network_mode, undefined, `${name}: its own network namespace`);
  }
  for (const [name, s] of Object.entries(compose.services))
    assert.match(s.image ?? '', /:[\w.-]+$/, `${name}: a pinned image`);
  assert.ok(compose.services['controller']?.command?.includes('/examples'));
  assert.ok(compose.services['nats']?.command?.includes('-js'));
});

test('Prometheus scrapes the controller and every executor; Grafana is provisioned with the kpx dashboard', () => {
  const prom = parse(readFileSync(join(root, 'deploy/compose/prometheus.yml'), 'utf8')) as {
    scrape_configs: { static_configs: { targets: string[] }[] }[];
  };
  const targets = prom.scrape_configs.flatMap((c) => c.static_configs.flatMap((s) => s.targets)).sort();
  const executors = Object.keys(compose.services)
    .filter((n) => n.startsWith('executor-'))
    .map((n) => `${n}:10249`);
  assert.deepEqual(targets, ['controller:10249', ...executors].sort());
  // An executor's /metrics is on loopback unless told otherwise: each must listen where Prometheus looks.
  for (const [name, s] of Object.entries(compose.services).filter(([n]) => n.startsWith('executor-')))
    assert.equal(s.command?.[s.command.indexOf('--metrics-listen') + 1], '0.0.0.0:10249', name);
  const grafana = compose.services['grafana']?.volumes ?? [];
  assert.ok(
    grafana.some((v) => v.startsWith('./deploy/base/dashboards:')),
    'the dashboard of deploy/base',
  );
  const provider = parse(
    readFileSync(join(root, 'deploy/compose/grafana/provisioning/dashboards/kpx.yml'), 'utf8'),
  ) as { providers: { options: { path: string } }[] };
  assert.ok(
    grafana.some((v) => v.split(':')[1] === provider.providers[0]?.options.path),
    'mounted where the provider looks',
  );
});
