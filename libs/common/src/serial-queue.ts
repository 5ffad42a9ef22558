// Work that must not overlap (one kernel transaction at a time, one audit append after the other) runs through a
// SerialQueue: each task starts when the one before it has settled, whether it resolved or rejected.

export class SerialQueue {
  /** The last task queued, settled either way (never rejects). */
  private tail: Promise<unknown> = Promise.resolve();

  /** Runs `task` after every task queued before it has settled; resolves or rejects as `task` does. */
  run<T>(task: () => T | PromiseLike<T>): Promise<T> {
    const next = this.tail.then(task, task);
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** Resolves once every task queued so far has settled (never rejects). */
  async idle(): Promise<void> {
    await this.tail;
  }
}
