// What the CLI's NATS tests share: a real nats-server and a controller watching a copy of examples/ (edits to the
// copy make new generations), and polling.
import { cp, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultKubeProxyConfig } from '@kpx/model';
import { ManifestsDirSource, runController, type RunningController } from '@kpx/controller';
import { startNatsServer, type NatsServer } from '@kpx/testing';

export const ExamplesDir = new URL('../../../../examples/', import.meta.url).pathname;

export interface ExamplesController {
  readonly nats: NatsServer;
  /** The copy of examples/ the controller watches. */
  readonly dir: string;
  readonly controller: RunningController;
}

/** Starts nats-server and a controller on a fresh copy of examples/ (`prefix` names the temp dir); waits for generation 1. */
export async function startExamplesController(prefix: string): Promise<ExamplesController> {
  const nats = await startNatsServer({ jetstream: true });
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await cp(ExamplesDir, dir, { recursive: true });
  const controller = await runController({
    source: new ManifestsDirSource({ dir, debounceMs: 20 }),
    sourceName: 'test',
    natsUrl: nats.url,
    grpcListen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    config: { ...defaultKubeProxyConfig(), minSyncPeriodMs: 0 },
    logLevel: 'silent',
  });
  await waitFor(() => controller.pipeline.generation === 1);
  return { nats, dir, controller };
}

/** Polls `cond` every 20 ms; throws after `ms`. */
export async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}
