// Errors of @kpx/compiler.

/** The node to compile for is not among the known nodes. */
export class NodeNotFoundError extends Error {
  override readonly name = 'NodeNotFoundError';
  constructor(
    readonly node: string,
    readonly known: readonly string[],
  ) {
    super(`node ${JSON.stringify(node)} not found; known nodes: ${known.length ? known.join(', ') : '(none)'}`);
  }
}
