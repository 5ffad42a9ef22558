// Who calls NodeSync, from the verified client certificate (mTLS), named the Kubernetes way: an executor's
// certificate says CN=system:node:<node>, O=system:nodes (as a kubelet's); any other CN is an operator. A node
// may ack and fetch only its own node; status and audit reads are for operators.
import { isIP } from 'node:net';
import type { PeerCertificate } from 'node:tls';

export const NodeUserPrefix = 'system:node:';
export const NodesGroup = 'system:nodes';

export const IdentityKind = { Node: 'node', Operator: 'operator', Invalid: 'invalid' } as const;
export type IdentityKind = (typeof IdentityKind)[keyof typeof IdentityKind];

export interface PeerIdentity {
  readonly kind: IdentityKind;
  /** The certificate's CN ('' without one). */
  readonly name: string;
  /** A node identity's node. */
  readonly node?: string;
  /** Why an invalid identity is invalid. */
  readonly why?: string;
}

const values = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/**
 * The identity a verified certificate names. A CN `system:node:*` without O=system:nodes (or the group without
 * such a CN) is invalid, not an operator: a half-node certificate gets nothing.
 */
export function identityOfCertificate(cert: Pick<PeerCertificate, 'subject'> | undefined): PeerIdentity {
  const cns = values(cert?.subject?.CN);
  const orgs = values(cert?.subject?.O);
  const cn = cns[0] ?? '';
  if (cns.length !== 1 || cn === '')
    return { kind: IdentityKind.Invalid, name: cn, why: 'the certificate needs exactly one CN' };
  const inNodes = orgs.includes(NodesGroup);
  if (cn.startsWith(NodeUserPrefix)) {
    const node = cn.slice(NodeUserPrefix.length);
    if (!inNodes) return { kind: IdentityKind.Invalid, name: cn, why: `a node certificate needs O=${NodesGroup}` };
    if (node === '') return { kind: IdentityKind.Invalid, name: cn, why: 'the CN names no node' };
    return { kind: IdentityKind.Node, name: cn, node };
  }
  if (inNodes) return { kind: IdentityKind.Invalid, name: cn, why: `O=${NodesGroup} needs CN=${NodeUserPrefix}<node>` };
  return { kind: IdentityKind.Operator, name: cn };
}

export const NodeSyncMethod = { Ack: 'Ack', GetSnapshot: 'GetSnapshot', Status: 'Status' } as const;
export type NodeSyncMethod = (typeof NodeSyncMethod)[keyof typeof NodeSyncMethod];

/** Why `who` may not call `method` about `node`, or undefined when it may. */
export function denial(who: PeerIdentity, method: NodeSyncMethod, node: string): string | undefined {
  if (who.kind === IdentityKind.Invalid)
    return `certificate ${JSON.stringify(who.name)} is not a valid identity: ${who.why ?? ''}`;
  const ownNode = who.kind === IdentityKind.Node && who.node === node;
  switch (method) {
    case NodeSyncMethod.Ack:
      return ownNode
        ? undefined
        : who.kind === IdentityKind.Node
          ? `${who.name} may ack only node ${who.node}, not ${JSON.stringify(node)}`
          : `${who.name} is not node ${JSON.stringify(node)}: only a node acks`;
    case NodeSyncMethod.GetSnapshot:
      return ownNode || who.kind === IdentityKind.Operator
        ? undefined
        : `${who.name} may fetch only node ${who.node ?? ''}'s rules, not ${JSON.stringify(node)}'s`;
    case NodeSyncMethod.Status:
      return who.kind === IdentityKind.Operator ? undefined : `${who.name} is a node identity: status is for operators`;
  }
}

/** Whether a listen host is loopback only (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}
