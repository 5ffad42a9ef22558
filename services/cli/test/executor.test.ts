// kpx executor's command line: the KubeProxyConfiguration it reads (--config) and what it takes from it.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { defaultKubeProxyConfig, loadKubeProxyConfig, parseCidr } from '@kpx/model';
import { healthCheckListen } from '../src/executor.js';
import { runKpx } from './io.js';

const configText = (extra: string): string =>
  `apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n${extra}`;

test('healthCheckNodePort servers listen where nodePortAddresses say, as kube-proxy', () => {
  assert.deepEqual(healthCheckListen(defaultKubeProxyConfig()), { options: {} });
  const cidrs = loadKubeProxyConfig(configText('nodePortAddresses: ["192.168.0.0/16", "fd00::/64"]\n')).config;
  assert.deepEqual(healthCheckListen(cidrs), { options: { nodePortAddresses: cidrs.nodePortAddresses } });
  assert.deepEqual(cidrs.nodePortAddresses, {
    kind: 'cidrs',
    cidrs: [parseCidr('192.168.0.0/16'), parseCidr('fd00::/64')],
  });
  const primary = healthCheckListen(loadKubeProxyConfig(configText('nodePortAddresses: ["primary"]\n')).config);
  assert.deepEqual(primary.options, {});
  assert.match(primary.warning ?? '', /primary.*every address/);
});

test('kpx executor --config: an invalid file is refused before anything starts, naming the field', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'kpx-executor-config-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'kube-proxy.yaml');
  await writeFile(file, configText('nodePortAddresses: ["10.0.0.0/33"]\n'));
  // Nothing listens on these: the command must fail on the configuration, not on a connection.
  const r = await runKpx(
    'executor',
    '--node',
    'n1',
    '--nats',
    'nats://127.0.0.1:1',
    '--controller',
    '127.0.0.1:1',
    '--dry-run',
    '--config',
    file,
  );
  assert.notEqual(r.code, 0);
  assert.match(r.err, /nodePortAddresses\[0\]/);
  assert.match(r.err, /10\.0\.0\.0\/33/);
});
