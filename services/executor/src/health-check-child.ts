// The health check servers of a node whose rules live in another network namespace: started by the executor with
// `ip netns exec NS node health-check-child.js OPTIONS_JSON`, it binds there. Requests come as JSON lines on stdin
// (ChildRequest), each sync is answered on stdout (ChildResponse; id 0 for the results of retries). It exits when
// stdin closes, that is when the executor stops or dies.
import { createInterface } from 'node:readline';
import type { NodePortAddresses } from '@kpx/model';
import { EveryAddress, LocalHealthCheckServers, type ChildRequest, type ChildResponse, type HealthCheckSyncResult } from './health-check.js';

const options = JSON.parse(process.argv[2] ?? '{}') as { nodePortAddresses?: NodePortAddresses; retryMs?: number };
let healthy = false;
const write = (m: ChildResponse): void => void process.stdout.write(`${JSON.stringify(m)}\n`);
const servers = new LocalHealthCheckServers({
  proxyHealthy: () => healthy,
  nodePortAddresses: options.nodePortAddresses ?? EveryAddress,
  retryMs: options.retryMs ?? 5_000,
  // Syncs the executor asked for are answered below; retries are reported with id 0.
  onResult: (result: HealthCheckSyncResult, retry: boolean) => {
    if (retry) write({ id: 0, result });
  },
});

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  let m: ChildRequest;
  try {
    m = JSON.parse(line) as ChildRequest;
  } catch {
    process.stderr.write(`health check process: not a request: ${line.slice(0, 200)}\n`);
    return;
  }
  if (m.op === 'healthy') {
    healthy = m.value;
    return;
  }
  void servers.sync(m.family, m.services).then((result) => write({ id: m.id, result }));
});
lines.on('close', () => {
  void servers.close().then(() => process.exit(0));
});
