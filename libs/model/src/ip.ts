// IP address and CIDR helpers. Addresses are normalised to the canonical text form Go's net.IP.String()
// prints (what kube-proxy writes into rules): dotted quad for IPv4 (also for IPv4-mapped IPv6), RFC 5952
// compressed lower case for IPv6.
import { isIPv4, isIPv6 } from 'node:net';

export const IPFamily = { IPv4: 'IPv4', IPv6: 'IPv6' } as const;
export type IPFamily = (typeof IPFamily)[keyof typeof IPFamily];

export interface Cidr {
  readonly family: IPFamily;
  /** Network address, canonical. */
  readonly address: string;
  readonly prefix: number;
  /** `address/prefix`, canonical. */
  readonly text: string;
}

function v6ToWords(text: string): number[] | undefined {
  let s = text;
  let tailV4: number[] = [];
  const lastColon = s.lastIndexOf(':');
  if (s.includes('.', lastColon)) {
    const v4 = s.slice(lastColon + 1);
    if (!isIPv4(v4)) return undefined;
    const b = v4.split('.').map(Number);
    tailV4 = [((b[0] ?? 0) << 8) | (b[1] ?? 0), ((b[2] ?? 0) << 8) | (b[3] ?? 0)];
    s = s.slice(0, lastColon + 1) + '0:0';
  }
  const parts = s.split('::');
  if (parts.length > 2) return undefined;
  const head = parts[0] ? parts[0].split(':') : [];
  const tail = parts.length === 2 && parts[1] ? parts[1].split(':') : [];
  const fill = 8 - head.length - tail.length;
  if (parts.length === 1 && fill !== 0) return undefined;
  if (parts.length === 2 && fill < 1) return undefined;
  const words = [...head, ...Array<string>(parts.length === 2 ? fill : 0).fill('0'), ...tail].map((w) =>
    parseInt(w, 16),
  );
  if (words.length !== 8 || words.some((w) => Number.isNaN(w) || w < 0 || w > 0xffff)) return undefined;
  if (tailV4.length === 2) {
    words[6] = tailV4[0] ?? 0;
    words[7] = tailV4[1] ?? 0;
  }
  return words;
}

function wordsToV6(words: readonly number[]): string {
  // Longest run of zero words (length >= 2) becomes "::" (RFC 5952).
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/**
 * A dotted quad with leading zeros, read as kube-proxy reads it (netutils.ParseIPSloppy: every part decimal, so
 * `010` is ten), in canonical form; undefined for anything else.
 */
function sloppyIPv4(s: string): string | undefined {
  if (!/^\d{1,8}\.\d{1,8}\.\d{1,8}\.\d{1,8}$/.test(s)) return undefined;
  const parts = s.split('.').map(Number);
  return parts.every((p) => p <= 255) ? parts.join('.') : undefined;
}

/** True when `text` is an IPv4 address only ParseIPSloppy accepts: one with leading zeros. */
export function isSloppyIPv4(text: string): boolean {
  return typeof text === 'string' && !isIPv4(text.trim()) && sloppyIPv4(text.trim()) !== undefined;
}

/** Returns the canonical form of an IP address, or undefined if `text` is not one. */
export function canonicalIP(text: string): string | undefined {
  if (typeof text !== 'string') return undefined;
  const s = text.trim();
  // isIPv4 accepts no leading zeros, so a dotted quad it accepts is already canonical.
  if (isIPv4(s)) return s;
  const sloppy = sloppyIPv4(s);
  if (sloppy !== undefined) return sloppy;
  if (!isIPv6(s) || s.includes('%')) return undefined;
  const words = v6ToWords(s.toLowerCase());
  if (!words) return undefined;
  // IPv4-mapped (::ffff:a.b.c.d) prints as IPv4, like Go.
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) {
    const a = words[6] ?? 0;
    const b = words[7] ?? 0;
    return `${a >> 8}.${a & 0xff}.${b >> 8}.${b & 0xff}`;
  }
  return wordsToV6(words);
}

export function ipFamilyOf(ip: string): IPFamily | undefined {
  const c = canonicalIP(ip);
  if (c === undefined) return undefined;
  return c.includes(':') ? IPFamily.IPv6 : IPFamily.IPv4;
}

function toBytes(ip: string): number[] {
  if (ip.includes(':')) {
    const words = v6ToWords(ip) ?? [];
    return words.flatMap((w) => [w >> 8, w & 0xff]);
  }
  return ip.split('.').map(Number);
}

function fromBytes(bytes: readonly number[], family: IPFamily): string {
  if (family === IPFamily.IPv4) return bytes.join('.');
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  return wordsToV6(words);
}

function maskBytes(bytes: readonly number[], prefix: number): number[] {
  return bytes.map((b, i) => {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    return b & ((0xff << (8 - bits)) & 0xff);
  });
}

/**
 * Parses `a.b.c.d/n` or `x::y/n` (host bits allowed and cleared, as Go's ParseCIDR does).
 * Returns undefined if `text` is not a CIDR.
 */
export function parseCidr(text: string): Cidr | undefined {
  if (typeof text !== 'string') return undefined;
  const s = text.trim();
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const ipText = s.slice(0, slash);
  const prefixText = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText)) return undefined;
  const ip = canonicalIP(ipText);
  if (ip === undefined || ipText.includes('::ffff:')) return undefined;
  const family = ip.includes(':') ? IPFamily.IPv6 : IPFamily.IPv4;
  const prefix = Number(prefixText);
  if (prefix > (family === IPFamily.IPv4 ? 32 : 128)) return undefined;
  const address = fromBytes(maskBytes(toBytes(ip), prefix), family);
  return { family, address, prefix, text: `${address}/${prefix}` };
}

/** A canonical dotted quad as an unsigned 32-bit number. */
function ipv4Value(ip: string): number {
  let v = 0;
  for (const o of ip.split('.')) v = v * 256 + Number(o);
  return v;
}

/** True if `ip` (any form) lies inside `cidr`. */
export function cidrContains(cidr: Cidr, ip: string): boolean {
  const c = canonicalIP(ip);
  if (c === undefined || ipFamilyOf(c) !== cidr.family) return false;
  if (
    cidr.family === IPFamily.IPv4 &&
    Number.isInteger(cidr.prefix) &&
    cidr.prefix >= 0 &&
    cidr.prefix <= 32 &&
    isIPv4(cidr.address)
  ) {
    // Integer arithmetic instead of byte arrays (a controller asks this per node for every port with source
    // ranges); the same answer: the masked address equals the CIDR's (canonical) network address.
    const mask = cidr.prefix === 0 ? 0 : (0xffffffff << (32 - cidr.prefix)) >>> 0;
    return (ipv4Value(c) & mask) >>> 0 === ipv4Value(cidr.address);
  }
  const masked = fromBytes(maskBytes(toBytes(c), cidr.prefix), cidr.family);
  return masked === cidr.address;
}

/** `ip:port`, with brackets for IPv6 (Go's net.JoinHostPort). */
export function joinHostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

export function isLoopback(ip: string): boolean {
  const c = canonicalIP(ip);
  if (c === undefined) return false;
  return c === '::1' || c.startsWith('127.');
}
