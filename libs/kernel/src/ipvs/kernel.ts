// The kernel side of IPVS mode behind one narrow interface: IPVS services and destinations (generic netlink) and
// the dummy link with its addresses (rtnetlink).
//
// Network namespaces: a netlink socket talks to the namespace it was opened in, and Node cannot setns(2) a thread.
// So with `netns` the netlink work runs in an agent (@kpx/common's AgentProcess) started as
// `ip netns exec NAME node agent.js` (agent.ts): it opens its sockets inside that namespace and serves the calls.
// Without `netns` everything runs in this process.
import { fileURLToPath } from 'node:url';
import { AgentProcess } from '@kpx/common';
import { NetlinkError } from './errors.js';
import { IpvsNetlink, type Destination, type IpvsOp, type KernelService, type VirtualService } from './ipvs-netlink.js';

type ServiceId = Pick<VirtualService, 'protocol' | 'address' | 'port'>;
import { Rtnl } from './rtnl.js';

export interface IpvsKernel {
  /** Every virtual service with its real servers and their connection counters. */
  listServices(): Promise<KernelService[]>;
  /** The real servers of one service with their connection counters (empty when the service is gone). */
  listDestinations(service: ServiceId): Promise<Destination[]>;
  /** Applies the operations (services first, then destinations, then service deletions); returns the failures. */
  apply(ops: readonly IpvsOp[]): Promise<NetlinkError[]>;
  /** Makes sure dummy link `name` exists and is up. */
  ensureDummy(name: string): Promise<void>;
  /** The addresses of link `name`; undefined when the link does not exist. */
  linkAddresses(name: string): Promise<string[] | undefined>;
  /** Binds or unbinds addresses on link `name` (which must exist); returns the failures. */
  changeAddresses(name: string, op: 'add' | 'del', addresses: readonly string[]): Promise<NetlinkError[]>;
  /** Deletes link `name` if present (tests). */
  deleteLink(name: string): Promise<void>;
  /** Removes every IPVS service of the namespace (tests). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

const ESRCH = 3;
const ENOENT = 2;

/** IPVS and rtnetlink sockets of this process's network namespace. */
export class LocalIpvsKernel implements IpvsKernel {
  private readonly ipvs = new IpvsNetlink();
  private readonly rtnl = new Rtnl();

  listServices(): Promise<KernelService[]> {
    return this.ipvs.listServices();
  }
  async listDestinations(service: ServiceId): Promise<Destination[]> {
    try {
      return await this.ipvs.listDestinations(service);
    } catch (err) {
      if (err instanceof NetlinkError && (err.errno === ESRCH || err.errno === ENOENT)) return [];
      throw err;
    }
  }
  apply(ops: readonly IpvsOp[]): Promise<NetlinkError[]> {
    return this.ipvs.apply(ops);
  }
  async ensureDummy(name: string): Promise<void> {
    await this.rtnl.ensureDummy(name);
  }
  async linkAddresses(name: string): Promise<string[] | undefined> {
    const index = await this.rtnl.linkIndex(name);
    return index === undefined ? undefined : this.rtnl.addresses(index);
  }
  async changeAddresses(name: string, op: 'add' | 'del', addresses: readonly string[]): Promise<NetlinkError[]> {
    if (addresses.length === 0) return [];
    const index = await this.rtnl.linkIndex(name);
    if (index === undefined) return op === 'del' ? [] : [new NetlinkError(`bind addresses to ${name}`, 19, 'ENODEV')];
    return this.rtnl.changeAddresses(index, op, addresses);
  }
  deleteLink(name: string): Promise<void> {
    return this.rtnl.deleteLink(name);
  }
  flush(): Promise<void> {
    return this.ipvs.flush();
  }
  close(): Promise<void> {
    this.ipvs.close();
    this.rtnl.close();
    return Promise.resolve();
  }
}

type Method =
  | 'listServices'
  | 'listDestinations'
  | 'apply'
  | 'ensureDummy'
  | 'linkAddresses'
  | 'changeAddresses'
  | 'deleteLink'
  | 'flush';

/** What crosses the pipe for a NetlinkError. */
export interface WireError {
  readonly operation: string;
  readonly errno: number;
  readonly code: string;
  readonly message?: string;
}

export const toWireError = (e: unknown): WireError =>
  e instanceof NetlinkError
    ? { operation: e.operation, errno: e.errno, code: e.code }
    : { operation: 'agent', errno: 0, code: String((e as Error)?.message ?? e) };
const fromWireError = (w: WireError): NetlinkError => new NetlinkError(w.operation, w.errno, w.code);

/** Runs the agent inside a named network namespace and forwards every call to it. */
export class NetnsIpvsKernel implements IpvsKernel {
  private readonly agent: AgentProcess;

  constructor(readonly netns: string) {
    this.agent = new AgentProcess({
      name: `IPVS agent in network namespace ${netns}`,
      script: fileURLToPath(new URL('./agent.js', import.meta.url)),
      netns,
      // An idle agent must not keep the executor alive on its own (the default).
      decodeError: (w) => fromWireError(w as WireError),
      exitError: (why, stderr) =>
        new NetlinkError(`IPVS agent in network namespace ${netns}`, 0, `${why}${stderr ? `: ${stderr}` : ''}`),
    });
  }

  private call<T>(method: Method, ...args: unknown[]): Promise<T> {
    return this.agent.call<T>(method, ...args);
  }

  listServices(): Promise<KernelService[]> {
    return this.call('listServices');
  }
  listDestinations(service: ServiceId): Promise<Destination[]> {
    return this.call('listDestinations', service);
  }
  async apply(ops: readonly IpvsOp[]): Promise<NetlinkError[]> {
    return (await this.call<WireError[]>('apply', ops)).map(fromWireError);
  }
  ensureDummy(name: string): Promise<void> {
    return this.call('ensureDummy', name);
  }
  async linkAddresses(name: string): Promise<string[] | undefined> {
    return (await this.call<string[] | null>('linkAddresses', name)) ?? undefined;
  }
  async changeAddresses(name: string, op: 'add' | 'del', addresses: readonly string[]): Promise<NetlinkError[]> {
    return (await this.call<WireError[]>('changeAddresses', name, op, addresses)).map(fromWireError);
  }
  deleteLink(name: string): Promise<void> {
    return this.call('deleteLink', name);
  }
  flush(): Promise<void> {
    return this.call('flush');
  }
  close(): Promise<void> {
    return this.agent.close();
  }
}

/** The IPVS kernel interface of `netns` (a child process inside it), or of this process's namespace. */
export function createIpvsKernel(options: { netns?: string | undefined } = {}): IpvsKernel {
  return options.netns === undefined ? new LocalIpvsKernel() : new NetnsIpvsKernel(options.netns);
}
