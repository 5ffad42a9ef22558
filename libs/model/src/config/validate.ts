// Per-field validation, as pkg/proxy/apis/config/validation/validation.go: each check returns what is wrong with a
// value (the message names the value; the caller names the field), or undefined when it is fine.
import { type Cidr, IPFamily, ipFamilyOf, parseCidr } from '../ip.js';
import { formatDuration } from './duration.js';
import { splitHostPort } from '@kpx/common';

/** A value as the messages quote it: JSON (strings in double quotes), as Go's %q mostly does. */
export function show(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (typeof v === 'bigint') return v.toString();
  try {
    return JSON.stringify(v) ?? typeof v;
  } catch {
    return typeof v;
  }
}

/** A duration as kube-proxy's messages print it: Go's spelling, quoted ("1m0s"). */
export function showDuration(ms: number): string {
  return show(formatDuration(ms));
}

export function checkMasqueradeBit(bit: number): string | undefined {
  return bit < 0 || bit > 31 ? `invalid value ${bit}: must be within the range [0, 31]` : undefined;
}

export function checkNonNegative(shown: string, value: number): string | undefined {
  return value < 0 ? `invalid value ${shown}: must be greater than or equal to 0` : undefined;
}

export function checkNonNegativeDuration(ms: number): string | undefined {
  return checkNonNegative(showDuration(ms), ms);
}

export function checkPositiveDuration(ms: number): string | undefined {
  return ms <= 0 ? `invalid value ${showDuration(ms)}: must be greater than 0` : undefined;
}

/** `syncPeriod` against `minSyncPeriod` (named `minField` in the message). */
export function checkSyncPeriods(
  syncPeriodMs: number,
  minSyncPeriodMs: number,
  minField: string,
): { sync?: string; min?: string } {
  const min = checkNonNegativeDuration(minSyncPeriodMs);
  let sync = checkPositiveDuration(syncPeriodMs);
  if (sync === undefined && minSyncPeriodMs > syncPeriodMs) {
    sync = `invalid value ${showDuration(syncPeriodMs)}: must be greater than or equal to ${minField} (${showDuration(minSyncPeriodMs)})`;
  }
  return { ...(sync === undefined ? {} : { sync }), ...(min === undefined ? {} : { min }) };
}

/** A CIDR as kube-proxy's ParseCIDR accepts it (no surrounding spaces), parsed by the package's helper. */
export function parseConfigCidr(text: string): Cidr | undefined {
  return text === text.trim() ? parseCidr(text) : undefined;
}

/** The family of an IP address; IPv4-mapped IPv6 counts as IPv4, as Go's To4() does. */
export function ipFamily(text: string): IPFamily | undefined {
  return text === text.trim() ? ipFamilyOf(text) : undefined;
}

/** `clusterCIDR`: one CIDR, or a comma-separated dual-stack pair (one IPv4, one IPv6). */
export function parseClusterCidrs(text: string): { cidrs: Cidr[]; problems: string[] } {
  const parts = text.split(',');
  const example = '(e.g. "10.100.0.0/16" or "10.100.0.0/16,fde4:8dba:82e1::/48")';
  if (parts.length > 2) {
    return {
      cidrs: [],
      problems: [`invalid value ${show(text)}: must be a single CIDR or a dual-stack pair of CIDRs ${example}`],
    };
  }
  const cidrs: Cidr[] = [];
  const problems: string[] = [];
  for (const part of parts) {
    const cidr = parseConfigCidr(part);
    if (cidr === undefined) {
      const spaces = part !== part.trim() ? ' (no spaces are allowed around the comma)' : '';
      problems.push(`invalid value ${show(text)}: ${show(part)} is not a valid CIDR block${spaces} ${example}`);
    } else {
      cidrs.push(cidr);
    }
  }
  const [a, b] = cidrs;
  if (a !== undefined && b !== undefined && a.family === b.family) {
    problems.push(
      `invalid value ${show(text)}: two ${a.family} CIDRs; a dual-stack pair needs one IPv4 and one IPv6 CIDR ${example}`,
    );
  }
  return { cidrs: cidrs.length === parts.length ? cidrs : [], problems };
}

/** proxyutil.AppendPortIfNeeded: a bare IP gets the default port; anything else is left for validation. */
export function appendPortIfNeeded(addr: string, port: number): string {
  if (splitHostPort(addr).error === undefined) return addr;
  const family = ipFamily(addr);
  if (family === undefined) return addr;
  return family === IPFamily.IPv4 ? `${addr}:${port}` : `[${addr}]:${port}`;
}

/** validation.validateHostPort: `IP:port` with a valid IP and a port in 1..65535. */
export function checkHostPort(s: string): string | undefined {
  const hp = splitHostPort(s);
  if (hp.error !== undefined) return 'must be IP:port';
  if (ipFamily(hp.host) === undefined) return `${show(hp.host)} must be a valid IP`;
  const port = /^[0-9]+$/.test(hp.port) ? Number(hp.port) : NaN;
  if (!(port >= 1 && port <= 65535)) return `port ${show(hp.port)} must be a valid port (1-65535)`;
  return undefined;
}
