// kube-proxy's iptables chain names: a prefix and the first 16 base32 characters of a SHA-256.
import { createHash } from 'node:crypto';

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

/** First 16 characters of the RFC 4648 base32 encoding of sha256(text). */
export function hash16(text: string): string {
  const digest = createHash('sha256').update(text).digest();
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of digest) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < 16) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    if (out.length >= 16) break;
    value &= (1 << bits) - 1;
  }
  return out;
}

export interface ServiceChainNames {
  readonly cluster: string;
  readonly local: string;
  readonly firewall: string;
  readonly external: string;
}

/** Per service port chains; `portName` is kube-proxy's ServicePortName.String(), protocol lower case. */
export function serviceChainNames(servicePortName: string, protocol: string): ServiceChainNames {
  const h = hash16(servicePortName + protocol);
  return {
    cluster: ChainPrefix.Cluster + h,
    local: ChainPrefix.Local + h,
    firewall: ChainPrefix.Firewall + h,
    external: ChainPrefix.External + h,
  };
}

export function endpointChainName(servicePortName: string, protocol: string, endpoint: string): string {
  return ChainPrefix.Endpoint + hash16(servicePortName + protocol + endpoint);
}

export function isServiceChain(name: string): boolean {
  return Object.values(ChainPrefix).some((p) => name.startsWith(p));
}
