// The leader lease as a coordination.k8s.io/v1 Lease (what kube-controller-manager uses), with --kubeconfig or
// --in-cluster. Versions are resourceVersions: a replace with a stale one gets 409 Conflict from the API server.
// The epoch is spec.leaseTransitions.
import { CoordinationV1Api, KubeConfig, V1MicroTime, type V1Lease } from '@kubernetes/client-node';
import { LeaseConflictError, type LeaseRecord, type LeaseStore, type VersionedLease } from './leader-election.js';

export interface KubernetesLeaseOptions {
  readonly kubeconfigPath?: string;
  readonly inCluster?: boolean;
  /** --leader-elect-resource-name and --leader-elect-resource-namespace. */
  readonly name: string;
  readonly namespace: string;
}

function statusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; statusCode?: unknown };
  const code = e.code ?? e.statusCode;
  return typeof code === 'number' ? code : undefined;
}

export function leaseToRecord(lease: V1Lease): LeaseRecord {
  const s = lease.spec ?? {};
  const time = (t: Date | undefined): string => (t ? new Date(t).toISOString() : '');
  return {
    holder: s.holderIdentity ?? '',
    epoch: s.leaseTransitions ?? 0,
    leaseDurationMs: (s.leaseDurationSeconds ?? 0) * 1000,
    acquireTime: time(s.acquireTime),
    renewTime: time(s.renewTime),
  };
}

export function recordToLease(
  r: LeaseRecord,
  meta: { name: string; namespace: string; resourceVersion?: string },
): V1Lease {
  const micro = (iso: string): V1MicroTime | undefined => (iso ? new V1MicroTime(iso) : undefined);
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: {
      name: meta.name,
      namespace: meta.namespace,
      ...(meta.resourceVersion ? { resourceVersion: meta.resourceVersion } : {}),
    },
    spec: {
      holderIdentity: r.holder,
      leaseDurationSeconds: Math.ceil(r.leaseDurationMs / 1000),
      leaseTransitions: r.epoch,
      ...(r.acquireTime ? { acquireTime: micro(r.acquireTime) } : {}),
      ...(r.renewTime ? { renewTime: micro(r.renewTime) } : {}),
    },
  };
}

export function kubernetesLeaseStore(opts: KubernetesLeaseOptions): LeaseStore {
  const config = new KubeConfig();
  if (opts.inCluster) config.loadFromCluster();
  else if (opts.kubeconfigPath !== undefined) config.loadFromFile(opts.kubeconfigPath);
  else config.loadFromDefault();
  const api = config.makeApiClient(CoordinationV1Api);
  const { name, namespace } = opts;
  const conflict = (err: unknown): never => {
    if (statusOf(err) === 409)
      throw new LeaseConflictError(`Lease ${namespace}/${name} was written by someone else`, { cause: err });
    throw err;
  };
  return {
    description: `lease ${namespace}/${name}`,
    async get(): Promise<VersionedLease | undefined> {
      try {
        const lease = await api.readNamespacedLease({ name, namespace });
        return { record: leaseToRecord(lease), version: lease.metadata?.resourceVersion ?? '' };
      } catch (err) {
        if (statusOf(err) === 404) return undefined;
        throw err;
      }
    },
    async create(record: LeaseRecord): Promise<string> {
      const lease = await api
        .createNamespacedLease({ namespace, body: recordToLease(record, { name, namespace }) })
        .catch(conflict);
      return lease.metadata?.resourceVersion ?? '';
    },
    async update(record: LeaseRecord, version: string): Promise<string> {
      const body = recordToLease(record, { name, namespace, resourceVersion: version });
      const lease = await api.replaceNamespacedLease({ name, namespace, body }).catch(conflict);
      return lease.metadata?.resourceVersion ?? '';
    },
  };
}
