// Shared test helpers.
import type { DestinationStream } from 'pino';

/** A pino destination that keeps every line, parsed. */
export function collectLines(): { stream: DestinationStream; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return {
    lines,
    stream: {
      write(chunk: string) {
        for (const line of chunk.split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  };
}

/** NATS MsgHdrs as nats.js has them: get() gives '' when the key is absent. */
export class FakeMsgHdrs {
  private readonly map = new Map<string, string[]>();
  get(key: string): string {
    return this.map.get(key)?.[0] ?? '';
  }
  set(key: string, value: string): void {
    this.map.set(key, [value]);
  }
  keys(): string[] {
    return [...this.map.keys()];
  }
}

/** grpc-js Metadata's shape: lower-cased keys, get() gives every value. */
export class FakeMetadata {
  private readonly map = new Map<string, (string | Buffer)[]>();
  get(key: string): (string | Buffer)[] {
    return [...(this.map.get(key.toLowerCase()) ?? [])];
  }
  set(key: string, value: string | Buffer): void {
    this.map.set(key.toLowerCase(), [value]);
  }
  add(key: string, value: string | Buffer): void {
    const k = key.toLowerCase();
    this.map.set(k, [...(this.map.get(k) ?? []), value]);
  }
  getMap(): Record<string, string | Buffer> {
    const out: Record<string, string | Buffer> = {};
    for (const [k, v] of this.map) if (v[0] !== undefined) out[k] = v[0];
    return out;
  }
}
