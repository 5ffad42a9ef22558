// Running the kernel's command-line tools, in the current network namespace or in a named one
// (`ip netns exec NAME …`). Input goes to stdin; a failure becomes a CommandError carrying stderr.
import { spawn } from 'node:child_process';
import { CommandError } from './errors.js';

export interface Command {
  /** The program, looked up on PATH, e.g. "iptables-restore". */
  readonly file: string;
  readonly args: readonly string[];
  /** Written to the command's stdin, which is then closed. Empty stdin when absent. */
  readonly input?: string;
  /** Kill the command (SIGKILL) after this many milliseconds; the runner's default when absent. */
  readonly timeoutMs?: number;
}

export interface CommandResult {
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs commands; a fake can stand in for it in unit tests. */
export interface CommandRunner {
  /** The network namespace commands run in (`ip netns exec`); undefined for the runner's own. */
  readonly netns: string | undefined;
  /** Resolves with the output when the command exits 0; rejects with CommandError otherwise. */
  run(command: Command): Promise<CommandResult>;
}

export interface CommandRunnerOptions {
  /** Run every command inside this named network namespace (it must exist: `ip netns add`). */
  readonly netns?: string;
  /** Default timeout per command. Default 60 s. */
  readonly timeoutMs?: number;
}

/** The command line a runner executes for `command`, e.g. `ip netns exec ns1 iptables-save -t nat`. */
export function commandLine(command: Pick<Command, 'file' | 'args'>, netns?: string): string[] {
  const own = [command.file, ...command.args];
  return netns === undefined ? own : ['ip', 'netns', 'exec', netns, ...own];
}

const NETNS_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export function createCommandRunner(options: CommandRunnerOptions = {}): CommandRunner {
  const { netns } = options;
  if (netns !== undefined && (!NETNS_NAME.test(netns) || netns === '.' || netns === '..')) {
    throw new RangeError(`invalid network namespace name ${JSON.stringify(netns)}`);
  }
  const defaultTimeout = options.timeoutMs ?? 60_000;
  return {
    netns,
    run: (command) =>
      spawnCommand(commandLine(command, netns), command.input ?? '', command.timeoutMs ?? defaultTimeout),
  };
}

/**
 * Runs `argv` with an unlimited stack where the limits allow it (else with the inherited one): iptables-nft 1.8.9's
 * iptables-save recurses per rule and dies of SIGSEGV under the default 8 MiB stack on a 10,000-service nat table
 * (measured: killed after 77 s; with an unlimited stack it completes in 74 s).
 */
const UNLIMITED_STACK = ['sh', '-c', 'ulimit -s unlimited 2>/dev/null; exec "$@"', 'sh'];

function spawnCommand(argv: readonly string[], input: string, timeoutMs: number): Promise<CommandResult> {
  const [file = '', ...args] = [...UNLIMITED_STACK, ...argv];
  const display = argv.join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (cause) => {
      clearTimeout(timer);
      reject(new CommandError({ command: display, stderr: cause.message, cause }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (code === 0 && !timedOut) resolve({ stdout, stderr });
      else
        reject(
          new CommandError({
            command: display,
            exitCode: code ?? undefined,
            signal: signal ?? undefined,
            stdout,
            stderr,
            timedOut,
          }),
        );
    });
    // The command may exit before it read all of its input; its exit status tells what went wrong.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}
