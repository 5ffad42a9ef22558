// kube-proxy's iptables chain names: a prefix and the first 16 base32 characters of a SHA-256.
import * as crypto from 'node:crypto';

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

/**
 * Writes the character codes of the first 16 base32 characters of sha256(text) (20 hex digits, 80 bits) into
 * `codes` from index `at`.
 */
function putHash16Codes(text: string, codes: number[], at: number): void {
  const hex = sha256Hex(text);
  let n = at;
  for (let g = 0; g < 20; g += 5) {
    // 5 hex digits = 20 bits = 4 base32 characters.
    let v = 0;
    for (let i = g; i < g + 5; i++) v = (v << 4) | hexValue(hex.charCodeAt(i));
    for (let shift = 15; shift >= 0; shift -= 5) codes[n++] = B32_CODES[(v >>> shift) & 31] ?? 0;
  }
}

/** An array of `prefix`'s character codes with room for 16 more (one allocation of the exact size). */
function codesWithPrefix(prefix: string): number[] {
  const codes = new Array<number>(prefix.length + 16);
  for (let i = 0; i < prefix.length; i++) codes[i] = prefix.charCodeAt(i);
  return codes;
}

/**
 * `prefix` and the first 16 base32 characters of sha256(text), as one flat string: a node has some hundred
 * thousand chain names, and a concatenated string costs up to four heap objects where this costs one.
 */
function prefixedHash16(prefix: string, text: string): string {
  const codes = codesWithPrefix(prefix);
  putHash16Codes(text, codes, prefix.length);
  return String.fromCharCode(...codes);
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

/** Per service port chains; `portName` is kube-proxy's ServicePortName.String(), protocol lower case. */
export function serviceChainNames(servicePortName: string, protocol: string): ServiceChainNames {
  const h = new Array<number>(16);
  putHash16Codes(servicePortName + protocol, h, 0);
  const name = (prefix: string): string => {
    const codes = codesWithPrefix(prefix);
    h.forEach((c, i) => (codes[prefix.length + i] = c));
    return String.fromCharCode(...codes);
  };
  return { cluster: name(ChainPrefix.Cluster), local: name(ChainPrefix.Local), firewall: name(ChainPrefix.Firewall), external: name(ChainPrefix.External) };
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
