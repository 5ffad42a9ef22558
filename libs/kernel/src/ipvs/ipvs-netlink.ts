// The IPVS generic-netlink family (include/uapi/linux/ip_vs.h): services and destinations as messages.
// Everything ipvsadm does for kube-proxy's IPVS mode, without ipvsadm.
import { isIPv4, isIPv6 } from 'node:net';
import { canonicalIP, joinHostPort } from '@kpx/model';
import { NetlinkError } from './errors.js';
import {
  NETLINK_GENERIC,
  NLM_F,
  NetlinkConn,
  decodeAttrs,
  genlPayload,
  readCstr,
  resolveGenlFamily,
  u16,
  u16be,
  u32,
  cstr,
  type Attr,
  type NetlinkRequest,
} from './netlink.js';

/** The identity and settings of a virtual service (what `ipvsadm -A` takes). */
export interface VirtualService {
  readonly protocol: 'TCP' | 'UDP' | 'SCTP';
  readonly address: string;
  readonly port: number;
  readonly scheduler: string;
  /** IP_VS_SVC_F_* bits (0x1 persistent, 0x8 sched flag 1, 0x10 sched flag 2, …); HASHED (0x2) is the kernel's. */
  readonly flags: number;
  /** Persistence timeout in seconds. */
  readonly timeoutSeconds: number;
}

/** A real server of a virtual service as the kernel reports it. */
export interface Destination {
  readonly address: string;
  readonly port: number;
  readonly weight: number;
  /** IP_VS_CONN_F_* forwarding method: 0 masquerade (the only one kpx uses). */
  readonly forward: number;
  readonly activeConns: number;
  readonly inactiveConns: number;
}

export interface KernelService extends VirtualService {
  readonly destinations: Destination[];
}

/** One change of the IPVS table. */
export type IpvsOp =
  | { readonly op: 'addService' | 'editService' | 'delService'; readonly service: VirtualService }
  | {
      readonly op: 'addDest' | 'editDest' | 'delDest';
      readonly service: VirtualService;
      readonly dest: { address: string; port: number; weight: number };
    };

export const IP_VS_SVC_F_HASHED = 0x2;
export const FWD_MASQ = 0;

const CMD = {
  NEW_SERVICE: 1,
  SET_SERVICE: 2,
  DEL_SERVICE: 3,
  GET_SERVICE: 4,
  NEW_DEST: 5,
  SET_DEST: 6,
  DEL_DEST: 7,
  GET_DEST: 8,
  FLUSH: 17,
} as const;
const CMD_ATTR = { SERVICE: 1, DEST: 2 } as const;
const SVC = {
  AF: 1,
  PROTOCOL: 2,
  ADDR: 3,
  PORT: 4,
  FWMARK: 5,
  SCHED_NAME: 6,
  FLAGS: 7,
  TIMEOUT: 8,
  NETMASK: 9,
} as const;
const DEST = {
  ADDR: 1,
  PORT: 2,
  FWD_METHOD: 3,
  WEIGHT: 4,
  U_THRESH: 5,
  L_THRESH: 6,
  ACTIVE_CONNS: 7,
  INACT_CONNS: 8,
  ADDR_FAMILY: 11,
} as const;
const GENL_VERSION = 1;
const AF_INET = 2;
const AF_INET6 = 10;
const PROTO = { TCP: 6, UDP: 17, SCTP: 132 } as const;
const PROTO_NAME = new Map<number, VirtualService['protocol']>([
  [6, 'TCP'],
  [17, 'UDP'],
  [132, 'SCTP'],
]);

/** `TCP/10.96.0.10:53`, `UDP/[fd00::a]:53`: the key of an ipvs.service object. */
export function serviceKey(s: Pick<VirtualService, 'protocol' | 'address' | 'port'>): string {
  return `${s.protocol}/${hostPort(s.address, s.port)}`;
}

/** `10.244.1.2:8080`, `[fd00::2]:8080`. */
export const hostPort = joinHostPort;

function familyOf(address: string): number {
  if (isIPv4(address)) return AF_INET;
  if (isIPv6(address)) return AF_INET6;
  throw new NetlinkError(`address ${JSON.stringify(address)}`, 0, 'not an IPv4 or IPv6 address');
}

