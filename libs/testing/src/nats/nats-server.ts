// A real nats-server for integration tests: one process per call, on 127.0.0.1 and a port of its own, with
// JetStream in a temporary store directory. Works with nats-server 2.9 (Debian bookworm) and later.
//
// The first start listens on port -1 (the server picks a free port) and the port is read from the
// "Listening for client connections on <host>:<port>" log line; restart() binds that same port again, so
// clients keep their URL and reconnect. Only the PID this launcher spawned is ever signalled.
import { spawn, type ChildProcess } from 'node:child_process';
import { access, constants, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ServerStartError } from '../errors.js';

export interface NatsServerOptions {
  /** Enable JetStream (default true). */
  jetstream?: boolean;
  /** JetStream store directory. Given: kept on stop(). Not given: a temporary directory deleted on stop(). */
  storeDir?: string;
  /** The server's max_payload in bytes (nats-server default: 1 MiB). */
  maxPayload?: number;
  /** The nats-server binary. Default: $NATS_SERVER_BIN, else `nats-server` from PATH, /usr/sbin or /usr/local/bin. */
  binary?: string;
  /** How long start() and restart() wait for the server to accept connections. Default 10 s. */
  startTimeoutMs?: number;
  /** More nats-server configuration, appended as it is (an `authorization` block, `tls { … }`). */
  extraConfig?: string;
}

export interface NatsServer {
  /** nats://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  /** PID of the running server process (changes on restart()). */
  readonly pid: number;
  /** The JetStream store directory ("" when JetStream is off). */
  readonly storeDir: string;
  /** The last lines the server logged (for failure messages). */
  logTail(): string;
  /** Stops the server (SIGTERM, SIGKILL after 5 s) if it runs, then starts it again on the same port and store. */
  restart(): Promise<void>;
  /** Stops the server and deletes its temporary files (the store too unless the caller gave storeDir). */
  stop(): Promise<void>;
  /** SIGKILLs the server (a crash: nothing flushed); restart() brings it back on the same store. */
  kill9(): Promise<void>;
  /** Stops the server cleanly (SIGTERM, SIGKILL after 5 s); restart() brings it back on the same store and port. */
  terminate(): Promise<void>;
}

const ListenLine = /Listening for client connections on ([^\s]+):(\d+)/;
const ReadyLine = /Server is ready/;
const LogTailLines = 60;

