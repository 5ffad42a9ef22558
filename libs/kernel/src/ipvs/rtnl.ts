// rtnetlink for IPVS mode: the `kube-ipvs0` dummy link (created when missing, set up) and the VIPs bound to it.
import { isIPv4 } from 'node:net';
import { NetlinkError } from './errors.js';
import { addressBytes, addressText } from './ipvs-netlink.js';
import { NETLINK_ROUTE, NLM_F, NetlinkConn, cstr, decodeAttrs, encodeAttrs, type Attr } from './netlink.js';

const RTM = { NEWLINK: 16, DELLINK: 17, GETLINK: 18, NEWADDR: 20, DELADDR: 21, GETADDR: 22 } as const;
const IFLA_IFNAME = 3;
const IFLA_LINKINFO = 18;
const IFLA_INFO_KIND = 1;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFF_UP = 0x1;
const IFA_F_NODAD = 0x02;
const AF_INET = 2;
const AF_INET6 = 10;
const ENODEV = 19;
const EEXIST = 17;
const EADDRNOTAVAIL = 99;

function ifinfomsg(index: number, flags = 0, change = 0): Buffer {
  const b = Buffer.alloc(16);
  b.writeInt32LE(index, 4);
  b.writeUInt32LE(flags, 8);
  b.writeUInt32LE(change, 12);
  return b;
}

function ifaddrmsg(family: number, prefixLen: number, flags: number, index: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(family, 0);
  b.writeUInt8(prefixLen, 1);
  b.writeUInt8(flags, 2);
  b.writeUInt32LE(index, 4);
  return b;
}

/** Links and addresses over rtnetlink, in the network namespace of the calling process. */
export class Rtnl {
  private readonly conn = new NetlinkConn(NETLINK_ROUTE);

  /** The index of link `name`, or undefined when there is none. */
  async linkIndex(name: string): Promise<number | undefined> {
    try {
      const [reply] = await this.conn.request({
        type: RTM.GETLINK,
        flags: 0,
        payload: Buffer.concat([ifinfomsg(0), encodeAttrs([{ type: IFLA_IFNAME, value: cstr(name) }])]),
        what: `get link ${name}`,
      });
      return reply?.readInt32LE(4);
    } catch (err) {
      if (err instanceof NetlinkError && err.errno === ENODEV) return undefined;
      throw err;
    }
  }

  /** Makes sure a dummy link `name` exists and is up (kube-proxy's kube-ipvs0); returns its index. */
  async ensureDummy(name: string): Promise<number> {
    let index = await this.linkIndex(name);
    if (index === undefined) {
      const attrs: Attr[] = [
        { type: IFLA_IFNAME, value: cstr(name) },
        { type: IFLA_LINKINFO, value: [{ type: IFLA_INFO_KIND, value: cstr('dummy') }] },
      ];
      try {
        await this.conn.request({
          type: RTM.NEWLINK,
          flags: NLM_F.CREATE | NLM_F.EXCL,
          payload: Buffer.concat([ifinfomsg(0), encodeAttrs(attrs)]),
          what: `create dummy link ${name}`,
        });
      } catch (err) {
        if (!(err instanceof NetlinkError && err.errno === EEXIST)) throw err;
      }
      index = await this.linkIndex(name);
      if (index === undefined)
        throw new NetlinkError(`create dummy link ${name}`, 0, 'the link is missing after its creation');
    }
    await this.conn.request({
      type: RTM.NEWLINK,
      flags: 0,
      payload: ifinfomsg(index, IFF_UP, IFF_UP),
      what: `set link ${name} up`,
    });
    return index;
  }

  /** Deletes link `name` if it exists (tests). */
  async deleteLink(name: string): Promise<void> {
    const index = await this.linkIndex(name);
    if (index !== undefined)
      await this.conn.request({ type: RTM.DELLINK, flags: 0, payload: ifinfomsg(index), what: `delete link ${name}` });
  }

  /** The addresses bound to link `index`, textual, without prefix length. */
  async addresses(index: number): Promise<string[]> {
    const replies = await this.conn.request({
      type: RTM.GETADDR,
      flags: NLM_F.DUMP,
      payload: ifaddrmsg(0, 0, 0, 0),
      what: 'dump addresses',
    });
    const out: string[] = [];
    for (const r of replies) {
      if (r.readUInt32LE(4) !== index) continue;
      const family = r.readUInt8(0);
      const a = decodeAttrs(r.subarray(8));
      const addr = a.get(IFA_LOCAL) ?? a.get(IFA_ADDRESS);
      if (addr && (family === AF_INET || family === AF_INET6)) out.push(addressText(addr, family));
    }
    return out;
  }

  /** Binds (add) or unbinds (del) each address as /32 or /128; adding one already there and removing one gone are fine. */
  async changeAddresses(index: number, op: 'add' | 'del', addresses: readonly string[]): Promise<NetlinkError[]> {
    const failures = await this.conn.batch(
      addresses.map((address) => {
        const v4 = isIPv4(address);
        const bytes = addressBytes(address);
        const attrs: Attr[] = [
          { type: IFA_LOCAL, value: bytes },
          { type: IFA_ADDRESS, value: bytes },
        ];
        return {
          type: op === 'add' ? RTM.NEWADDR : RTM.DELADDR,
          flags: op === 'add' ? NLM_F.CREATE | NLM_F.REPLACE : 0,
          payload: Buffer.concat([
            ifaddrmsg(v4 ? AF_INET : AF_INET6, v4 ? 32 : 128, v4 ? 0 : IFA_F_NODAD, index),
            encodeAttrs(attrs),
          ]),
          what: `${op === 'add' ? 'bind' : 'unbind'} address ${address}`,
        };
      }),
    );
    return failures.filter((f) => !(op === 'add' ? f.errno === EEXIST : f.errno === EADDRNOTAVAIL));
  }

  close(): void {
    this.conn.close();
  }
}
