// What the controller's tests share: the examples' objects, shop/web's EndpointSlice with chosen endpoints, polling.
import { readManifestDir, type KubeObject } from '@kpx/model';

export const ExamplesDir = new URL('../../../../examples/', import.meta.url).pathname;

/** The Services, EndpointSlices and Nodes of examples/. */
export async function exampleObjects(): Promise<KubeObject[]> {
  return (await readManifestDir(ExamplesDir))
    .map((m) => m.object)
    .filter((o) => ['Service', 'EndpointSlice', 'Node'].includes(o.kind ?? ''));
}

/** shop/web's EndpointSlice (web-abc12) with ready endpoints at `ips` on node-a, at resourceVersion `rv`. */
export function webSlice(ips: readonly string[], rv: string): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: 'web-abc12',
      namespace: 'shop',
      resourceVersion: rv,
      labels: { 'kubernetes.io/service-name': 'web' },
    },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: ips.map((ip) => ({ addresses: [ip], nodeName: 'node-a', conditions: { ready: true } })),
  } as KubeObject;
}

/** Polls `cond` every 10 ms until it holds; throws after `ms`, naming `what`. */
export async function waitFor(cond: () => boolean | Promise<boolean>, ms = 5000, what = 'a condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
