// kube-proxy's iptables chain names: a prefix and the first 16 base32 characters of a SHA-256.
import * as crypto from 'node:crypto';
import { digestWords, sha256Ascii } from './sha256.js';

export const Chain = {
  Services: 'KUBE-SERVICES',
  ExternalServices: 'KUBE-EXTERNAL-SERVICES',
  NodePorts: 'KUBE-NODEPORTS',
  Postrouting: 'KUBE-POSTROUTING',
  MarkMasq: 'KUBE-MARK-MASQ',
  Forward: 'KUBE-FORWARD',
  ProxyFirewall: 'KUBE-PROXY-FIREWALL',
  /** kubelet's chain, duplicated by kube-proxy for the localhost NodePort guard. */
  KubeletFirewall: 'KUBE-FIREWALL',
} as const;

export const ChainPrefix = {
  Cluster: 'KUBE-SVC-',
  Local: 'KUBE-SVL-',
  Firewall: 'KUBE-FW-',
  External: 'KUBE-EXT-',
  Endpoint: 'KUBE-SEP-',
} as const;

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** sha256 as hex: the one-shot crypto.hash (Node >= 20.12) when there, it is several times faster per call. */
const sha256Hex: (text: string) => string =
  typeof (crypto as { hash?: unknown }).hash === 'function'
    ? (text) => crypto.hash('sha256', text, 'hex')
    : (text) => crypto.createHash('sha256').update(text).digest('hex');

const B32_CODES = Array.from(B32, (c) => c.charCodeAt(0));

/** Value of the hex digit with character code `c` (0-9, a-f: what digest('hex') writes). */
const hexValue = (c: number): number => (c <= 57 ? c - 48 : c - 87);

/** Writes the 4 base32 characters of the 20-bit value `v` into `out` from index `at`. */
function put20(v: number, out: Uint8Array, at: number): void {
  out[at] = B32_CODES[(v >>> 15) & 31] ?? 0;
  out[at + 1] = B32_CODES[(v >>> 10) & 31] ?? 0;
  out[at + 2] = B32_CODES[(v >>> 5) & 31] ?? 0;
  out[at + 3] = B32_CODES[v & 31] ?? 0;
}

/**
 * Writes the first 16 base32 characters of sha256(text) (its first 80 bits, 4 groups of 20) into `out` from
 * index `at` (as ASCII bytes).
 */
function putHash16(text: string, out: Uint8Array, at: number): void {
  if (sha256Ascii(text)) {
    const h0 = digestWords[0] as number;
    const h1 = digestWords[1] as number;
    const h2 = digestWords[2] as number;
    put20(h0 >>> 12, out, at);
    put20(((h0 & 0xfff) << 8) | (h1 >>> 24), out, at + 4);
    put20((h1 >>> 4) & 0xfffff, out, at + 8);
    put20(((h1 & 0xf) << 16) | (h2 >>> 16), out, at + 12);
    return;
  }
  // Not ASCII (no Kubernetes name or address is): the hash of its UTF-8, from node:crypto.
  const hex = sha256Hex(text);
  for (let g = 0; g < 4; g++) {
    let v = 0;
    for (let i = g * 5; i < g * 5 + 5; i++) v = (v << 4) | hexValue(hex.charCodeAt(i));
    put20(v, out, at + g * 4);
  }
}

/**
 * Where a name is assembled: a node has some hundred thousand chain names, and a name built in here and read out
 * once is one flat string and no other garbage (a concatenated string costs up to four heap objects).
 */
const scratch = Buffer.alloc(64);

/** `prefix` (ASCII, at most 48 characters) and the 16 bytes of `hash`, as one string. */
function withPrefix(prefix: string, hash: Uint8Array): string {
  const n = scratch.write(prefix, 0, 'latin1');
  scratch.set(hash, n);
  return scratch.toString('latin1', 0, n + 16);
}

/** `prefix` (ASCII, at most 48 characters) and the first 16 base32 characters of sha256(text). */
function prefixedHash16(prefix: string, text: string): string {
  const n = scratch.write(prefix, 0, 'latin1');
  putHash16(text, scratch, n);
  return scratch.toString('latin1', 0, n + 16);
}

/** First 16 characters of the RFC 4648 base32 encoding of sha256(text) (its first 80 bits). */
export function hash16(text: string): string {
  return prefixedHash16('', text);
}

export interface ServiceChainNames {
  readonly cluster: string;
  readonly local: string;
  readonly firewall: string;
  readonly external: string;
}

/** The 16 hash characters the four names of a service port share (a typed array each time costs more than them). */
const serviceHash = new Uint8Array(16);

/** Per service port chains; `portName` is kube-proxy's ServicePortName.String(), protocol lower case. */
export function serviceChainNames(servicePortName: string, protocol: string): ServiceChainNames {
  const h = serviceHash;
  putHash16(servicePortName + protocol, h, 0);
  return {
    cluster: withPrefix(ChainPrefix.Cluster, h),
    local: withPrefix(ChainPrefix.Local, h),
    firewall: withPrefix(ChainPrefix.Firewall, h),
    external: withPrefix(ChainPrefix.External, h),
  };
}

export function endpointChainName(servicePortName: string, protocol: string, endpoint: string): string {
  return prefixedHash16(ChainPrefix.Endpoint, servicePortName + protocol + endpoint);
}

/** {@link endpointChainName} for the endpoints of one service port (its name and protocol joined once). */
export function endpointChainNamer(servicePortName: string, protocol: string): (endpoint: string) => string {
  const base = servicePortName + protocol;
  return (endpoint) => prefixedHash16(ChainPrefix.Endpoint, base + endpoint);
}

export function isServiceChain(name: string): boolean {
  return Object.values(ChainPrefix).some((p) => name.startsWith(p));
}
