// @kpx/common: small helpers every package may use (no dependencies): a serial work queue, exponential backoff,
// time conversions, Go's host:port split, and agents (work run by a child process, e.g. inside a network namespace).
//
// The agent mechanism lives here rather than in @kpx/kernel so that an agent's child process loads only this
// package and its own code: @kpx/kernel's entry point loads the netlink addon and more, a second or so of start-up
// on a busy node, which the health check child (served from the node's namespace) must not pay.
export { AgentExitedError, AgentProcess } from './agent/client.js';
export type { AgentProcessOptions } from './agent/client.js';
export type { AgentMessage, AgentRequest, AgentWireError } from './agent/protocol.js';
export { serveAgent } from './agent/serve.js';
export type { AgentMethods, AgentServer, ServeAgentOptions } from './agent/serve.js';
export { Backoff, backoffDelay, sleep } from './backoff.js';
export type { BackoffOptions } from './backoff.js';
export { parsePort, splitHostPort } from './host-port.js';
export type { HostPortSplit } from './host-port.js';
export { SerialQueue } from './serial-queue.js';
export { msFromTimestamp, secondsFromMs, timestampFromMs } from './time.js';
export type { TimestampValue } from './time.js';
