// @kpx/common: small helpers every package may use (no dependencies): a serial work queue, exponential backoff,
// and time conversions.
export { Backoff, backoffDelay, sleep } from './backoff.js';
export type { BackoffOptions } from './backoff.js';
export { SerialQueue } from './serial-queue.js';
export { msFromTimestamp, secondsFromMs, timestampFromMs } from './time.js';
export type { TimestampValue } from './time.js';
