// Least-privilege NATS permissions per kpx role (issue #15), as the `authorization` block of nats-server's config
// (`kpx nats-config`). Subjects are nats-server 2.9's JetStream API:
//
// - controller: the JetStream API ($JS.API.>: it creates and updates KPX_DELTAS, KPX_AUDIT, the KPX_STATE and
//   KPX_LEADER buckets and the KPX_SNAPSHOTS object store), publishes deltas, audit records, KV and object store
//   writes. Replies only to its own inboxes.
// - node <N>: an ordered consumer on KPX_DELTAS created through the filtered form
//   `$JS.API.CONSUMER.CREATE.KPX_DELTAS.<name>.kpx.delta.<N>` (the server refuses a body whose filter differs
//   from the subject's), pulls, info and delete on KPX_DELTAS consumers (their names are random: consumer
//   listing is not allowed), the newest message of its own subject by direct get, and what replay reads from the
//   snapshot store. It publishes nothing else: no delta, no audit record, no KV or object store write, and it
//   subscribes only to its own inbox prefix, so it never sees another node's deliveries.
// - operator (kpx replay, kpx audit log): the same reads for every node plus the audit log; no publish.
//
// The snapshot store cannot be scoped per node: the object store names its metadata subjects by the base64 of the
// object name, reads them by a STREAM.MSG.GET whose body names the subject, and keeps chunks under random subjects.
// A node may read every node's snapshots (never write them); signatures (signing.ts) protect their integrity.
import { nkeys } from '@nats-io/nats-core';
import {
  AuditStream,
  AuditSubjectPrefix,
  DeltaStream,
  DeltaSubjectPrefix,
  encodeNodeToken,
  inboxPrefix,
  NatsRole,
  SnapshotBucket,
} from './subjects.js';

export interface NatsPermissions {
  readonly publish: { readonly allow: readonly string[]; readonly deny?: readonly string[] };
  readonly subscribe: { readonly allow: readonly string[] };
}

/** One user of the generated block: a role (a node role names its node) and its nkey public key. */
export interface NatsUserSpec {
  readonly role: NatsRole;
  readonly node?: string;
  /** The user's nkey public key (U…). */
  readonly nkey: string;
}

const Api = '$JS.API';
const SnapshotStream = `OBJ_${SnapshotBucket}`;

/** Reading a consumer's messages once created: pull, info, delete (ordered consumers recreate themselves). */
const consumerUse = (stream: string): string[] => [
  `${Api}.CONSUMER.MSG.NEXT.${stream}.*`,
  `${Api}.CONSUMER.INFO.${stream}.*`,
  `${Api}.CONSUMER.DELETE.${stream}.*`,
];

/** Reading snapshots: object metadata (STREAM.MSG.GET), chunks through a push consumer with flow control. */
const snapshotReads = (): string[] => [
  `${Api}.STREAM.INFO.${SnapshotStream}`,
  `${Api}.STREAM.MSG.GET.${SnapshotStream}`,
  `${Api}.CONSUMER.CREATE.${SnapshotStream}.*.$O.${SnapshotBucket}.C.*`,
  ...consumerUse(SnapshotStream),
  `$JS.FC.${SnapshotStream}.>`,
];

/** The permissions of one role (`node` names the node of a node role). */
export function rolePermissions(role: NatsRole, node?: string): NatsPermissions {
  const deny = ['kpx.>', `$KV.>`, `$O.>`];
  switch (role) {
    case NatsRole.Controller:
      return {
        publish: {
          allow: [
            `${Api}.>`,
            `${DeltaSubjectPrefix}.>`,
            `${AuditSubjectPrefix}.>`,
            `$KV.>`,
            `$O.${SnapshotBucket}.>`,
            `$JS.FC.>`,
          ],
        },
        subscribe: { allow: [`${inboxPrefix(role)}.>`] },
      };
    case NatsRole.Node: {
      if (node === undefined) throw new TypeError('a node role needs its node');
      const subject = `${DeltaSubjectPrefix}.${encodeNodeToken(node)}`;
      return {
        publish: {
          allow: [
            `${Api}.INFO`,
            `${Api}.STREAM.INFO.${DeltaStream}`,
            `${Api}.CONSUMER.CREATE.${DeltaStream}.*.${subject}`,
            ...consumerUse(DeltaStream),
            `${Api}.DIRECT.GET.${DeltaStream}.${subject}`,
            ...snapshotReads(),
          ],
          deny,
        },
        subscribe: { allow: [`${inboxPrefix(role, node)}.>`] },
      };
    }
    case NatsRole.Operator:
      return {
        publish: {
          allow: [
            `${Api}.INFO`,
            `${Api}.STREAM.INFO.${DeltaStream}`,
            `${Api}.CONSUMER.CREATE.${DeltaStream}.*.${DeltaSubjectPrefix}.*`,
            ...consumerUse(DeltaStream),
            `${Api}.DIRECT.GET.${DeltaStream}.${DeltaSubjectPrefix}.*`,
            `${Api}.STREAM.INFO.${AuditStream}`,
            `${Api}.CONSUMER.CREATE.${AuditStream}.*.${AuditSubjectPrefix}.>`,
            ...consumerUse(AuditStream),
            ...snapshotReads(),
          ],
          deny,
        },
        subscribe: { allow: [`${inboxPrefix(role)}.>`] },
      };
  }
}

const list = (xs: readonly string[]): string => `[${xs.map((x) => JSON.stringify(x)).join(', ')}]`;

/** nats-server's `authorization { users = [...] }` block for these users. */
export function natsServerAuthConfig(users: readonly NatsUserSpec[]): string {
  const lines = ['authorization {', '  users = ['];
  for (const u of users) {
    const p = rolePermissions(u.role, u.node);
    const deny = p.publish.deny ? `, deny: ${list(p.publish.deny)}` : '';
    lines.push(`    # ${u.role}${u.node !== undefined ? ` ${u.node}` : ''}`);
    lines.push(
      `    { nkey: ${JSON.stringify(u.nkey)}, permissions: { publish: { allow: ${list(p.publish.allow)}${deny} }, subscribe: { allow: ${list(p.subscribe.allow)} } } }`,
    );
  }
  lines.push('  ]', '}');
  return `${lines.join('\n')}\n`;
}

/** A new nkey user: its seed (`SU…`, the secret a `--nats-creds` file holds) and public key (`U…`, in the config). */
export function newNkeyUser(): { seed: string; publicKey: string } {
  const kp = nkeys.createUser();
  return { seed: new TextDecoder().decode(kp.getSeed()), publicKey: kp.getPublicKey() };
}

/** The public key of an nkey user seed (a `--nats-creds` seed file's content). */
export function nkeyPublicKey(seed: string): string {
  return nkeys.fromSeed(new TextEncoder().encode(seed.trim())).getPublicKey();
}
