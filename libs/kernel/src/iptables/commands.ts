// The iptables programs of one IP family, and the flags kpx passes them (as kube-proxy's pkg/util/iptables does).
import { IpFamily } from '@kpx/proto';

/** Which iptables build to run. */
export const IptablesVariant = {
  /** The one `iptables` points to on this machine (Debian's alternatives: nft since bookworm). */
  System: 'system',
  /** iptables-nft: the iptables API on nf_tables. */
  Nft: 'nft',
  /** iptables-legacy: the x_tables kernel API. */
  Legacy: 'legacy',
} as const;
export type IptablesVariant = (typeof IptablesVariant)[keyof typeof IptablesVariant];

export interface IptablesCommands {
  /** `iptables` / `ip6tables` (listing one builtin chain with -S). */
  readonly iptables: string;
  readonly save: string;
  readonly restore: string;
}

export function iptablesCommands(
  family: IpFamily,
  variant: IptablesVariant = IptablesVariant.System,
): IptablesCommands {
  const base = family === IpFamily.IPv6 ? 'ip6tables' : 'iptables';
  const tool = variant === IptablesVariant.System ? base : `${base}-${variant}`;
  return { iptables: tool, save: `${tool}-save`, restore: `${tool}-restore` };
}

/**
 * `-w SECONDS`: wait for the xtables lock instead of failing (kube-proxy: `-w 5`). iptables-nft takes no lock
 * and accepts the flag for compatibility. kube-proxy also passes `-W 100000`; iptables 1.8.9 prints
 * "Ignoring deprecated --wait-interval option" for it, so kpx leaves it out.
 */
export function waitArgs(seconds: number): string[] {
  return seconds > 0 ? ['-w', String(seconds)] : [];
}

/** The builtin chains of the iptables tables (the only chains kpx never declares, flushes or deletes). */
export const BUILTIN_CHAINS: ReadonlySet<string> = new Set(['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING']);

/** Tables in the order kpx writes them into a transaction; others follow by name. */
export const TABLE_ORDER: readonly string[] = ['raw', 'mangle', 'filter', 'nat'];

export function compareTables(a: string, b: string): number {
  const ra = TABLE_ORDER.indexOf(a);
  const rb = TABLE_ORDER.indexOf(b);
  return (ra < 0 ? TABLE_ORDER.length : ra) - (rb < 0 ? TABLE_ORDER.length : rb) || (a < b ? -1 : a > b ? 1 : 0);
}

/**
 * Chains named KUBE-* that kpx does not own unless its state asks for them: kubelet's canaries and iptables
 * hint, kube-proxy's canary, and kubelet's KUBE-FIREWALL (kpx writes KUBE-FIREWALL only when its state holds it).
 */
export const FOREIGN_KUBE_CHAINS: ReadonlySet<string> = new Set([
  'KUBE-KUBELET-CANARY',
  'KUBE-PROXY-CANARY',
  'KUBE-IPTABLES-HINT',
  'KUBE-FIREWALL',
]);

/** The default owner test: kpx owns every KUBE-* chain but the foreign ones above. */
export function isKubeProxyChain(name: string): boolean {
  return name.startsWith('KUBE-') && !FOREIGN_KUBE_CHAINS.has(name);
}

/** Time allowed for one iptables-save or iptables -S. */
export const ReadTimeoutMs = 300_000;

/** Time allowed for one iptables-restore: 60 s, plus 30 s per megabyte of input beyond the first. */
export function restoreTimeoutMs(inputBytes: number): number {
  return 60_000 + Math.max(0, inputBytes / 1_048_576 - 1) * 30_000;
}