/** The address in network byte order (4 or 16 bytes). */
export function addressBytes(address: string): Buffer {
  if (isIPv4(address)) return Buffer.from(address.split('.').map(Number));
  if (!isIPv6(address)) throw new NetlinkError(`address ${JSON.stringify(address)}`, 0, 'not an IPv4 or IPv6 address');
  let text = address;
  const v4tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4tail?.[1]) {
    const b = addressBytes(v4tail[1]);
    text = text.slice(0, -v4tail[1].length) + `${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** The textual form of 4 or 16 bytes (IPv6 canonical: compressed, lower case, as @kpx/model prints it). */
export function addressText(bytes: Buffer, family: number): string {
  if (family === AF_INET) return [...bytes.subarray(0, 4)].join('.');
  const full = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2).toString(16)).join(':');
  return canonicalIP(full) ?? full;
}

function serviceIdAttrs(s: Pick<VirtualService, 'protocol' | 'address' | 'port'>): Attr[] {
  const proto = PROTO[s.protocol];
  if (proto === undefined)
    throw new NetlinkError(`service ${serviceKey(s)}`, 0, `unknown protocol ${JSON.stringify(s.protocol)}`);
  return [
    { type: SVC.AF, value: u16(familyOf(s.address)) },
    { type: SVC.PROTOCOL, value: u16(proto) },
    { type: SVC.ADDR, value: addressBytes(s.address) },
    { type: SVC.PORT, value: u16be(s.port) },
  ];
}

function serviceAttrs(s: VirtualService): Attr[] {
  const flags = Buffer.alloc(8);
  flags.writeUInt32LE(s.flags >>> 0, 0);
  flags.writeUInt32LE(0xffffffff, 4); // mask: every flag is ours to set
  return [
    ...serviceIdAttrs(s),
    { type: SVC.SCHED_NAME, value: cstr(s.scheduler) },
    { type: SVC.FLAGS, value: flags },
    { type: SVC.TIMEOUT, value: u32(s.timeoutSeconds) },
    { type: SVC.NETMASK, value: u32(familyOf(s.address) === AF_INET ? 0xffffffff : 128) },
  ];
}

function destAttrs(d: { address: string; port: number; weight: number }, full: boolean): Attr[] {
  const id: Attr[] = [
    { type: DEST.ADDR, value: addressBytes(d.address) },
    { type: DEST.PORT, value: u16be(d.port) },
    { type: DEST.ADDR_FAMILY, value: u16(familyOf(d.address)) },
  ];
  if (!full) return id;
  return [
    ...id,
    { type: DEST.FWD_METHOD, value: u32(FWD_MASQ) },
    { type: DEST.WEIGHT, value: u32(d.weight) },
    { type: DEST.U_THRESH, value: u32(0) },
    { type: DEST.L_THRESH, value: u32(0) },
  ];
}

function parseService(payload: Buffer): VirtualService | undefined {
  const top = decodeAttrs(payload.subarray(4)).get(CMD_ATTR.SERVICE);
  if (!top) return undefined;
  const a = decodeAttrs(top);
  const af = a.get(SVC.AF)?.readUInt16LE(0);
  const protocol = PROTO_NAME.get(a.get(SVC.PROTOCOL)?.readUInt16LE(0) ?? -1);
  const addr = a.get(SVC.ADDR);
  // fwmark services (no address) are not kpx's; they are reported to no one.
  if (af === undefined || protocol === undefined || !addr || (a.has(SVC.FWMARK) && !a.get(SVC.PORT)?.readUInt16BE(0)))
    return undefined;
  return {
    protocol,
    address: addressText(addr, af),
    port: a.get(SVC.PORT)?.readUInt16BE(0) ?? 0,
    scheduler: readCstr(a.get(SVC.SCHED_NAME)) ?? '',
    flags: a.get(SVC.FLAGS)?.readUInt32LE(0) ?? 0,
    timeoutSeconds: a.get(SVC.TIMEOUT)?.readUInt32LE(0) ?? 0,
  };
}

function parseDest(payload: Buffer, serviceFamily: number): Destination | undefined {
  const top = decodeAttrs(payload.subarray(4)).get(CMD_ATTR.DEST);
  if (!top) return undefined;
  const a = decodeAttrs(top);
  const addr = a.get(DEST.ADDR);
  if (!addr) return undefined;
  const af = a.get(DEST.ADDR_FAMILY)?.readUInt16LE(0) ?? serviceFamily;
  return {
    address: addressText(addr, af),
    port: a.get(DEST.PORT)?.readUInt16BE(0) ?? 0,
    weight: a.get(DEST.WEIGHT)?.readInt32LE(0) ?? 0,
    forward: (a.get(DEST.FWD_METHOD)?.readUInt32LE(0) ?? 0) & 0x7,
    activeConns: a.get(DEST.ACTIVE_CONNS)?.readUInt32LE(0) ?? 0,
    inactiveConns: a.get(DEST.INACT_CONNS)?.readUInt32LE(0) ?? 0,
  };
}

/** IPVS over generic netlink, in the network namespace of the calling process. */
export class IpvsNetlink {
  private readonly conn = new NetlinkConn(NETLINK_GENERIC);
  /** Dumps go over their own socket (one at a time), never interleaved with the batches' acknowledgements. */
  private readonly dumpConn = new NetlinkConn(NETLINK_GENERIC);
  private family: number | undefined;

  /** The IPVS family id, looked up by name once ("IPVS"; absent when the ip_vs module is not loaded). */
  async familyId(): Promise<number> {
    this.family ??= await resolveGenlFamily(this.conn, 'IPVS');
    return this.family;
  }

  private async req(cmd: number, attrs: Attr[], what: string, flags = 0): Promise<NetlinkRequest> {
    return { type: await this.familyId(), flags, payload: genlPayload(cmd, GENL_VERSION, attrs), what };
  }

  /** Every virtual service with its real servers (one dump, then one destination dump per service). */
  async listServices(): Promise<KernelService[]> {
    const replies = await this.dumpConn.request(await this.req(CMD.GET_SERVICE, [], 'dump services', NLM_F.DUMP));
    const services = replies.map(parseService).filter((s): s is VirtualService => s !== undefined);
    const out: KernelService[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < services.length) {
        const i = next++;
        const s = services[i]!;
        out[i] = { ...s, destinations: await this.listDestinations(s) };
      }
    };
    await Promise.all(Array.from({ length: Math.min(8, services.length) }, worker));
    return out;
  }

  /** The real servers of one service, with their connection counters; NetlinkError (ESRCH) when it is gone. */
  async listDestinations(s: Pick<VirtualService, 'protocol' | 'address' | 'port'>): Promise<Destination[]> {
    const req = await this.req(
      CMD.GET_DEST,
      [{ type: CMD_ATTR.SERVICE, value: serviceIdAttrs(s) }],
      `dump destinations of ${serviceKey(s)}`,
      NLM_F.DUMP,
    );
    const af = familyOf(s.address);
    return (await this.dumpConn.request(req))
      .map((p) => parseDest(p, af))
      .filter((d): d is Destination => d !== undefined);
  }

  /** Applies the operations, pipelined, in order of kind: services are added before their destinations. */
  async apply(ops: readonly IpvsOp[]): Promise<NetlinkError[]> {
    const reqs = await Promise.all(ops.map((o) => this.opRequest(o)));
    // Phases: a destination needs its service; a service is deleted after its destinations went.
    const phase = (o: IpvsOp): number =>
      o.op === 'addService' || o.op === 'editService' ? 0 : o.op === 'delService' ? 2 : 1;
    const failures: NetlinkError[] = [];
    for (const p of [0, 1, 2]) {
      const these = reqs.filter((_, i) => phase(ops[i]!) === p);
      if (these.length) failures.push(...(await this.conn.batch(these)));
    }
    // Deleting what is already gone reaches the wanted state.
    return failures.filter((f) => !(f.operation.startsWith('delete ') && (f.errno === 2 || f.errno === 3)));
  }

  /** Removes every virtual service of this network namespace (tests). */
  async flush(): Promise<void> {
    await this.conn.request(await this.req(CMD.FLUSH, [], 'flush'));
  }

  private opRequest(o: IpvsOp): Promise<NetlinkRequest> {
    const key = serviceKey(o.service);
    switch (o.op) {
      case 'addService':
        return this.req(
          CMD.NEW_SERVICE,
          [{ type: CMD_ATTR.SERVICE, value: serviceAttrs(o.service) }],
          `add service ${key}`,
        );
      case 'editService':
        return this.req(
          CMD.SET_SERVICE,
          [{ type: CMD_ATTR.SERVICE, value: serviceAttrs(o.service) }],
          `edit service ${key}`,
        );
      case 'delService':
        return this.req(
          CMD.DEL_SERVICE,
          [{ type: CMD_ATTR.SERVICE, value: serviceIdAttrs(o.service) }],
          `delete service ${key}`,
        );
      case 'addDest':
      case 'editDest':
      case 'delDest': {
        const cmd = o.op === 'addDest' ? CMD.NEW_DEST : o.op === 'editDest' ? CMD.SET_DEST : CMD.DEL_DEST;
        const verb = o.op === 'addDest' ? 'add' : o.op === 'editDest' ? 'edit' : 'delete';
        return this.req(
          cmd,
          [
            { type: CMD_ATTR.SERVICE, value: serviceIdAttrs(o.service) },
            { type: CMD_ATTR.DEST, value: destAttrs(o.dest, o.op !== 'delDest') },
          ],
          `${verb} real server ${hostPort(o.dest.address, o.dest.port)} of ${key}`,
        );
      }
    }
  }

  close(): void {
    this.conn.close();
    this.dumpConn.close();
  }
}
