// The child side of an agent (see client.ts): answers the parent's requests on stdin with the methods given,
// and exits when stdin closes, that is when the parent stops or dies.
import { createInterface } from 'node:readline';
import type { AgentMessage, AgentRequest, AgentWireError } from './protocol.js';

/** The methods an agent serves. Arguments arrive as JSON values; a result must be JSON (undefined is sent as null). */
export type AgentMethods = Readonly<Record<string, (...args: never[]) => unknown>>;

export interface ServeAgentOptions {
  /** What crosses the pipe for an error a method throws (default: `{ message }`). */
  readonly encodeError?: (err: unknown) => unknown;
  /** Runs when stdin has closed, before the process exits. */
  readonly onClose?: () => Promise<void> | void;
}

export interface AgentServer {
  /** Sends an event to the parent (AgentProcessOptions.onEvent). */
  emit(event: string, data: unknown): void;
}

const defaultEncodeError = (err: unknown): AgentWireError => ({
  message: err instanceof Error ? err.message : String(err),
});

/** Serves `methods` on this process's stdin and stdout. */
export function serveAgent(methods: AgentMethods, options: ServeAgentOptions = {}): AgentServer {
  const encodeError = options.encodeError ?? defaultEncodeError;
  const write = (m: AgentMessage): void => void process.stdout.write(`${JSON.stringify(m)}\n`);
  const handle = async (req: AgentRequest): Promise<unknown> => {
    const fn = methods[req.method];
    if (!fn) throw new Error(`unknown method ${req.method}`);
    return await fn(...(req.args as never[]));
  };
  createInterface({ input: process.stdin })
    .on('line', (line) => {
      let req: AgentRequest;
      try {
        req = JSON.parse(line) as AgentRequest;
      } catch {
        process.stderr.write(`agent: not a request: ${line.slice(0, 200)}\n`);
        return;
      }
      const { id } = req;
      void handle(req).then(
        (result) => {
          if (id !== undefined) write({ id, result: result ?? null });
        },
        (err: unknown) => {
          if (id !== undefined) write({ id, error: encodeError(err) });
          else process.stderr.write(`agent: ${req.method} failed: ${String(err)}\n`);
        },
      );
    })
    .on('close', () => {
      void Promise.resolve(options.onClose?.()).finally(() => process.exit(0));
    });
  return { emit: (event, data) => write({ event, data }) };
}
