/**
 * kube-proxy's configuration file (KubeProxyConfiguration, kubeproxy.config.k8s.io/v1alpha1), read the way
 * kube-proxy reads it (pkg/proxy/apis/config):
 * - ./types.ts: the resolved configuration consumers read (one value per setting);
 * - ./decode.ts: YAML/JSON decoded field by field, with ./defaults.ts (v1alpha1/defaults.go plus the Linux platform
 *   defaults of cmd/kube-proxy/app/server_linux.go) and ./validate.ts (validation/validation.go);
 * - ./resolve.ts: the values the active proxy mode uses (v1alpha1/conversion.go);
 * - ./duration.ts, ./suggest.ts: Go durations, "did you mean" (`host:port` is @kpx/common's).
 *
 * Differences from kube-proxy, on purpose:
 * - Top-level `syncPeriod`, `minSyncPeriod` and `masqueradeAll` are not v1alpha1 fields (they exist only in kube-proxy's
 *   internal config and in the later v1alpha2 API); kube-proxy ignores them in a v1alpha1 file. kpx accepts them as
 *   aliases with a warning; the per-mode field (`iptables.syncPeriod`, `ipvs.syncPeriod`, `nftables.masqueradeAll`…),
 *   when present in the file, wins.
 * - Fields kube-proxy knows but kpx does not use are accepted with an "ignored" warning when set to a non-default value.
 * - Feature gate names are not checked (kube-proxy rejects unknown gates); they are kept but ignored.
 */
import { readFile } from 'node:fs/promises';

import { Reader, decodeConfig, parseYaml } from './decode.js';
import { KubeProxyConfigError } from './errors.js';
import { resolveConfig } from './resolve.js';
import {
  KUBE_PROXY_CONFIG_API_VERSION,
  KUBE_PROXY_CONFIG_KIND,
  type KubeProxyConfig,
  type KubeProxyConfigLoadResult,
  type LoadKubeProxyConfigOptions,
} from './types.js';

export {
  IPVSScheduler,
  KUBE_PROXY_CONFIG_API_VERSION,
  KUBE_PROXY_CONFIG_KIND,
  LocalMode,
  NodePortAddressesKind,
  ProxyMode,
} from './types.js';
export type {
  KubeProxyClientConnectionConfig,
  KubeProxyConfig,
  KubeProxyConfigLoadResult,
  KubeProxyConntrackConfig,
  KubeProxyDetectLocalConfig,
  KubeProxyIPTablesConfig,
  KubeProxyIPVSConfig,
  LoadKubeProxyConfigOptions,
  NodePortAddresses,
} from './types.js';
export { KubeProxyConfigError } from './errors.js';
export type { KubeProxyConfigErrorOptions, KubeProxyConfigProblem } from './errors.js';
export { formatDuration, parseDuration } from './duration.js';
export type { ParseDurationOptions } from './duration.js';

/** Decodes, defaults, validates and resolves a parsed document; `undefined` when nothing could be read. */
function readConfig(root: unknown, reader: Reader): KubeProxyConfig | undefined {
  const decoded = decodeConfig(root, reader);
  return decoded === undefined ? undefined : resolveConfig(decoded, reader);
}

/**
 * Parses a KubeProxyConfiguration (YAML or JSON), applies kube-proxy's defaults and validates it.
 * Throws {@link KubeProxyConfigError} listing every problem found.
 */
export function loadKubeProxyConfig(text: string, opts: LoadKubeProxyConfigOptions = {}): KubeProxyConfigLoadResult {
  const source = opts.source;
  const reader = new Reader();
  const root = parseYaml(text, reader, source);
  const config = readConfig(root, reader);
  if (reader.problems.length > 0 || config === undefined) {
    throw new KubeProxyConfigError(reader.problems, { source });
  }
  return { config, warnings: reader.warnings };
}

/** Reads and loads a configuration file; file system errors are wrapped in a {@link KubeProxyConfigError}. */
export async function readKubeProxyConfigFile(path: string): Promise<KubeProxyConfigLoadResult> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new KubeProxyConfigError([{ field: '', message: `cannot read the file: ${reason}` }], {
      source: path,
      cause: err,
    });
  }
  return loadKubeProxyConfig(text, { source: path });
}

/** The configuration kube-proxy runs with when its file holds only apiVersion and kind (Linux). */
export function defaultKubeProxyConfig(): KubeProxyConfig {
  const reader = new Reader();
  const config = readConfig({ apiVersion: KUBE_PROXY_CONFIG_API_VERSION, kind: KUBE_PROXY_CONFIG_KIND }, reader);
  if (config === undefined || reader.problems.length > 0) {
    throw new KubeProxyConfigError(reader.problems);
  }
  return config;
}
