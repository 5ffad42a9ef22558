// The leader lease in a NATS KV bucket (KPX_LEADER, one key per resource name): the controller's lease with
// --manifests, where there is no Kubernetes API. Versions are KV revisions; every write is a compare-and-set.
import { JetStreamApiCodes, JetStreamApiError, type JetStreamClient } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { LeaseConflictError, type LeaseRecord, type LeaseStore, type VersionedLease } from './leader-election.js';

export const LeaderBucket = 'KPX_LEADER';

function isCasConflict(err: unknown): boolean {
  const code = err instanceof JetStreamApiError ? err.code : undefined;
  return (
    code === JetStreamApiCodes.StreamWrongLastSequence || code === JetStreamApiCodes.StreamWrongLastSequenceUnknown
  );
}

function decodeLease(v: Uint8Array): LeaseRecord | undefined {
  try {
    const o = JSON.parse(new TextDecoder().decode(v)) as Partial<LeaseRecord>;
    if (typeof o.holder !== 'string' || typeof o.epoch !== 'number') return undefined;
    return {
      holder: o.holder,
      epoch: o.epoch,
      leaseDurationMs: o.leaseDurationMs ?? 0,
      acquireTime: o.acquireTime ?? '',
      renewTime: o.renewTime ?? '',
    };
  } catch {
    return undefined;
  }
}

export interface NatsLeaseOptions {
  /** The key (kube-controller-manager's --leader-elect-resource-name). */
  readonly name: string;
  /** Bucket replicas (the cluster's JetStream replicas). */
  readonly replicas?: number;
}

export async function natsLeaseStore(js: JetStreamClient, opts: NatsLeaseOptions): Promise<LeaseStore> {
  const kv: KV = await new Kvm(js).create(LeaderBucket, {
    history: 1,
    ...(opts.replicas ? { replicas: opts.replicas } : {}),
  });
  const cas = async (op: () => Promise<number>): Promise<string> => {
    try {
      return String(await op());
    } catch (err) {
      if (isCasConflict(err))
        throw new LeaseConflictError(`lease ${LeaderBucket}/${opts.name} was written by someone else`, { cause: err });
      throw err;
    }
  };
  return {
    description: `nats KV ${LeaderBucket}/${opts.name}`,
    async get(): Promise<VersionedLease | undefined> {
      const e = await kv.get(opts.name);
      if (!e || e.operation !== 'PUT') return undefined;
      // An unreadable value is a lease held by nobody: it can be taken over (after the lease duration).
      const record = decodeLease(e.value) ?? {
        holder: '',
        epoch: 0,
        leaseDurationMs: 0,
        acquireTime: '',
        renewTime: '',
      };
      return { record, version: String(e.revision) };
    },
    create: (record) => cas(() => kv.create(opts.name, JSON.stringify(record))),
    update: (record, version) => cas(() => kv.update(opts.name, JSON.stringify(record), Number(version))),
  };
}