/** Starts nats-server on 127.0.0.1 and resolves once it accepts client connections. */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const binary = options.binary ?? (await findBinary());
  const jetstream = options.jetstream ?? true;
  const workDir = await mkdtemp(path.join(tmpdir(), 'kpx-nats-'));
  const storeDir = jetstream ? (options.storeDir ?? path.join(workDir, 'store')) : '';
  const ownsStore = options.storeDir === undefined;
  const configFile = path.join(workDir, 'nats.conf');
  const startTimeoutMs = options.startTimeoutMs ?? 10_000;
  const log: string[] = [];

  let child: ChildProcess | undefined;
  let port = -1;
  let stopped = false;
  const onExit = (): void => {
    // The test process is exiting without stop(): do not leave the server behind.
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', onExit);

  const writeConfig = (): Promise<void> =>
    writeFile(
      configFile,
      renderConfig({ port, storeDir, maxPayload: options.maxPayload, extraConfig: options.extraConfig }),
    );

  const launch = async (): Promise<void> => {
    await writeConfig();
    const proc = spawn(binary, ['-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    const listening = waitForListening(proc, log, startTimeoutMs);
    try {
      const found = await listening;
      port = found;
      await waitForInfo(port, startTimeoutMs);
    } catch (cause) {
      await killAndWait(proc, 'SIGKILL', 0);
      throw new ServerStartError(`nats-server did not start: ${errorText(cause)}\n${tail(log)}`, { cause });
    }
  };

  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    const proc = child;
    if (proc === undefined) return;
    await killAndWait(proc, signal, signal === 'SIGKILL' ? 0 : 5_000);
  };

  try {
    await launch();
  } catch (error) {
    process.removeListener('exit', onExit);
    await rm(workDir, { recursive: true, force: true });
    throw error;
  }

  return {
    get url() {
      return `nats://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    get pid() {
      return child?.pid ?? -1;
    },
    storeDir,
    logTail: () => tail(log),
    async restart() {
      if (stopped) throw new ServerStartError('nats-server was stopped; start a new one instead of restart()');
      await halt('SIGTERM');
      await launch();
    },
    async kill9() {
      await halt('SIGKILL');
    },
    async terminate() {
      await halt('SIGTERM');
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await halt('SIGTERM');
      process.removeListener('exit', onExit);
      await rm(workDir, { recursive: true, force: true });
      if (ownsStore && storeDir !== '') await rm(storeDir, { recursive: true, force: true });
    },
  };
}

function renderConfig(options: {
  port: number;
  storeDir: string;
  maxPayload: number | undefined;
  extraConfig: string | undefined;
}): string {
  const lines = [`listen: "127.0.0.1:${options.port}"`];
  if (options.maxPayload !== undefined) lines.push(`max_payload: ${options.maxPayload}`);
  if (options.storeDir !== '') {
    // Bounded limits so a test run cannot claim the host's disk or memory.
    lines.push(
      `jetstream {`,
      `  store_dir: ${JSON.stringify(options.storeDir)}`,
      `  max_memory_store: 268435456`,
      `  max_file_store: 4294967296`,
      `}`,
    );
  }
  if (options.extraConfig !== undefined) lines.push(options.extraConfig);
  return `${lines.join('\n')}\n`;
}

/** Resolves with the client port once the server logs that it listens and is ready; rejects if it exits first. */
function waitForListening(proc: ChildProcess, log: string[], timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let port: number | undefined;
    let pending = '';
    const timer = setTimeout(() => finish(new Error(`no "Server is ready" within ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        log.push(line);
        if (log.length > LogTailLines) log.shift();
        const listen = ListenLine.exec(line);
        if (listen?.[2] !== undefined) port = Number(listen[2]);
        if (ReadyLine.test(line)) {
          if (port === undefined) finish(new Error('server ready but no listen line was logged'));
          else finish(undefined, port);
        }
      }
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void =>
      finish(new Error(`nats-server exited (code ${String(code)}, signal ${String(signal)})`));
    const onError = (cause: Error): void => finish(cause);
    function finish(error: Error | undefined, value?: number): void {
      clearTimeout(timer);
      proc.removeListener('exit', onExit);
      proc.removeListener('error', onError);
      if (error !== undefined) reject(error);
      else if (value !== undefined) resolve(value);
    }
    // nats-server logs to stderr; keep draining both pipes for the life of the process.
    proc.stderr?.on('data', onData);
    proc.stdout?.on('data', onData);
    proc.once('exit', onExit);
    proc.once('error', onError);
  });
}

/** Connects to the port until the server greets with its INFO line. */
async function waitForInfo(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await readInfo(port);
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

function readInfo(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: '127.0.0.1', port });
    let got = '';
    socket.setTimeout(2_000, () => socket.destroy(new Error('timed out waiting for INFO')));
    socket.on('data', (chunk: Buffer) => {
      got += chunk.toString('utf8');
      if (got.startsWith('INFO ')) {
        socket.destroy();
        resolve();
      }
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error('connection closed before INFO')));
  });
}

/** Signals one process (by its own handle, i.e. its PID) and waits for it to exit; SIGKILL after graceMs. */
async function killAndWait(proc: ChildProcess, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill(signal);
  if (signal !== 'SIGKILL') {
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
    return;
  }
  await exited;
}

async function findBinary(): Promise<string> {
  const fromEnv = process.env['NATS_SERVER_BIN'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const dirs = [...(process.env['PATH'] ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/bin', '/usr/bin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = path.join(dir, 'nats-server');
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this directory; try the next one.
    }
  }
  throw new ServerStartError(
    'nats-server not found (install it, e.g. `apt-get install nats-server`, or set NATS_SERVER_BIN)',
  );
}

function tail(log: readonly string[]): string {
  return log.slice(-20).join('\n');
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
