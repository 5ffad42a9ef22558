// A minimal netlink layer on top of npm `netlink`'s socket (its native binding opens the AF_NETLINK socket and
// does the framing, sequence numbers and multipart replies): attribute encoding and decoding, requests with the
// kernel's errno turned into NetlinkError, pipelined batches, and generic-netlink family resolution by name.
// The message layouts of IPVS and rtnetlink live in ipvs-netlink.ts and rtnl.ts.
import { getSystemErrorName } from 'node:util';
import { SerialQueue } from '@kpx/common';
import { createNetlink, type NetlinkSocket } from 'netlink';
import { NetlinkError } from './errors.js';

export const NLM_F = {
  REQUEST: 0x1,
  MULTI: 0x2,
  ACK: 0x4,
  DUMP: 0x300,
  REPLACE: 0x100,
  EXCL: 0x200,
  CREATE: 0x400,
} as const;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
export const NETLINK_ROUTE = 0;
export const NETLINK_GENERIC = 16;

/** One attribute to encode: a type and its payload, or nested attributes. */
export interface Attr {
  readonly type: number;
  readonly value: Buffer | readonly Attr[];
}

const align4 = (n: number): number => (n + 3) & ~3;

/** Encodes attributes (nlattr TLVs, each padded to 4 bytes). */
export function encodeAttrs(attrs: readonly Attr[]): Buffer {
  const parts: Buffer[] = [];
  for (const a of attrs) {
    const payload = Buffer.isBuffer(a.value) ? a.value : encodeAttrs(a.value);
    const head = Buffer.alloc(4);
    head.writeUInt16LE(4 + payload.length, 0);
    head.writeUInt16LE(a.type, 2);
    parts.push(head, payload, Buffer.alloc(align4(payload.length) - payload.length));
  }
  return Buffer.concat(parts);
}

/** Decodes a run of attributes into type → payload (the last one wins; flag bits of the type are dropped). */
export function decodeAttrs(buf: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    const type = buf.readUInt16LE(off + 2) & 0x3fff;
    if (len < 4 || off + len > buf.length) break;
    out.set(type, buf.subarray(off + 4, off + len));
    off += align4(len);
  }
  return out;
}

export const u8 = (v: number): Buffer => Buffer.from([v & 0xff]);
export function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return b;
}
export function u16be(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
}
export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}
export const cstr = (s: string): Buffer => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.alloc(1)]);
export const readCstr = (b: Buffer | undefined): string | undefined =>
  b === undefined ? undefined : b.toString('utf8').replace(/\0.*$/s, '');

/** A request and what it is, for error messages ("add service TCP/10.96.0.10:80"). */
export interface NetlinkRequest {
  readonly type: number;
  readonly flags: number;
  readonly payload: Buffer;
  readonly what: string;
}

/** How many requests a batch keeps in flight on one socket. */
const WINDOW = 256;

/** One netlink socket of a protocol (route or generic), bound in the calling process's network namespace. */
export class NetlinkConn {
  private readonly sock: NetlinkSocket;
  /** Dumps one at a time: npm netlink reassembles one multipart reply at a time per socket. */
  private readonly dumps = new SerialQueue();

  constructor(protocol: number) {
    this.sock = createNetlink(protocol, { recvBufferSize: 8 << 20, sendBufferSize: 4 << 20 });
  }

  /**
   * Sends one request (ACK requested) and resolves with the payloads of the replies ([] for a plain ACK). Dumps
   * (multipart replies) are serialized; do not mix them with other requests in flight on the same socket.
   */
  request(req: NetlinkRequest): Promise<Buffer[]> {
    if ((req.flags & NLM_F.DUMP) !== NLM_F.DUMP) return this.send(req);
    return this.dumps.run(() => this.send(req));
  }

  private async send(req: NetlinkRequest): Promise<Buffer[]> {
    const [msgs] = await this.sock.request(req.type, req.payload, { flags: req.flags, checkError: false });
    const out: Buffer[] = [];
    for (const m of msgs) {
      if (m.type === NLMSG_ERROR) {
        const errno = m.data.readInt32LE(0);
        if (errno !== 0) throw new NetlinkError(req.what, -errno, errnoName(errno));
        continue;
      }
      if (m.type === NLMSG_DONE) continue;
      out.push(m.data);
    }
    return out;
  }

  /**
   * Sends the requests pipelined (up to WINDOW in flight) and waits for every answer. Netlink has no transaction:
   * every request is tried; the failures come back, in request order, so the caller can decide.
   */
  async batch(reqs: readonly NetlinkRequest[]): Promise<NetlinkError[]> {
    const failures: (NetlinkError | undefined)[] = new Array<NetlinkError | undefined>(reqs.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < reqs.length) {
        const i = next++;
        try {
          await this.request(reqs[i] as NetlinkRequest);
        } catch (err) {
          failures[i] =
            err instanceof NetlinkError ? err : new NetlinkError(reqs[i]!.what, 0, String((err as Error).message));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(WINDOW, reqs.length) }, worker));
    return failures.filter((f): f is NetlinkError => f !== undefined);
  }

  close(): void {
    this.sock.close();
  }
}

function errnoName(negErrno: number): string {
  try {
    return getSystemErrorName(negErrno);
  } catch {
    return `errno ${-negErrno}`;
  }
}

// Generic netlink: the controller family resolves other families by name.
const GENL_ID_CTRL = 16;
const CTRL_CMD_GETFAMILY = 3;
const CTRL_ATTR_FAMILY_ID = 1;
const CTRL_ATTR_FAMILY_NAME = 2;

/** genlmsghdr (cmd, version, reserved) followed by attributes. */
export function genlPayload(cmd: number, version: number, attrs: readonly Attr[]): Buffer {
  return Buffer.concat([Buffer.from([cmd, version, 0, 0]), encodeAttrs(attrs)]);
}

/** The id the kernel gave the generic-netlink family `name` (assigned at run time); NetlinkError if absent. */
export async function resolveGenlFamily(conn: NetlinkConn, name: string): Promise<number> {
  const replies = await conn.request({
    type: GENL_ID_CTRL,
    flags: 0,
    payload: genlPayload(CTRL_CMD_GETFAMILY, 1, [{ type: CTRL_ATTR_FAMILY_NAME, value: cstr(name) }]),
    what: `resolve generic netlink family ${name}`,
  });
  const id = replies[0] && decodeAttrs(replies[0].subarray(4)).get(CTRL_ATTR_FAMILY_ID);
  if (!id) throw new NetlinkError(`resolve generic netlink family ${name}`, 0, 'no family id in the reply');
  return id.readUInt16LE(0);
}
