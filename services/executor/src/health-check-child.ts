// The health check servers of a node whose rules live in another network namespace: an agent (@kpx/common's
// serveAgent) started by the executor with `ip netns exec NS node health-check-child.js OPTIONS_JSON`, it binds
// there. Serves `sync` (answered with its result) and `healthy` (a notification); the results of retries go to the
// executor as `result` events. It exits when stdin closes, that is when the executor stops or dies.
import { serveAgent } from '@kpx/common';
import type { NodePortAddresses } from '@kpx/model';
import {
  ChildEvent,
  EveryAddress,
  LocalHealthCheckServers,
  type HealthCheckService,
  type HealthCheckSyncResult,
} from './health-check.js';

const options = JSON.parse(process.argv[2] ?? '{}') as { nodePortAddresses?: NodePortAddresses; retryMs?: number };
let healthy = false;
const servers = new LocalHealthCheckServers({
  proxyHealthy: () => healthy,
  nodePortAddresses: options.nodePortAddresses ?? EveryAddress,
  retryMs: options.retryMs ?? 5_000,
  // Syncs the executor asked for are answered by the call; retries are reported as events.
  onResult: (result: HealthCheckSyncResult, retry: boolean) => {
    if (retry) agent.emit(ChildEvent.Result, result);
  },
});

const agent = serveAgent(
  {
    sync: (family: string, services: readonly HealthCheckService[]) => servers.sync(family, services),
    healthy: (value: boolean) => {
      healthy = value;
    },
  },
  { onClose: () => servers.close() },
);
