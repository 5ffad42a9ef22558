// The node an executor programs when --node is not given: $NODE_NAME (the downward API's spec.nodeName in the
// DaemonSet), else the hostname lower-cased, as kube-proxy's --hostname-override defaults.
import { hostname } from 'node:os';

export function defaultNodeName(env: NodeJS.ProcessEnv = process.env, host: () => string = hostname): string {
  const fromEnv = env['NODE_NAME']?.trim();
  if (fromEnv) return fromEnv;
  return host().trim().toLowerCase();
}
