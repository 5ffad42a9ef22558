// One resolved view: the settings a file may give in more than one place resolved to the one value the active mode
// uses, as kube-proxy's v1alpha1 conversion (pkg/proxy/apis/config/v1alpha1/conversion.go) picks them:
// - syncPeriod, minSyncPeriod: from the active mode's own section;
// - masqueradeAll, masqueradeBit: from `nftables` in nftables mode, else from `iptables` (ipvs mode included).
// kpx also accepts `masqueradeAll`, `syncPeriod` and `minSyncPeriod` at the top level (they exist in kube-proxy's
// internal config and in v1alpha2, not in v1alpha1): each stands for the field of the section above, with a
// warning, and fills in only when that section does not set the field.
import { DEFAULT_SECTIONS } from './defaults.js';
import type { DecodedConfig, Reader, TopLevelAliases } from './decode.js';
import { ProxyMode, type KubeProxyConfig, type ModeSections, type SectionName } from './types.js';
import { checkSyncPeriods } from './validate.js';

// Section fields that only one mode uses, with the section property that holds them.
const SECTION_PROPS: Readonly<Record<SectionName, Readonly<Record<string, string>>>> = {
  iptables: {
    masqueradeBit: 'masqueradeBit',
    masqueradeAll: 'masqueradeAll',
    localhostNodePorts: 'localhostNodePorts',
    syncPeriod: 'syncPeriodMs',
    minSyncPeriod: 'minSyncPeriodMs',
  },
  ipvs: {
    scheduler: 'scheduler',
    syncPeriod: 'syncPeriodMs',
    minSyncPeriod: 'minSyncPeriodMs',
    excludeCIDRs: 'excludeCIDRs',
    strictARP: 'strictARP',
    tcpTimeout: 'tcpTimeoutMs',
    tcpFinTimeout: 'tcpFinTimeoutMs',
    udpTimeout: 'udpTimeoutMs',
  },
  nftables: {
    masqueradeBit: 'masqueradeBit',
    masqueradeAll: 'masqueradeAll',
    syncPeriod: 'syncPeriodMs',
    minSyncPeriod: 'minSyncPeriodMs',
  },
};
/** Section fields the given mode does not read (kube-proxy ignores them). */
const UNUSED_IN_MODE: Readonly<Record<ProxyMode, readonly (readonly [SectionName, string])[]>> = {
  iptables: [
    ...Object.keys(SECTION_PROPS.ipvs).map((k) => ['ipvs', k] as const),
    ...Object.keys(SECTION_PROPS.nftables).map((k) => ['nftables', k] as const),
  ],
  ipvs: [
    ['iptables', 'localhostNodePorts'],
    ['iptables', 'syncPeriod'],
    ['iptables', 'minSyncPeriod'],
    ...Object.keys(SECTION_PROPS.nftables).map((k) => ['nftables', k] as const),
  ],
  nftables: [
    ...Object.keys(SECTION_PROPS.iptables).map((k) => ['iptables', k] as const),
    ...Object.keys(SECTION_PROPS.ipvs).map((k) => ['ipvs', k] as const),
  ],
};

/** The section whose sync periods the mode reads, and the one whose masquerade settings it reads. */
export function modeSections(mode: ProxyMode): {
  readonly sync: SectionName;
  readonly masquerade: 'iptables' | 'nftables';
} {
  return { sync: mode, masquerade: mode === ProxyMode.NFTables ? 'nftables' : 'iptables' };
}

/** The resolved configuration of a decoded file; warns about what the active mode ignores, checks the sync periods. */
export function resolveConfig(decoded: DecodedConfig, reader: Reader): KubeProxyConfig {
  const { settings, sections, written, aliases } = decoded;
  warnUnusedModeFields(settings.mode, sections, written, reader);
  const { sync, masquerade } = modeSections(settings.mode);
  const syncSection = sections[sync];
  const masqSection = sections[masquerade];

  const alias = <T>(key: keyof TopLevelAliases, sectionName: SectionName): T | undefined => {
    const given = aliases[key] as { readonly value: T | undefined } | undefined;
    if (given === undefined) return undefined;
    const sectionSets = written[sectionName].has(key);
    const wins = sectionSets
      ? `; ${sectionName}.${key} is also set and takes precedence`
      : `; used as ${sectionName}.${key}`;
    const places =
      key === 'masqueradeAll'
        ? 'iptables.masqueradeAll or nftables.masqueradeAll'
        : `iptables.${key}, ipvs.${key} or nftables.${key}`;
    reader.warn(
      key,
      `not a KubeProxyConfiguration v1alpha1 field (kube-proxy ignores it; its place is ${places})${wins}`,
    );
    return sectionSets ? undefined : given.value;
  };

  const masqueradeAll = alias<boolean>('masqueradeAll', masquerade) ?? masqSection.masqueradeAll;
  // Like the section fields (v1alpha1 defaulting), an alias of 0 leaves the section's value.
  const syncAlias = alias<number>('syncPeriod', sync);
  const minAlias = alias<number>('minSyncPeriod', sync);
  const useSyncAlias = syncAlias !== undefined && syncAlias !== 0;
  const useMinAlias = minAlias !== undefined && minAlias !== 0;
  const syncPeriodMs = useSyncAlias ? syncAlias : syncSection.syncPeriodMs;
  const minSyncPeriodMs = useMinAlias ? minAlias : syncSection.minSyncPeriodMs;
  const syncField = useSyncAlias ? 'syncPeriod' : `${sync}.syncPeriod`;
  const minField = useMinAlias ? 'minSyncPeriod' : `${sync}.minSyncPeriod`;
  const periods = checkSyncPeriods(syncPeriodMs, minSyncPeriodMs, minField);
  if (periods.sync !== undefined) reader.problem(syncField, periods.sync);
  if (periods.min !== undefined) reader.problem(minField, periods.min);

  const { localhostNodePorts } = sections.iptables;
  const { scheduler, excludeCIDRs, strictARP, tcpTimeoutMs, tcpFinTimeoutMs, udpTimeoutMs } = sections.ipvs;
  const { mode, hostnameOverride, bindAddress, healthzBindAddress, metricsBindAddress, ...rest } = settings;
  return {
    mode,
    hostnameOverride,
    bindAddress,
    healthzBindAddress,
    metricsBindAddress,
    masqueradeAll,
    masqueradeBit: masqSection.masqueradeBit,
    syncPeriodMs,
    minSyncPeriodMs,
    ...rest,
    iptables: { localhostNodePorts },
    ipvs: { scheduler, excludeCIDRs, strictARP, tcpTimeoutMs, tcpFinTimeoutMs, udpTimeoutMs },
  };
}

function warnUnusedModeFields(
  mode: ProxyMode,
  sections: ModeSections,
  written: Readonly<Record<SectionName, ReadonlySet<string>>>,
  reader: Reader,
): void {
  for (const [name, key] of UNUSED_IN_MODE[mode]) {
    const prop = SECTION_PROPS[name][key];
    if (prop === undefined || !written[name].has(key)) continue;
    const value = (sections[name] as unknown as Record<string, unknown>)[prop];
    const dflt = (DEFAULT_SECTIONS[name] as unknown as Record<string, unknown>)[prop];
    if (JSON.stringify(value) !== JSON.stringify(dflt)) reader.warn(`${name}.${key}`, `ignored in ${mode} mode`);
  }
}
