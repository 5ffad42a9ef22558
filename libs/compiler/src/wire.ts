// Compiler rule objects -> wire (protobuf) rule objects, and their equality field for field.
import type { RuleObject as WireObject } from '@kpx/proto';
import { RuleKind, type RuleObject } from './ruleset.js';

export function toWire(o: RuleObject): WireObject {
  switch (o.kind) {
    case RuleKind.IptablesChain:
      return {
        kind: o.kind,
        key: o.key,
        payload: { $case: 'iptablesChain', value: { table: o.table, name: o.chain, rules: [...o.rules] } },
      };
    case RuleKind.IptablesRules:
      return {
        kind: o.kind,
        key: o.key,
        payload: {
          $case: 'iptablesRules',
          value: { table: o.table, chain: o.chain, rules: [...o.rules], position: o.position },
        },
      };
    case RuleKind.IptablesJump:
      // Prepended, as kube-proxy does; the position orders the jumps of one builtin chain (0 at the head).
      return {
        kind: o.kind,
        key: o.key,
        payload: {
          $case: 'iptablesJump',
          value: {
            table: o.table,
            chain: o.chain,
            target: o.target,
            rule: o.rule,
            prepend: true,
            position: o.position,
          },
        },
      };
    case RuleKind.IpvsService:
      return {
        kind: o.kind,
        key: o.key,
        payload: {
          $case: 'ipvsService',
          value: {
            protocol: o.protocol,
            address: o.address,
            port: o.port,
            scheduler: o.scheduler,
            flags: o.flags,
            timeoutSeconds: o.timeoutSeconds,
            realServers: o.realServers.map((r) => ({ address: r.address, port: r.port, weight: r.weight })),
          },
        },
      };
    case RuleKind.IpvsAddress:
      return {
        kind: o.kind,
        key: o.key,
        payload: { $case: 'ipvsAddress', value: { interface: o.interface, address: o.address } },
      };
    case RuleKind.IpsetSet:
      return {
        kind: o.kind,
        key: o.key,
        payload: {
          $case: 'ipsetSet',
          value: {
            name: o.name,
            type: o.type,
            family: o.family,
            comment: o.comment,
            hashSize: o.hashSize,
            maxElem: o.maxElem,
            portRange: o.portRange,
            entries: [...o.entries],
          },
        },
      };
    case RuleKind.IpsetEntries:
      return {
        kind: o.kind,
        key: o.key,
        payload: { $case: 'ipsetEntries', value: { set: o.set, entries: [...o.entries] } },
      };
    case RuleKind.HealthCheckService:
      return {
        kind: o.kind,
        key: o.key,
        payload: {
          $case: 'healthCheckService',
          value: { namespace: o.namespace, name: o.name, port: o.port, localEndpoints: o.localEndpoints },
        },
      };
    case RuleKind.ConntrackPort:
      return {
        kind: o.kind,
        key: o.key,
        payload: {
          $case: 'conntrackPort',
          value: {
            protocol: o.protocol,
            port: o.port,
            ips: [...o.ips],
            nodePort: o.nodePort,
            endpoints: [...o.endpoints],
          },
        },
      };
  }
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * True when two wire objects of the iptables kinds, ipset entries or node duties are equal field for field (so
 * they have the same hash). False for other kinds: callers then treat them as different, which is only ever
 * slower, never wrong.
 */
export function sameWire(a: WireObject, b: WireObject): boolean {
  if (a.kind !== b.kind || a.key !== b.key) return false;
  const p = a.payload;
  const q = b.payload;
  if (!p || !q || p.$case !== q.$case) return false;
  switch (p.$case) {
    case 'iptablesChain':
      return (
        q.$case === 'iptablesChain' &&
        p.value.table === q.value.table &&
        p.value.name === q.value.name &&
        sameStrings(p.value.rules, q.value.rules)
      );
    case 'iptablesRules':
      return (
        q.$case === 'iptablesRules' &&
        p.value.table === q.value.table &&
        p.value.chain === q.value.chain &&
        p.value.position === q.value.position &&
        sameStrings(p.value.rules, q.value.rules)
      );
    case 'iptablesJump':
      return (
        q.$case === 'iptablesJump' &&
        p.value.table === q.value.table &&
        p.value.chain === q.value.chain &&
        p.value.target === q.value.target &&
        p.value.rule === q.value.rule &&
        p.value.prepend === q.value.prepend &&
        p.value.position === q.value.position
      );
    case 'ipsetEntries':
      return q.$case === 'ipsetEntries' && p.value.set === q.value.set && sameStrings(p.value.entries, q.value.entries);
    case 'healthCheckService':
      return (
        q.$case === 'healthCheckService' &&
        p.value.namespace === q.value.namespace &&
        p.value.name === q.value.name &&
        p.value.port === q.value.port &&
        p.value.localEndpoints === q.value.localEndpoints
      );
    case 'conntrackPort':
      return (
        q.$case === 'conntrackPort' &&
        p.value.protocol === q.value.protocol &&
        p.value.port === q.value.port &&
        p.value.nodePort === q.value.nodePort &&
        sameStrings(p.value.ips, q.value.ips) &&
        sameStrings(p.value.endpoints, q.value.endpoints)
      );
    default:
      return false;
  }
}
