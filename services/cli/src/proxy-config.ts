// KubeProxyConfiguration -> compiler options.
import type { IPFamily } from '@kpx/model';
import { defaultIptablesOptions, type IptablesOptions } from '@kpx/compiler';

export interface LoadedProxyConfig {
  readonly config: { mode: string };
  readonly warnings: readonly string[];
}

export async function loadProxyConfig(path: string | undefined): Promise<LoadedProxyConfig> {
  if (path !== undefined) throw new Error('config files are not supported yet');
  return Promise.resolve({ config: { mode: '' }, warnings: [] });
}

export function iptablesOptionsFor(_config: LoadedProxyConfig['config'], family: IPFamily): IptablesOptions {
  return defaultIptablesOptions(family);
}
