// A process the harness keeps running, as a DaemonSet or systemd would: when it exits without the harness having
// asked (e.g. it could not reach NATS at start), it is started again after a second. The harness kills it only by
// its own PID. Output goes to a log file; the tail is kept for failure messages.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';

const RestartDelayMs = 1000;
const TailChars = 4000;

export interface SupervisedOptions {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly logFile: string;
}

export class Supervised {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private wanted = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly log: WriteStream;
  private tailText = '';
  /** Starts, and exits the harness did not ask for. */
  starts = 0;
  unexpectedExits = 0;

  constructor(private readonly opts: SupervisedOptions) {
    this.log = createWriteStream(opts.logFile, { flags: 'a' });
  }

  get name(): string {
    return this.opts.name;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  tail(): string {
    return this.tailText;
  }

  /** Starts the process (and keeps it running) unless it runs. */
  start(): void {
    this.wanted = true;
    if (this.child || this.restartTimer) return;
    this.spawnOnce();
  }

  /** SIGKILLs it (a crash) and keeps it down until start(). */
  async kill9(): Promise<void> {
    await this.halt('SIGKILL');
  }

  /** SIGTERM (SIGKILL after 5 s) and keeps it down. */
  async stop(): Promise<void> {
    await this.halt('SIGTERM');
  }

  /** SIGKILLs the process now, synchronously (the test process is exiting without cleanup). */
  killNow(): void {
    this.wanted = false;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    if (this.child?.pid !== undefined) this.child.kill('SIGKILL');
  }

  async close(): Promise<void> {
    await this.halt('SIGKILL');
    await new Promise<void>((resolve) => this.log.end(() => resolve()));
  }

  private async halt(signal: NodeJS.Signals): Promise<void> {
    this.wanted = false;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const child = this.child;
    if (!child?.pid) return;
    this.write(`\n=== harness: ${signal} to pid ${child.pid}\n`);
    child.kill(signal);
    const timer = signal === 'SIGKILL' ? undefined : setTimeout(() => child.kill('SIGKILL'), 5000);
    await this.exited;
    if (timer) clearTimeout(timer);
  }

  private spawnOnce(): void {
    const child = spawn(this.opts.command, [...this.opts.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: this.opts.env ?? process.env,
    });
    this.child = child;
    this.starts++;
    this.write(`\n=== harness: started pid ${child.pid ?? '?'}\n`);
    child.stdout?.on('data', (b: Buffer) => this.write(b.toString()));
    child.stderr?.on('data', (b: Buffer) => this.write(b.toString()));
    this.exited = new Promise((resolve) =>
      child.on('exit', (code, signal) => {
        this.child = undefined;
        this.write(`\n=== harness: pid ${child.pid ?? '?'} exited (code ${String(code)}, signal ${String(signal)})\n`);
        if (this.wanted) {
          this.unexpectedExits++;
          this.restartTimer = setTimeout(() => {
            this.restartTimer = undefined;
            if (this.wanted) this.spawnOnce();
          }, RestartDelayMs);
        }
        resolve();
      }),
    );
  }

  private write(text: string): void {
    this.log.write(text);
    this.tailText = (this.tailText + text).slice(-TailChars);
  }
}
