// Only `kpx controller` and `kpx executor` load those services (and the controller's Kubernetes client): each
// command runs in a fresh node process whose resolved modules are logged by resolve-log-hooks.ts.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';

const hooks = new URL('./resolve-log-hooks.js', import.meta.url).href;
const mainModule = new URL('../src/main.js', import.meta.url).href;
let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kpx-loaded-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The URLs of every module `kpx ...argv` resolves, run in a child process (its output discarded). */
async function modulesLoadedBy(...argv: string[]): Promise<string[]> {
  const file = join(dir, `${argv.join('_').replace(/[^a-z0-9_-]/gi, '')}.log`);
  const script = `
    import { register } from 'node:module';
    register(${JSON.stringify(hooks)}, { data: { file: ${JSON.stringify(file)} } });
    const { main } = await import(${JSON.stringify(mainModule)});
    process.exitCode = await main(${JSON.stringify(argv)}, { stdout: () => undefined, stderr: () => undefined });
  `;
  await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]).catch(
    (err: { code?: unknown }) => {
      // A usage error or an unreachable controller exits non-zero: what it loaded is still logged.
      if (typeof err.code !== 'number') throw err;
    },
  );
  return (await readFile(file, 'utf8')).split('\n').filter(Boolean);
}

const services = (urls: readonly string[]): string[] =>
  urls.filter((u) =>
    /\/services\/(controller|executor)\/|\/@kpx\/(controller|executor)\/|\/@kubernetes\/client-node\//.test(u),
  );

test('kpx audit, status, replay, render and nats-config load neither the controller nor the executor', async () => {
  for (const argv of [
    ['audit', '--help'],
    ['audit', 'log', '--nats', 'nats://127.0.0.1:1', '--since', 'x'],
    ['status', '--controller', '127.0.0.1:1'],
    ['replay', '--help'],
    ['render', '--help'],
    ['nats-config', '--help'],
  ]) {
    const urls = await modulesLoadedBy(...argv);
    assert.ok(
      urls.some((u) => u.includes('/services/cli/dist/src/')),
      `kpx ${argv.join(' ')} was observed loading`,
    );
    assert.deepEqual(services(urls), [], `kpx ${argv.join(' ')}`);
  }
});

test('kpx controller and kpx executor load their service', async () => {
  const controller = services(await modulesLoadedBy('controller', '--help'));
  assert.ok(
    controller.some((u) => u.includes('controller/')),
    'the controller',
  );
  assert.ok(
    controller.some((u) => u.includes('/@kubernetes/client-node/')),
    "the controller's Kubernetes client",
  );
  assert.ok(
    services(await modulesLoadedBy('executor', '--help')).some((u) => u.includes('executor/')),
    'the executor',
  );
});
