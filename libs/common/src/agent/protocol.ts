// The agent protocol: JSON, one message per line. The parent writes requests on the child's stdin; the child
// writes replies and events on its stdout. A request with an id gets exactly one reply with that id; one without
// (a notification) gets none. Events are the child's own news (no id).

/** Parent → child. */
export interface AgentRequest {
  /** Absent for a notification (no reply). */
  readonly id?: number;
  readonly method: string;
  readonly args: readonly unknown[];
}

/** Child → parent: the answer to request `id`, or an event. */
export type AgentMessage =
  | { readonly id: number; readonly result: unknown }
  | { readonly id: number; readonly error: unknown }
  | { readonly event: string; readonly data: unknown };

/** What crosses the pipe for an error when the agent does not say otherwise. */
export interface AgentWireError {
  readonly message: string;
}
