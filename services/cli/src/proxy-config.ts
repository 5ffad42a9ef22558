// The KubeProxyConfiguration kpx render uses: a file, or kube-proxy's defaults.
import { defaultKubeProxyConfig, readKubeProxyConfigFile, type KubeProxyConfigLoadResult } from '@kpx/model';

export async function loadProxyConfig(path: string | undefined): Promise<KubeProxyConfigLoadResult> {
  if (path === undefined) return { config: defaultKubeProxyConfig(), warnings: [] };
  return readKubeProxyConfigFile(path);
}
