// Times in the two forms kpx hands out: protobuf Timestamps (seconds + nanos, on the wire) and seconds as a float
// (Prometheus metrics). Times inside kpx are milliseconds since the epoch (Date.now()).

/** A google.protobuf.Timestamp: whole seconds since the epoch and 0 ≤ nanos < 10^9 (also for times before 1970). */
export interface TimestampValue {
  readonly seconds: number;
  readonly nanos: number;
}

/** Milliseconds since the epoch (fractions kept to the nanosecond) as a protobuf Timestamp. */
export function timestampFromMs(ms: number): TimestampValue {
  let seconds = Math.floor(ms / 1000);
  let nanos = Math.round((ms - seconds * 1000) * 1e6);
  // 999.9999996 ms rounds up to a whole second: carry it, nanos must stay below 10^9.
  if (nanos >= 1e9) {
    seconds += 1;
    nanos -= 1e9;
  }
  return { seconds, nanos };
}

/** A protobuf Timestamp as milliseconds since the epoch (fractional below the millisecond). */
export function msFromTimestamp(t: TimestampValue): number {
  return t.seconds * 1000 + t.nanos / 1e6;
}

/** Milliseconds since the epoch as seconds (float), the unit of Prometheus timestamps and durations. */
export function secondsFromMs(ms: number): number {
  return ms / 1000;
}
