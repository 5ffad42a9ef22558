// Where a command writes (stdout, stderr), and how a long-running command is stopped.

export interface Io {
  /** Text, or UTF-8 bytes (a large render is written as the buffer it was built in). */
  readonly stdout: (text: string | Uint8Array) => void;
  readonly stderr: (text: string) => void;
}

/** The process's own stdout and stderr. */
export const processIo: Io = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
};

export interface LongRunningOptions {
  /** Stops the command (SIGINT/SIGTERM in the real process). */
  readonly signal: AbortSignal;
  /** Called once the command is up (tests). */
  readonly onReady?: (info: { grpcAddress: string; metricsUrl: string }) => void;
}

/** Resolves when the signal aborts (at once if it already has). */
export function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}
