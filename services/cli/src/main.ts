// The kpx command.
// Each command's module is loaded when it runs: `kpx render` need not load gRPC, NATS and OpenTelemetry.
// `kpx controller` and `kpx executor` load those services; no other command does (test: loaded-modules.test.ts).
import { UsageError } from './errors.js';
import { processIo, type Io } from './io.js';

const USAGE = `usage: kpx <command> [options]

commands:
  render       compile one node's rules from a directory of manifests and print them
  controller   watch the cluster, compile every node, publish deltas on NATS JetStream
  executor     apply one node's deltas to the kernel (iptables), resync, repair drift, ack
  audit        what each node should have, does it, why (--rules, --explain, --generation); the audit log
  replay       a node's rules at any retained generation, diffs between generations, from JetStream alone
  status       every node's desired and acked generation, digest match, lag and last error
  nats-config  the nats-server authorization block (nkey users, least privilege per role)

run 'kpx <command> --help' for a command's options; 'kpx --version' (or 'kpx <command> --version') prints the version
`;

/** Runs the command line; returns the exit code. */
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '--version' || command === 'version' || rest.includes('--version')) {
    io.stdout(`kpx ${(await import('./version.js')).kpxVersion()}\n`);
    return 0;
  }
  try {
    switch (command) {
      case 'render':
        return await (await import('./render.js')).renderCommand(rest, io);
      case 'executor': {
        const { executorCommand } = await import('./executor.js');
        return await untilSignal((signal) => executorCommand(rest, io, { signal }));
      }
      case 'audit':
        return await (await import('./audit.js')).auditCommand(rest, io);
      case 'replay': {
        const { replayCommand } = await import('./replay.js');
        return await untilSignal((signal) => replayCommand(rest, io, { signal }));
      }
      case 'status':
        return await (await import('./status.js')).statusCommand(rest, io);
      case 'nats-config':
        return await (await import('./nats-config.js')).natsConfigCommand(rest, io);
      case 'controller': {
        const { controllerCommand } = await import('./controller.js');
        return await untilSignal((signal) => controllerCommand(rest, io, { signal }));
      }
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        io.stdout(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}\n${USAGE}`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`kpx: ${err.message}\n`);
      return 2;
    }
    io.stderr(`kpx: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

/** Runs a long-running command until SIGINT or SIGTERM. */
async function untilSignal(fn: (signal: AbortSignal) => Promise<number>): Promise<number> {
  const ac = new AbortController();
  const stop = (): void => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    return await fn(ac.signal);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
