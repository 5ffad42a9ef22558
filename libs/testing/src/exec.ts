// Running system tools (ip, iptables-restore, node) and capturing their output.
import { spawn } from 'node:child_process';
import { CommandError } from './errors.js';

export interface RunOptions {
  /** Text written to the command's stdin (then closed). */
  input?: string;
  /** Kill the command (SIGKILL) after this many milliseconds. Default 30 s. */
  timeoutMs?: number;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; throws CommandError (with its stderr) unless it exits 0. */
export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const display = [command, ...args].join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (cause) => {
      clearTimeout(timer);
      reject(new CommandError({ command: display, exitCode: undefined, stderr: String(cause), cause }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (code === 0) {
        resolve({ stdout, stderr });
      } else {
        const why = signal === null ? stderr : `${stderr}\n(killed by ${signal})`;
        reject(new CommandError({ command: display, exitCode: code ?? undefined, stderr: why }));
      }
    });
    child.stdin.on('error', () => {
      // The command may exit before reading all of its input; its exit status reports the problem.
    });
    child.stdin.end(options.input ?? '');
  });
}

/** Runs `ip -n <ns> -batch -` with the given commands (one per line); no namespace means the root one. */
export async function ipBatch(ns: string | undefined, commands: readonly string[]): Promise<void> {
  if (commands.length === 0) return;
  const args = ns === undefined ? ['-batch', '-'] : ['-n', ns, '-batch', '-'];
  await run('ip', args, { input: `${commands.join('\n')}\n` });
}

/** Runs a command inside a network namespace (`ip netns exec`). */
export function runIn(
  ns: string,
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<RunResult> {
  return run('ip', ['netns', 'exec', ns, command, ...args], options);
}
