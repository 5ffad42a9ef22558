// Running work in another network namespace. A socket (netlink, a listening TCP port) belongs to the namespace it
// was opened in, and Node cannot setns(2) a thread; so the work runs in a small child process, an agent, started
// as `ip netns exec NAME node SCRIPT ARGS…` (or as `node SCRIPT ARGS…` in this process's namespace). The parent
// calls the agent's methods by name over the child's stdin and stdout (protocol.ts; the child serves them with
// serveAgent). The child exits when its stdin closes: when the parent closes it, stops or dies.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import type { AgentMessage, AgentWireError } from './protocol.js';

export interface AgentProcessOptions {
  /** The agent's script (a JavaScript file that calls serveAgent), run by this process's node binary. */
  readonly script: string;
  readonly args?: readonly string[];
  /** Runs the agent inside this network namespace; else in this process's. */
  readonly netns?: string | undefined;
  /** Names the agent in errors (`IPVS agent`). */
  readonly name: string;
  /** Whether the agent keeps this process alive while no call is pending (default false: only during calls). */
  readonly keepAlive?: boolean;
  /** Turns an error a method threw, as it crossed the pipe, into the error its call rejects with. */
  readonly decodeError?: (wire: unknown) => Error;
  /** The error pending and later calls reject with once the agent has exited (`why`: how; `stderr`: its tail). */
  readonly exitError?: (why: string, stderr: string) => Error;
  /** Events the agent emits. */
  readonly onEvent?: (event: string, data: unknown) => void;
  /** Each line the agent writes on stderr (and any stdout line that is not a message). */
  readonly onStderr?: (line: string) => void;
  /** Once, when the agent has exited or could not be started, after pending calls were rejected. */
  readonly onExit?: (why: string) => void;
}

/** The error of calls to an agent that is gone. */
export class AgentExitedError extends Error {
  override readonly name = 'AgentExitedError';
}

const defaultDecodeError = (wire: unknown): Error =>
  new Error((wire as AgentWireError | undefined)?.message ?? JSON.stringify(wire));

/** One agent child process; calls are answered in any order. Not restarted: a new AgentProcess starts a new child. */
export class AgentProcess {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly exit: Promise<void>;
  private nextId = 1;
  private exitedWith: Error | undefined;
  private closing = false;
  private stderr = '';

  constructor(private readonly opts: AgentProcessOptions) {
    const node = [process.execPath, opts.script, ...(opts.args ?? [])];
    const [file, ...args] = opts.netns === undefined ? node : ['ip', 'netns', 'exec', opts.netns, ...node];
    this.child = spawn(file!, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.child.stderr }).on('line', (line) => this.onStderr(line));
    createInterface({ input: this.child.stdout }).on('line', (line) => this.onLine(line));
    this.child.stdin.on('error', () => undefined);
    this.exit = new Promise((resolve) => {
      const done = (why: string): void => {
        if (this.exitedWith) return;
        this.exitedWith =
          opts.exitError?.(why, this.stderr.trim()) ??
          new AgentExitedError(`${opts.name}: ${why}${this.stderr ? `: ${this.stderr.trim()}` : ''}`);
        for (const p of this.pending.values()) p.reject(this.exitedWith);
        this.pending.clear();
        opts.onExit?.(why);
        resolve();
      };
      this.child.on('error', (err) => done(err.message));
      // 'close', not 'exit': the replies it wrote before exiting have been read by then.
      this.child.on('close', (code, signal) => done(`exit ${code ?? signal}`));
    });
    // Without keepAlive, an idle agent must not keep this process alive on its own.
    this.idle();
  }

  /** The error calls reject with since the agent exited; undefined while it runs. */
  get exited(): Error | undefined {
    return this.exitedWith;
  }

  /** Calls `method` in the agent; resolves with its result, rejects with its error or when the agent exits. */
  call<T>(method: string, ...args: unknown[]): Promise<T> {
    if (this.exitedWith) return Promise.reject(this.exitedWith);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.idle();
      this.child.stdin.write(`${JSON.stringify({ id, method, args })}\n`);
    });
  }

  /** Calls `method` in the agent without waiting for (or getting) an answer. */
  notify(method: string, ...args: unknown[]): void {
    if (!this.exitedWith) this.child.stdin.write(`${JSON.stringify({ method, args })}\n`);
  }

  /** Closes the agent's stdin (it exits) and waits for it to exit; kills it after `killAfterMs`. */
  async close(killAfterMs = 3_000): Promise<void> {
    if (this.exitedWith) return;
    this.closing = true;
    this.idle();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), killAfterMs);
    this.child.stdin.end();
    await this.exit;
    clearTimeout(timer);
  }

  private onLine(line: string): void {
    let msg: AgentMessage;
    try {
      msg = JSON.parse(line) as AgentMessage;
    } catch {
      this.onStderr(line);
      return;
    }
    if ('event' in msg) {
      this.opts.onEvent?.(msg.event, msg.data);
      return;
    }
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    this.idle();
    if ('error' in msg) p.reject((this.opts.decodeError ?? defaultDecodeError)(msg.error));
    else p.resolve(msg.result);
  }

  private onStderr(line: string): void {
    this.stderr = `${this.stderr}${line}\n`.slice(-4000);
    this.opts.onStderr?.(line);
  }

  /**
   * Without keepAlive, keeps the child and its pipes referenced only while a call is pending or it is closing (its
   * exit must still be seen then, to settle the calls).
   */
  private idle(): void {
    if (this.opts.keepAlive) return;
    const busy = this.pending.size > 0 || this.closing;
    for (const s of [this.child, this.child.stdout, this.child.stderr, this.child.stdin] as unknown as Socket[]) {
      if (busy) s.ref();
      else s.unref();
    }
  }
}
