/** The generation asked for is older than what JetStream still holds for the node. */
export class OutsideRetentionError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'OutsideRetentionError';
  }
}

/** The retained history of a node is inconsistent (a delta that does not continue the chain, a wrong digest). */
export class ReplayError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ReplayError';
  }
}
