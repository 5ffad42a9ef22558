// The IPVS mode as the per-node sharing engine drives it: a service port splits into parts (VIP virtual servers,
// per-node NodePort ones, hairpin members, conntrack duty), and bound addresses are units every port with that VIP
// claims.
import { IPVSScheduler } from '@kpx/model';
import type { RuleObject as WireObject } from '@kpx/proto';
import type { IptablesOptions } from '../iptables/options.js';
import { sealed, type AnyModeCompiler, type ModeCompiler, type UnitClaim } from '../mode.js';
import { sameWire } from '../wire.js';
import {
  IpvsMode,
  compileIpvsAddress,
  compileIpvsNodeBase,
  ipvsAddressClaims,
  ipvsAddressVariantKeyFn,
  ipvsServicePortParts,
  makeIpvsContext,
  mergeAddressClaims,
  type IpvsAddressClaim,
} from './compile.js';
import type { IpvsContext } from './context.js';
import type { IpvsOptions } from './options.js';

/** A bound address as a unit: its id is the address. */
export type AddressUnit = IpvsAddressClaim & UnitClaim;

const unit = (c: IpvsAddressClaim): AddressUnit => ({ id: c.address, address: c.address, always: c.always });

/**
 * sameWire for the IPVS kinds it leaves out (virtual servers, addresses): an IPVS node's NodePort ports are
 * compiled per node, and their other virtual servers are then still one object in memory.
 */
export function sameIpvsWire(a: WireObject, b: WireObject): boolean {
  const p = a.payload;
  const q = b.payload;
  if (a.kind !== b.kind || a.key !== b.key || !p || !q) return false;
  if (p.$case === 'ipvsService' && q.$case === 'ipvsService') {
    const x = p.value;
    const y = q.value;
    if (
      x.protocol !== y.protocol ||
      x.address !== y.address ||
      x.port !== y.port ||
      x.scheduler !== y.scheduler ||
      x.flags !== y.flags ||
      x.timeoutSeconds !== y.timeoutSeconds
    )
      return false;
    if (x.realServers.length !== y.realServers.length) return false;
    return x.realServers.every((r, i) => {
      const o = y.realServers[i];
      return o !== undefined && r.address === o.address && r.port === o.port && r.weight === o.weight;
    });
  }
  if (p.$case === 'ipvsAddress' && q.$case === 'ipvsAddress')
    return p.value.interface === q.value.interface && p.value.address === q.value.address;
  return false;
}

/** The IPVS mode: bound addresses are units, claimed by every service port with that VIP. */
export function ipvsModeCompiler(options: IpvsOptions): ModeCompiler<IpvsContext, AddressUnit> {
  return {
    mode: IpvsMode,
    largeClusterMode: false,
    makeContext: (node) => makeIpvsContext(node, options),
    nodeBase: compileIpvsNodeBase,
    servicePortParts: (svc, endpoints) => ipvsServicePortParts(options, svc, endpoints),
    units: {
      claims: (svc) => ipvsAddressClaims(svc).map(unit),
      merge: (claims) => unit([...mergeAddressClaims(claims).values()][0] ?? { address: '', always: false }),
      compile: (ctx, claim) => compileIpvsAddress(ctx, claim),
      keyFn: (claim) => ipvsAddressVariantKeyFn(claim),
    },
    // Its companion iptables rules, ipset entries and health checks compare as in iptables mode.
    same: (a, b) => sameWire(a, b) || sameIpvsWire(a, b),
  };
}

/** {@link ipvsModeCompiler}, sealed (the registry's entry); options without a scheduler get rr, never localhost NodePorts. */
export const ipvsMode = (options: IptablesOptions | IpvsOptions): AnyModeCompiler =>
  sealed(ipvsModeCompiler({ scheduler: IPVSScheduler.RoundRobin, ...options, localhostNodePorts: false }));
