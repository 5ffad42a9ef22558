// What a proxy mode gives the per-node sharing engine (FamilyStates, @kpx/node-states): its compile functions,
// decomposed so that objects equal on many nodes are compiled once. Each mode implements ModeCompiler in its folder
// (iptables/mode.ts, ipvs/mode.ts) and is registered once in modes.ts.
import type { Endpoint, NodeInfo, ServicePort } from '@kpx/model';
import type { RuleObject as WireObject } from '@kpx/proto';
import type { RuleObject } from './ruleset.js';

/** What a mode's compile context has in common: the node it is for. */
export interface NodeContext {
  readonly node: NodeInfo;
}

/**
 * An object several service ports may need once on a node (IPVS: a VIP bound to kube-ipvs0). Each port claims the
 * units it needs; a unit is compiled, as an owner of its own, while any port claims it.
 */
export interface UnitClaim {
  /** Names the unit; claims with the same id are merged by {@link UnitCompiler.merge}. */
  readonly id: string;
  /** The service (`namespace/name`) a change of the unit is a change of, if it is one service's (a health check). */
  readonly service?: string;
}

/** Objects of a service port that depend on the node in one way (a port may split into several). */
export interface PortPart<C extends NodeContext> {
  /** '' for the first part; the others are named (owner ids `owner#name`). */
  readonly name: string;
  /** undefined when the objects are the same on every node, else a key equal for nodes that get the same objects. */
  readonly keyFn: ((ctx: C) => string) | undefined;
  readonly compile: (ctx: C) => RuleObject[];
}

/** The units of a mode whose ports claim some (see {@link UnitClaim}). */
export interface UnitCompiler<C extends NodeContext, U extends UnitClaim> {
  readonly claims: (svc: ServicePort, endpoints: readonly Endpoint[]) => readonly U[];
  /** One claim standing for several ports' claims of the same unit (never called with none). */
  readonly merge: (claims: readonly U[]) => U;
  readonly compile: (ctx: C, claim: U) => RuleObject[];
  readonly keyFn: (claim: U) => ((ctx: C) => string) | undefined;
}

/**
 * The per-mode compile functions FamilyStates drives: a node base, service ports decomposed into parts with a
 * variant key telling which nodes share a part's objects, optionally units several ports claim, and the mode's
 * object equality. `C` is the mode's compile context of one node, `U` its unit claims.
 */
export interface ModeCompiler<C extends NodeContext, U extends UnitClaim> {
  /** The proxy mode of the rule sets: "iptables", "ipvs". */
  readonly mode: string;
  /** Whether compiled objects depend on the large-cluster endpoint threshold (iptables' per-endpoint comments). */
  readonly largeClusterMode: boolean;
  readonly makeContext: (node: NodeInfo, totalEndpoints: number) => C;
  readonly nodeBase: (ctx: C) => RuleObject[];
  /** A service port's objects, as one or more parts with their own dependence on the node. */
  readonly servicePortParts: (svc: ServicePort, endpoints: readonly Endpoint[]) => readonly PortPart<C>[];
  readonly units: UnitCompiler<C, U> | undefined;
  /**
   * True when two wire objects with the same id are equal field for field (so they have the same hash); false
   * when they differ or the mode does not compare their kind, which is only ever slower, never wrong.
   */
  readonly same: (a: WireObject, b: WireObject) => boolean;
}

/**
 * A mode's compiler with its context and claim types kept inside: a user opens it with a function generic over
 * them, so that the contexts and claims a compiler makes only ever go back to that compiler.
 */
export interface AnyModeCompiler {
  readonly mode: string;
  open<R>(use: <C extends NodeContext, U extends UnitClaim>(compiler: ModeCompiler<C, U>) => R): R;
}

/** A ModeCompiler as an AnyModeCompiler. */
export function sealed<C extends NodeContext, U extends UnitClaim>(compiler: ModeCompiler<C, U>): AnyModeCompiler {
  return { mode: compiler.mode, open: (use) => use(compiler) };
}
